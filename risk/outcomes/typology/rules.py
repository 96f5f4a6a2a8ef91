"""Urban Displacement Project (UDP) neighbourhood typology, 2018-vintage rules.

An independent reimplementation from UDP's published method description (the
typology criteria sheet and the typologies codebook of the
urban-displacement/displacement-typologies repository, doi:10.5281/zenodo.4356684).
No UDP code (GPL-3.0) was copied or translated. Where the description is
ambiguous, each intermediate flag was checked one at a time against the flags
in UDP's own Seattle output; the choices this fixed are marked "checked:".

Vintages are two-digit suffixes of the UDP database columns ("90", "00", "12",
"18"). ``classify`` takes them as roles (UDP's 2018 / 2000 / 1990 / 2012), so
the same rules can be run point in time, e.g. current="00", base="90".

Columns ``classify`` reads, for v in (current, base, past when given):

* vulnerability: ``per_all_li_v, per_nonwhite_v, per_rent_v, per_col_v,
  real_mrent_v, real_mhval_v``;
* income category, for current and base: ``inc80_v`` (share of households
  under 80% of the regional median income), ``real_hinc_v`` and, optionally,
  ``inc120_v`` (without it only the median-income test is available);
* ``all_li_count_v`` (loss of low-income households), ``pop_<base>`` (> 500);
* rent_from, when given: ``real_mrent_<rent_from>`` and optionally
  ``per_limove_<rent_from>`` / ``per_limove_<current>`` and the Zillow change
  ``per_ch_zillow_<rent_from>_<current>``;
* optional ``lmh_flag_encoded`` (housing affordability from ACS 2013-17 rent
  and value distributions; read only when current == "18", otherwise a proxy).

A missing required column raises ``KeyError``; a missing optional one skips its
criterion. Other vintages pay for what UDP's 2018 inputs had and they lack; on
Seattle 2018 (all other inputs UDP's):

* everything, with UDP's lags and student tracts: 718 / 718 labels (100%);
* lags=None: 706 / 718 (98.3%), the 12 ARG tracts become LISD (9) or EOG (3);
* the rent-ratio proxy instead of ``lmh_flag_encoded``: 92.8%;
* rent_from=None (rents 2000->2018 instead of 2012->2018): 86.6%.

Known deliberate deviation: a zero start value (a crosswalk artefact) gives no %
change here, where UDP got +inf; this flips UDP's hotmarket_00 on 6 Seattle
tracts but no label. With base="90", beware README caveat 10: the crosswalked
1990/2000 medians (rent, value, income) of split tracts are scaled down, which
distorts the median-income categories and the affordability proxy there.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pandas as pd

from risk.outcomes.typology.margins import (
    Margins,
    change_class,
    count_loss,
    memo_scope,
    memoised,
    ratio_beyond,
    share_beyond,
    universe,
)

_Frame = TypeVar("_Frame", pd.Series, pd.DataFrame)

SENTINEL_MAX = -1e8
"""Census annotation values (-666666666, ...) are all below this: treated as missing."""

CATEGORIES: tuple[str, ...] = (
    "Low-Income/Susceptible to Displacement",
    "Ongoing Displacement",
    "At Risk of Gentrification",
    "Early/Ongoing Gentrification",
    "Advanced Gentrification",
    "Stable Moderate/Mixed Income",
    "At Risk of Becoming Exclusive",
    "Becoming Exclusive",
    "Stable/Advanced Exclusive",
    "High Student Population",
    "Unavailable or Unreliable Data",
)
LISD, OD, ARG, EOG, ADVG, SMMI, ARE, BE, SAE, STUDENT, UNAVAILABLE = CATEGORIES

DISPLACEMENT_OR_GENTRIFICATION: frozenset[str] = frozenset({OD, EOG, ADVG, BE})

RISK_ORDER: dict[str, int] = {
    # Low-income tracts first: their residents are the ones displacement can still
    # reach. An active loss of low-income households or an ongoing gentrification
    # outranks market pressure alone, which outranks susceptibility alone.
    OD: 9,
    EOG: 8,
    ARG: 7,
    LISD: 6,
    # Moderate/high-income tracts: much of the displacement has already happened,
    # so fewer vulnerable households remain. Recent gentrification and ongoing
    # low-income loss still rank above stable markets; entrenched exclusivity last.
    ADVG: 5,
    BE: 4,
    ARE: 3,
    SMMI: 2,
    SAE: 1,
    # Not a displacement signal: excluded from UDP's categories proper.
    STUDENT: 0,
    UNAVAILABLE: 0,
}

LOW_CATS = ("low_pdmt", "mix_low")
MODHIGH_CATS = ("mod_pdmt", "mix_mod", "mix_high", "high_pdmt")
PREDOMINANT = 0.55  # a group is "predominant" at >= 55% of households
MIX_LOW, MIX_HIGH = 0.8, 1.2  # median income relative to the regional median
MARGINAL = 0.05  # housing-cost change within +-5% is "marginal"
MIN_POP = 500  # UDP needs more than 500 residents in the base year
# Affordability proxy (median rent / regional median rent) when the 2013-17 lmh flag
# is unavailable: < 0.8 low-income, > 1.5 high-income, moderate between. On Seattle
# 2018 it puts 86% of tracts in the same low/moderate/high group as UDP's lmh flag.
AFFORD_LOW, AFFORD_HIGH = 0.8, 1.5
LMH_LOW, LMH_MOD, LMH_HIGH = (1, 4), (2, 5), (3, 6)  # UDP lmh codes: predominantly, mixed


def _aligned(obj: _Frame, index: pd.Index) -> _Frame:
    """obj re-indexed on ``index``, its own index read as 11-character GEOID strings."""
    obj = obj.copy()
    obj.index = [str(g).removesuffix(".0").zfill(11) for g in obj.index]
    return obj.reindex(index)


def vintage_year(v: str) -> int:
    """Two-digit vintage suffix to a year (90 -> 1990, 18 -> 2018)."""
    y = int(v)
    return 1900 + y if y >= 50 else 2000 + y


def _raw(db: pd.DataFrame, col: str) -> pd.Series:
    """A numeric column as float, sentinels kept (for UDP-style medians)."""
    if col not in db.columns:
        raise KeyError(f"typology needs column {col!r}")
    return pd.to_numeric(db[col], errors="coerce").astype("float64")


@memoised
def _num(db: pd.DataFrame, col: str) -> pd.Series:
    """A numeric column with Census sentinels (<= -1e8) and infinities as NaN."""
    x = _raw(db, col)
    v = x.to_numpy()
    return pd.Series(np.where((v <= SENTINEL_MAX) | np.isinf(v), np.nan, v), index=x.index, name=x.name)


def _opt(db: pd.DataFrame, col: str) -> pd.Series | None:
    return _num(db, col) if col in db.columns else None


@memoised
def regional_median(db: pd.DataFrame, col: str) -> float:
    """Regional median: the median of tract values over the whole frame (UDP's meaning).

    UDP took it with the sentinels still in, i.e. counting them as the lowest
    values; doing the same reproduces its thresholds exactly (checked: all the
    aboverm_* flags). A frame already cleaned to NaN gets the plain median: on
    Seattle 2018 a few thresholds move slightly but no typology label changes.
    """
    x = _raw(db, col).to_numpy()
    x = x[~np.isnan(x) & ~np.isinf(x)]
    return float(np.median(x)) if len(x) else float("nan")


def _above(x: pd.Series, threshold: float) -> pd.Series:
    """x above the threshold; missing counts as not above (as in UDP)."""
    return (x > threshold).fillna(False).astype(bool)


def _pct(db: pd.DataFrame, var: str, v0: str, v1: str) -> pd.Series:
    """Tract % change of a (real) median; a zero or missing start value gives NaN."""
    x0, x1 = _num(db, f"{var}_{v0}"), _num(db, f"{var}_{v1}")
    return x1 / x0.where(x0 > 0) - 1


def _rm_pct(db: pd.DataFrame, var: str, v0: str, v1: str) -> float:
    """"Regional change": the % change of the regional median (checked), not a median of changes."""
    return regional_median(db, f"{var}_{v1}") / regional_median(db, f"{var}_{v0}") - 1


def income_category(db: pd.DataFrame, v: str) -> pd.Series:
    """UDP income category of each tract at vintage v ("" where unknown).

    Predominantly low/moderate/high when >= 55% of households are under 80%,
    80-120% or over 120% of the regional median income; otherwise mixed, by the
    tract median income (<0.8, 0.8-1.2, >1.2 x the regional median).
    """
    low = _num(db, f"inc80_{v}")
    up = _opt(db, f"inc120_{v}")
    mod, high = (up - low, 1 - up) if up is not None else (low * np.nan, low * np.nan)
    ratio = _num(db, f"real_hinc_{v}") / regional_median(db, f"real_hinc_{v}")
    cat = np.select(
        [low >= PREDOMINANT, mod >= PREDOMINANT, high >= PREDOMINANT,
         ratio < MIX_LOW, ratio <= MIX_HIGH, ratio > MIX_HIGH],
        ["low_pdmt", "mod_pdmt", "high_pdmt", "mix_low", "mix_mod", "mix_high"], "")
    return pd.Series(cat, index=db.index, dtype=object)


@memoised
def vulnerable(db: pd.DataFrame, v: str) -> pd.Series:
    """Vulnerable to gentrification at v.

    Housing not above the regional median (rent or home value) and at least three
    of: share low-income, share non-white, share renters above the regional median,
    share college-educated not above it. Checked: 3 of 4 reproduces UDP's
    vul_gent_90/00/18 exactly; 2 of 4 (as some summaries say) misses 55-107 tracts.
    """
    cheap = ~_above(_num(db, f"real_mrent_{v}"), regional_median(db, f"real_mrent_{v}")) | ~_above(
        _num(db, f"real_mhval_{v}"), regional_median(db, f"real_mhval_{v}"))
    score = sum(_above(_num(db, f"{c}_{v}"), regional_median(db, f"{c}_{v}")).astype(int)
                for c in ("per_all_li", "per_nonwhite", "per_rent"))
    score = score + (~_above(_num(db, f"per_col_{v}"), regional_median(db, f"per_col_{v}"))).astype(int)
    return cheap & (score >= 3)


def _share_change_above(db: pd.DataFrame, var: str, v0: str, v1: str, threshold: float, margins: Margins | None,
                        *, of: str = "hh", above: bool = True) -> pd.Series:
    """Share change v0 -> v1 above (below) threshold; with margins by z SE, the shares being of ``of`` units."""
    p0, p1 = _num(db, f"{var}_{v0}"), _num(db, f"{var}_{v1}")
    if margins is None:
        return _above(p1 - p0, threshold) if above else ((p1 - p0) < threshold).fillna(False).astype(bool)
    n0, n1 = universe(db, of, v0, v1), universe(db, of, v1, v0)
    return share_beyond(p0, p1, n0, n1, v0, v1, threshold, margins, above=above)


def _pct_above(pct: pd.Series, threshold: float, margins: Margins | None) -> pd.Series:
    """A % change of a median above a % threshold; with margins, by z SE of the two medians (log scale)."""
    return _above(pct, threshold) if margins is None else ratio_beyond(1 + pct, 1 + threshold, margins)


def lost_low_income(db: pd.DataFrame, v0: str, v1: str, margins: Margins | None = None) -> pd.Series:
    """Any decline in the estimated low-income household count (UDP's lostli); margins: see ``count_loss``."""
    if margins is not None:
        return count_loss(_num(db, f"all_li_count_{v0}"), _num(db, f"all_li_count_{v1}"), v0, v1, margins)
    return (_num(db, f"all_li_count_{v1}") < _num(db, f"all_li_count_{v0}")).fillna(False).astype(bool)


def hot_market(db: pd.DataFrame, v0: str, v1: str, rent_from: str, margins: Margins | None = None) -> pd.Series:
    """Home-value change v0->v1 or rent change rent_from->v1 above the regional change.

    Checked: UDP's hotmarket_18 uses values 2000->2018 but rents 2012->2018.
    """
    hv = _pct_above(_pct(db, "real_mhval", v0, v1), _rm_pct(db, "real_mhval", v0, v1), margins)
    rent = _pct_above(_pct(db, "real_mrent", rent_from, v1), _rm_pct(db, "real_mrent", rent_from, v1), margins)
    return hv | rent


def gentrified(db: pd.DataFrame, v0: str, v1: str, rent_from: str,
               margins: Margins | None = None) -> tuple[pd.Series, pd.Series]:
    """(urban, with loss): gentrified between v0 and v1.

    Vulnerable at v0, then above-regional change in the college-educated share
    (percentage points), in real median household income and a hot market. Outside
    dense areas UDP also requires a loss of low-income households.
    """
    rm_col = regional_median(db, f"per_col_{v1}") - regional_median(db, f"per_col_{v0}")
    urban = (vulnerable(db, v0) & _share_change_above(db, "per_col", v0, v1, rm_col, margins)
             & _pct_above(_pct(db, "real_hinc", v0, v1), _rm_pct(db, "real_hinc", v0, v1), margins)
             & hot_market(db, v0, v1, rent_from, margins))
    return urban, urban & lost_low_income(db, v0, v1, margins)


def _change_class(x: pd.Series, margins: Margins | None = None) -> pd.Series:
    """0 decrease (< -5%), 1 marginal, 2 increase, 3 rapid increase, NaN unknown.

    Rapid = above the median of the tract changes that are increases (> 5%); checked
    against UDP's rent_/house_rapid_increase, where "regional median" means exactly that.
    With margins each class needs its threshold passed by z SE, else marginal.
    """
    rapid = float(x[x > MARGINAL].median())
    if margins is not None:
        return change_class(x, MARGINAL, rapid, margins)
    out = pd.Series(np.select([x < -MARGINAL, x <= MARGINAL, x <= rapid, x > rapid], [0, 1, 2, 3], -1),
                    index=x.index, dtype="float64")
    return out.mask(out < 0)


def cost_change(db: pd.DataFrame, base: str, current: str, rent_from: str,
                margins: Margins | None = None) -> pd.Series:
    """Housing-cost change: 1 decrease or marginal, 2 increase, 3 rapid (UDP change_flag).

    Rents from rent_from, home values from base; the faster of the two counts.
    """
    both = pd.concat([_change_class(_pct(db, "real_mrent", rent_from, current), margins),
                      _change_class(_pct(db, "real_mhval", base, current), margins)], axis=1).max(axis=1)
    return both.clip(lower=1).fillna(1).astype(int)


def affordability(db: pd.DataFrame, current: str) -> pd.Series:
    """UDP lmh code: to whom the housing is affordable (1/4 low, 2/5 moderate, 3/6 high).

    UDP's flag comes from the ACS 2013-17 rent and value distributions, which the
    database keeps only as ``lmh_flag_encoded`` (2018 vintage). For any other
    vintage a proxy from median rent (home value where rent is missing) relative
    to the regional median is used; it gives predominant codes only.
    """
    if current == "18" and "lmh_flag_encoded" in db.columns:
        return _num(db, "lmh_flag_encoded").fillna(0).astype(int)
    ratio = _num(db, f"real_mrent_{current}") / regional_median(db, f"real_mrent_{current}")
    value = _num(db, f"real_mhval_{current}") / regional_median(db, f"real_mhval_{current}")
    ratio = ratio.fillna(value)
    code = np.select([ratio < AFFORD_LOW, ratio <= AFFORD_HIGH, ratio > AFFORD_HIGH], [1, 2, 3], 0)
    return pd.Series(code, index=db.index, dtype=int)


@memo_scope
def classify(db: pd.DataFrame, *, current: str = "18", base: str = "00", past: str | None = "90",
             rent_from: str | None = "12", lags: pd.DataFrame | None = None,
             students: pd.Series | None = None, margins: Margins | None = None) -> pd.DataFrame:
    """Typology per tract from a UDP-database-shaped frame (index = 11-char GEOIDs).

    ``current``/``base``/``past`` play UDP's 2018/2000/1990 roles; ``rent_from`` the
    start of the recent rent change (2012 in UDP; None -> base, and the in-mover and
    Zillow criteria are skipped). ``past=None`` skips gentrification before base.
    A skipped criterion is dropped from its rule: an "or" term becomes false, an
    "and" term true.

    ``lags`` (dp_PChRent, dp_RentGap, dense; 0/1 per tract) are UDP's spatial-lag
    variables; None treats them as 0, so no tract is At Risk of Gentrification
    (on Seattle 2018 this costs 1.7 points of agreement: the 12 ARG tracts become
    LISD or EOG) and every tract is non-dense. ``students``: tracts with more than
    30% college/graduate students (High Student Population); None -> none.

    ``margins`` (:class:`Margins`; None, the default, keeps UDP's point rules) makes
    every change test noise-aware, on purpose unlike UDP: each change (against the
    regional change, the cost classes, the 50%/90% and Zillow criteria, in-movers,
    income; so the gentrification tests and the map-step amendment too) must pass its
    threshold by z SE of the two survey estimates; the low-income loss is LowIncomeLoss's
    test plus an actual decline. Level tests (income, vulnerability, housing) are UDP's.

    Sentinels (<= -1e8) and infinities are treated as missing tract values.
    Returns ``typology`` plus the intermediate flags.
    """
    if past is not None and vintage_year(past) >= vintage_year(base) or vintage_year(base) >= vintage_year(current):
        raise ValueError(f"vintages must run past < base < current, got {past!r}, {base!r}, {current!r}")
    if rent_from is not None and not vintage_year(base) <= vintage_year(rent_from) < vintage_year(current):
        # A rent change must end at current; one starting after it is meaningless.
        raise ValueError(f"rent_from={rent_from!r} must lie in [base, current); pass None if unavailable")
    idx = db.index
    rent0 = rent_from if rent_from is not None else base
    lag = _aligned(lags if lags is not None else pd.DataFrame(index=idx), idx)
    flag = {c: pd.to_numeric(lag[c], errors="coerce").fillna(0).astype(bool) if c in lag.columns
            else pd.Series(False, index=idx) for c in ("dp_PChRent", "dp_RentGap", "dense")}
    out = pd.DataFrame(index=idx)

    out["income"] = income_category(db, current)
    out["income_base"] = income_category(db, base)
    low = out["income"].isin(LOW_CATS)
    modhigh = out["income"].isin(MODHIGH_CATS)
    # SAE needs "high income in base": without the 120% share (1990), take a median
    # income above 1.2 x the regional median as high.
    high_base = out["income_base"].eq("high_pdmt") | (
        out["income_base"].eq("mix_high") & (f"inc120_{base}" not in db.columns))
    out["enough_people"] = _above(_num(db, f"pop_{base}"), MIN_POP)

    if past is not None:
        out["vul_past"] = vulnerable(db, past)
    out["vul_base"] = vulnerable(db, base)
    out["vul_current"] = vulnerable(db, current)
    out["hot_current"] = hot_market(db, base, current, rent0, margins)
    out["lost_li"] = lost_low_income(db, base, current, margins)

    no = pd.Series(False, index=idx)
    if past is not None:  # the earlier period has no mid-point rent: rents past -> base
        out["hot_base"] = hot_market(db, past, base, past, margins)
        g_old_urban, g_old_loss = gentrified(db, past, base, past, margins)
    else:
        g_old_urban = g_old_loss = no
    g_new_urban, g_new_loss = gentrified(db, base, current, rent0, margins)
    # Dense tracts count as gentrified on the urban test; the others need a loss too.
    out["gent_past_base_urban"], out["gent_base_current_urban"] = g_old_urban, g_new_urban
    out["gent_past_base"] = g_old_urban.where(flag["dense"], g_old_loss)
    out["gent_base_current"] = g_new_urban.where(flag["dense"], g_new_loss)
    gent = out["gent_past_base"] | out["gent_base_current"]

    out["cost_change"] = change = cost_change(db, base, current, rent0, margins)
    out["housing"] = lmh = affordability(db, current)
    # Checked: "Zillow 90th percentile" is a tract percentile, while the ACS rent
    # counterpart is a literal > 90% change; the 50% criteria are > 50% changes.
    rent_ch = _pct(db, "real_mrent", rent0, current)
    spike, strong = _pct_above(rent_ch, 0.9, margins), _pct_above(rent_ch, 0.5, margins)
    zillow = _opt(db, f"per_ch_zillow_{rent_from}_{current}") if rent_from is not None else None
    if zillow is not None:
        spike |= _pct_above(zillow, float(zillow.quantile(0.9)), margins)
        strong |= _pct_above(zillow, 0.5, margins)
    movers = [f"per_limove_{v}" in db.columns for v in (rent_from, current)] if rent_from else [False]
    if all(movers):
        fewer_li_movers = _share_change_above(db, "per_limove", str(rent_from), current, 0.0, margins,
                                              of="mov_tot_w_income", above=False)  # UDP: any fall
    else:
        fewer_li_movers = ~no  # skipped "and" criterion
    richer = (_num(db, f"real_hinc_{current}") > _num(db, f"real_hinc_{base}")).fillna(False) if margins is None \
        else ratio_beyond(_num(db, f"real_hinc_{current}") / _num(db, f"real_hinc_{base}"), 1.0, margins)
    pressure = flag["dp_PChRent"] | flag["dp_RentGap"]

    out["OD"] = low & out["lost_li"]
    out["ARG"] = (low & lmh.isin(LMH_LOW) & ~gent & ((change == 1) | spike) & pressure)
    out["EOG"] = low & lmh.isin(LMH_MOD) & ((change >= 2) | strong) & gent
    out["LISD"] = low
    not_low_housing = lmh.isin(LMH_MOD + LMH_HIGH)
    out["SAE"] = out["income"].eq("high_pdmt") & high_base & lmh.isin(LMH_HIGH)
    out["AdvG"] = modhigh & not_low_housing & gent
    out["BE"] = modhigh & not_low_housing & (change == 3) & out["lost_li"] & fewer_li_movers & richer
    out["ARE"] = modhigh & not_low_housing & (change <= 2)
    out["SMMI"] = modhigh

    # First matching rule wins. Checked against UDP's flags: EOG beats OD, SAE beats
    # AdvG/BE/ARE, and UDP's maps show AdvG where a tract is both AdvG and BE.
    order = [("EOG", EOG), ("ARG", ARG), ("OD", OD), ("LISD", LISD),
             ("SAE", SAE), ("AdvG", ADVG), ("BE", BE), ("ARE", ARE), ("SMMI", SMMI)]
    typ = pd.Series(np.select([out[k] for k, _ in order], [n for _, n in order], UNAVAILABLE),
                    index=idx, dtype=object)
    # Map-step amendment (inferred from UDP's published labels): a tract left LISD/OD
    # that gentrified on the urban test is shown as gentrifying, AdvG for the older
    # period taking precedence.
    left_low = typ.isin([LISD, OD])
    typ = typ.mask(left_low & g_new_urban, EOG).mask(left_low & g_old_urban, ADVG)
    typ = typ.mask(~out["enough_people"], UNAVAILABLE)
    if students is not None:
        typ = typ.mask(_aligned(students, idx).fillna(False).astype(bool), STUDENT)
    out["typology"] = typ
    return out
