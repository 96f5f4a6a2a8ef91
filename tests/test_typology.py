"""The UDP typology reimplementation: reproduction on Seattle 2018, single rules, point-in-time use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from risk.outcomes.typology.rules import (
    ADVG,
    ARG,
    CATEGORIES,
    DISPLACEMENT_OR_GENTRIFICATION,
    EOG,
    LISD,
    OD,
    RISK_ORDER,
    SAE,
    STUDENT,
    UNAVAILABLE,
    Margins,
    classify,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seattle"
pytestmark = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside the checkout")


def _read(name: str) -> pd.DataFrame:
    frame = pd.read_csv(SHARED / name, low_memory=False)
    frame.index = frame["GEOID"].astype(str).str.zfill(11)
    return frame


@pytest.fixture(scope="module")
def seattle() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """UDP database, UDP's full output (flags and lag variables), published labels."""
    db = _read("census_udp_database_1990_2018.csv")
    output = _read("udp_typology_output_seattle_2018.csv").reindex(db.index)
    published = _read("udp_typology_2018.csv")["Typology"].reindex(db.index)
    return db, output, published


def _cleaned(db: pd.DataFrame) -> pd.DataFrame:
    """The database as the pipeline loads it: sentinels already NaN."""
    out = db.copy()
    numeric = out.select_dtypes("number")
    out[numeric.columns] = numeric.mask(numeric <= -1e8)
    return out


@pytest.mark.parametrize("clean", [False, True], ids=["raw", "sentinels-as-NaN"])
def test_reproduces_udp_2018_with_lags(seattle: tuple, clean: bool) -> None:
    db, output, published = seattle
    result = classify(_cleaned(db) if clean else db, lags=output[["dp_PChRent", "dp_RentGap", "dense"]],
                      students=published.eq(STUDENT))
    share = float((result["typology"] == published).mean())
    print(f"agreement with UDP lags ({'clean' if clean else 'raw'}): {share:.4f}")
    assert len(result) == 718
    assert share >= 0.98
    assert share == 1.0  # measured: 718 / 718


def test_intermediate_flags_match_udp(seattle: tuple) -> None:
    db, output, _ = seattle
    result = classify(db)
    pairs = {"vul_past": "vul_gent_90", "vul_base": "vul_gent_00", "vul_current": "vul_gent_18",
             "hot_current": "hotmarket_18", "gent_past_base": "gent_90_00",
             "gent_past_base_urban": "gent_90_00_urban", "gent_base_current": "gent_00_18",
             "gent_base_current_urban": "gent_00_18_urban", "lost_li": "lostli_18",
             "cost_change": "change_flag_encoded", "housing": "lmh_flag_encoded"}
    for mine, udp in pairs.items():
        assert (result[mine].astype(float) == output[udp].astype(float)).all(), mine
    assert (result["income"].replace("", "0") == db["inc_cat_medhhinc_encoded18"].astype(str)).all()
    assert (result["income_base"] == db["inc_cat_medhhinc_encoded00"]).all()
    # Deliberate deviation: zero 1990 home values give no % change (UDP: +inf, "hot").
    assert int((result["hot_base"].astype(float) != output["hotmarket_00"]).sum()) == 6


def test_without_lags(seattle: tuple) -> None:
    db, _, published = seattle
    result = classify(db, students=published.eq(STUDENT))
    agree = result["typology"] == published
    share = float(agree.mean())
    print(f"agreement without lags: {share:.4f}")
    print(pd.crosstab(result.loc[~agree, "typology"], published[~agree]))
    assert share >= 0.97
    assert share >= 0.983  # measured 706 / 718, as the data README says
    # Every miss is a published ARG tract: without dp_* no tract can be ARG.
    assert set(published[~agree]) == {ARG}
    assert set(result.loc[~agree, "typology"]) <= {LISD, EOG}


def test_point_in_time_2000_origin(seattle: tuple) -> None:
    db, _, _ = seattle
    result = classify(_cleaned(db), current="00", base="90", past=None, rent_from=None)
    assert result["typology"].isin(CATEGORIES).all()
    has_data = (db["pop_90"] > 500) & db["real_hinc_00"].notna()
    assert not result.loc[has_data, "typology"].eq(UNAVAILABLE).any()
    assert result["typology"].nunique() >= 6
    assert "gent_past_base" in result and not result["gent_past_base"].any()  # past=None
    assert not result["typology"].eq(ARG).any()  # no lags
    with pytest.raises(ValueError):
        classify(db, current="00", base="90", past=None, rent_from="12")
    with pytest.raises(KeyError):
        classify(db.drop(columns=["per_col_90"]), current="00", base="90", past=None, rent_from=None)


# --- hand-made regions pinning single rules ------------------------------------------------------

def _region(n: int = 9) -> pd.DataFrame:
    """n ordinary, moderate-income tracts with slightly spread values (so medians are well defined)."""
    spread = 1 + 0.01 * np.arange(n)
    cols: dict[str, np.ndarray] = {}
    vintages = (("90", 900, 200e3, 60e3), ("00", 1000, 250e3, 62e3), ("18", 1100, 300e3, 64e3))
    for v, rent, value, hinc in vintages:
        cols |= {f"per_all_li_{v}": 0.35 * spread, f"per_nonwhite_{v}": 0.3 * spread,
                 f"per_rent_{v}": 0.4 * spread, f"per_col_{v}": 0.3 * spread,
                 f"real_mrent_{v}": rent * spread, f"real_mhval_{v}": value * spread,
                 f"real_hinc_{v}": hinc * spread, f"inc80_{v}": 0.35 * spread,
                 f"all_li_count_{v}": 500 * spread, f"pop_{v}": 3000 * spread, f"hh_{v}": 2000 * spread}
        if v != "90":
            cols[f"inc120_{v}"] = 0.6 * spread
    cols |= {"real_mrent_12": 1060 * spread, "per_limove_12": 0.4 * spread, "per_limove_18": 0.4 * spread,
             "mov_tot_w_income_12": 300 * spread, "mov_tot_w_income_18": 300 * spread,
             "lmh_flag_encoded": np.full(n, 2)}
    return pd.DataFrame(cols, index=[f"530330{i:05d}" for i in range(n)])


def _set(frame: pd.DataFrame, row: int, **values: float) -> None:
    for col, value in values.items():
        frame.iloc[row, frame.columns.get_loc(col)] = value


def _vulnerable_low_income(frame: pd.DataFrame, row: int) -> None:
    """Low rent, many low-income / non-white / renter households, few graduates, in every vintage."""
    for v in ("90", "00", "18"):
        _set(frame, row, **{f"per_all_li_{v}": 0.7, f"per_nonwhite_{v}": 0.7, f"per_rent_{v}": 0.8,
                            f"per_col_{v}": 0.1, f"real_mrent_{v}": 600, f"real_mhval_{v}": 120e3,
                            f"inc80_{v}": 0.7, f"real_hinc_{v}": 30e3})


def test_rule_ongoing_displacement() -> None:
    frame = _region()
    _vulnerable_low_income(frame, 0)
    _set(frame, 0, all_li_count_00=900, all_li_count_18=600, lmh_flag_encoded=1)  # lost LI households
    result = classify(frame)
    assert result["vul_base"].iloc[0] and result["lost_li"].iloc[0]
    assert not result["gent_base_current"].iloc[0]
    assert result["typology"].iloc[0] == OD
    assert (result["typology"].iloc[1:] != OD).all()


def test_rule_gentrification_beats_displacement() -> None:
    frame = _region()
    _vulnerable_low_income(frame, 0)
    # Since 2000: many more graduates, higher incomes, soaring home values, fewer LI households.
    _set(frame, 0, all_li_count_00=900, all_li_count_18=600, per_col_18=0.5, real_hinc_18=45e3,
         real_mhval_18=300e3, inc80_18=0.6, lmh_flag_encoded=2)
    result = classify(frame)
    row = result.iloc[0]
    assert row["vul_base"] and row["hot_current"] and row["gent_base_current"]
    assert row["cost_change"] == 3
    assert row["typology"] == EOG
    assert row["typology"] in DISPLACEMENT_OR_GENTRIFICATION


def test_rule_at_risk_of_gentrification_needs_lags() -> None:
    frame = _region()
    _vulnerable_low_income(frame, 0)
    _set(frame, 0, lmh_flag_encoded=1, real_mrent_12=600)  # flat rent and value: marginal change
    _set(frame, 0, real_mhval_00=120e3, real_mhval_18=121e3)
    lags = pd.DataFrame({"dp_PChRent": [1], "dp_RentGap": [0], "dense": [0]}, index=[int(frame.index[0])])
    assert classify(frame, lags=lags)["typology"].iloc[0] == ARG
    assert classify(frame)["typology"].iloc[0] == LISD


def test_rule_exclusive_and_special_labels() -> None:
    frame = _region()
    for v in ("00", "18"):  # 75% of households above 120% of the regional median income
        _set(frame, 0, **{f"inc80_{v}": 0.1, f"inc120_{v}": 0.25, f"real_hinc_{v}": 150e3})
    _set(frame, 0, lmh_flag_encoded=3)
    _set(frame, 1, pop_00=300)
    students = pd.Series([True], index=[frame.index[2]])
    result = classify(frame, students=students)
    assert result["income"].iloc[0] == "high_pdmt"
    assert result["typology"].iloc[0] == SAE
    assert result["typology"].iloc[1] == UNAVAILABLE
    assert result["typology"].iloc[2] == STUDENT


def test_risk_order_covers_categories() -> None:
    assert set(RISK_ORDER) == set(CATEGORIES) and len(CATEGORIES) == 11
    assert DISPLACEMENT_OR_GENTRIFICATION <= set(CATEGORIES)
    assert RISK_ORDER[OD] > RISK_ORDER[ARG] > RISK_ORDER[LISD] > RISK_ORDER[ADVG] > RISK_ORDER[SAE]


# --- noise-aware change tests (margins), used by the typology_transition outcome -------------------------


def test_margins_default_is_udp_and_margins_only_remove_category_entries(seattle: tuple) -> None:
    """With margins every change flag is a subset of UDP's, so (without lags) D/G labels only go away."""
    db, _, published = seattle
    plain, robust = classify(db), classify(db, margins=Margins())
    pd.testing.assert_frame_equal(classify(db, margins=None), plain)
    for flag in ("lost_li", "hot_current", "hot_base", "gent_past_base_urban", "gent_base_current_urban",
                 "gent_past_base", "gent_base_current"):
        assert not (robust[flag] & ~plain[flag]).any(), flag
        assert robust[flag].sum() < plain[flag].sum() or not plain[flag].any(), flag
    assert (robust["cost_change"] <= plain["cost_change"]).all()
    dg_plain, dg_robust = plain["typology"].isin(DISPLACEMENT_OR_GENTRIFICATION), \
        robust["typology"].isin(DISPLACEMENT_OR_GENTRIFICATION)
    assert not (dg_robust & ~dg_plain).any()
    print(f"\nSeattle 2018 D/G tracts: UDP rules {int(dg_plain.sum())}, noise-aware {int(dg_robust.sum())}; "
          f"lost_li {int(plain['lost_li'].sum())} -> {int(robust['lost_li'].sum())}")
    assert 0 < dg_robust.sum() < dg_plain.sum()
    # level tests are untouched
    for col in ("income", "income_base", "vul_past", "vul_base", "vul_current", "housing", "enough_people"):
        pd.testing.assert_series_equal(robust[col], plain[col])


def test_margins_keep_a_large_loss_and_drop_a_noise_level_one() -> None:
    frame = _region()
    for row in (0, 1):
        _vulnerable_low_income(frame, row)
    _set(frame, 0, all_li_count_00=900, all_li_count_18=450, lmh_flag_encoded=1)  # -50%: beyond ~2 SE (22%)
    _set(frame, 1, all_li_count_00=900, all_li_count_18=860, lmh_flag_encoded=1)  # -4%: within the noise
    plain, robust = classify(frame), classify(frame, margins=Margins())
    assert list(plain["typology"].iloc[:2]) == [OD, OD]
    assert list(robust["lost_li"].iloc[:2]) == [True, False]
    assert list(robust["typology"].iloc[:2]) == [OD, LISD]


def test_margins_gentrification_needs_changes_beyond_the_noise() -> None:
    frame = _region()
    for row in (0, 1):
        _vulnerable_low_income(frame, row)
    # tract 0: far beyond the region (graduates +40 pp, income +50%, home value x2.5, half the LI households gone)
    _set(frame, 0, all_li_count_00=900, all_li_count_18=450, per_col_18=0.5, real_hinc_18=45e3,
         real_mhval_18=300e3, inc80_18=0.6, lmh_flag_encoded=2)
    # tract 1: just above the regional changes (+4 pp, +10% vs +3%, +25% vs +20%, -2% LI households)
    _set(frame, 1, all_li_count_00=900, all_li_count_18=880, per_col_18=0.14, real_hinc_18=33e3,
         real_mhval_18=150e3, inc80_18=0.6, lmh_flag_encoded=2)
    plain, robust = classify(frame), classify(frame, margins=Margins())
    assert plain["gent_base_current_urban"].iloc[:2].all() and list(plain["typology"].iloc[:2]) == [EOG, EOG]
    assert list(robust["gent_base_current_urban"].iloc[:2]) == [True, False]
    assert robust["cost_change"].iloc[0] == 3
    assert list(robust["typology"].iloc[:2]) == [EOG, LISD]
    # the share tests size their errors from the households: without any hh column margins cannot be applied
    with pytest.raises(KeyError, match="hh_"):
        classify(frame.drop(columns=[c for c in frame.columns if c.startswith("hh_")]), margins=Margins())


def test_margins_validate() -> None:
    assert Margins().fraction("00") == pytest.approx(1 / 6) and Margins().fraction("24") == 0.08
    with pytest.raises(ValueError):
        Margins(z=-1)
    with pytest.raises(ValueError):
        Margins(sample_fractions={"00": 0.0})
    with pytest.raises(ValueError):
        Margins(min_loss=1.0)
