"""Point-in-time features: what each one means, checked by hand on the small world."""

from __future__ import annotations

import dataclasses
from datetime import date

import numpy as np
import pandas as pd
import pytest
from world import CITY, GEOIDS, World, make_world

from risk.core.settings import FeatureSettings, load_settings
from risk.features import build as features
from risk.features.build import build_features, shrunk_ratio
from risk.features.dictionary import (
    BY_NAME,
    FEATURES,
    LAG_FEATURES,
    feature_names,
    model_feature_names,
)
from risk.features.spatial import neighbours
from risk.sources import Sources, load_sources


def test_one_row_per_tract_with_every_dictionary_feature(world_sources: Sources) -> None:
    f = build_features(world_sources, date(2015, 12, 31))
    assert list(f.index) == GEOIDS
    assert list(f.columns) == feature_names()
    assert f.attrs["as_of"] == "2015-12-31"


def test_eviction_rate_uses_the_newest_census_renter_count_not_the_interpolated_one(world_sources: Sources) -> None:
    # at mid-2009 the 2008 counts are out (60-day lag) and the newest census count is 2000's
    f = build_features(world_sources, date(2009, 6, 30))
    filings_2008 = 10 + 0 + 2008 % 3
    renters_2000 = 500
    assert f.loc[GEOIDS[0], "eviction_filing_rate_12m"] == pytest.approx(100 * filings_2008 / renters_2000)
    # once the 2010 census count is released it replaces the 2000 one
    g = build_features(world_sources, date(2011, 7, 1))
    assert g.loc[GEOIDS[0], "eviction_filing_rate_12m"] == pytest.approx(100 * (10 + 2010 % 3) / 600)


def test_a_year_of_eviction_counts_is_used_only_after_its_publication_lag(world_sources: Sources) -> None:
    before = build_features(world_sources, date(2015, 2, 27))  # 2014 + 60 days = 2015-03-01
    after = build_features(world_sources, date(2015, 3, 1))
    assert before.loc[GEOIDS[0], "eviction_filing_rate_12m"] == pytest.approx(100 * (10 + 2013 % 3) / 600)
    assert after.loc[GEOIDS[0], "eviction_filing_rate_12m"] == pytest.approx(100 * (10 + 2014 % 3) / 600)


def test_eviction_features_go_missing_when_the_series_is_stale(world_sources: Sources) -> None:
    f = build_features(world_sources, date(2020, 1, 1))  # 2016 counts became available 2017-03-01
    assert f["eviction_filing_rate_12m"].isna().all()
    assert (f["cov_evictions"] == 0).all()


def test_a_vintage_is_used_only_from_its_release_date(world_sources: Sources) -> None:
    day_before = build_features(world_sources, date(2019, 12, 18))
    release_day = build_features(world_sources, date(2019, 12, 19))
    assert day_before.loc[GEOIDS[1], "low_income_share"] == pytest.approx(0.33)  # Census 2000
    assert release_day.loc[GEOIDS[1], "low_income_share"] == pytest.approx(0.31)  # ACS 2014-2018


def test_shares_relative_to_the_region_are_differences_from_the_median_tract(world_sources: Sources) -> None:
    f = build_features(world_sources, date(2015, 12, 31))
    assert f["renter_share_vs_region"].to_numpy() == pytest.approx((f["renter_share"] - f["renter_share"].median()).to_numpy())
    assert f["renter_share_vs_region"].median() == pytest.approx(0.0)


def test_census_sentinels_become_missing_not_numbers(world_sources: Sources) -> None:
    rents = world_sources.demographics.query("measure == 'median_rent' and vintage == 'ACS 2008-2012'")
    assert GEOIDS[2] not in set(rents["geoid"])  # -666666666 in the file
    assert (world_sources.demographics["value"] > -1e8).all()


def test_tracts_of_other_counties_are_dropped(world_sources: Sources) -> None:
    assert set(world_sources.demographics["geoid"]) == set(GEOIDS)


def test_permit_features_are_missing_outside_the_permit_jurisdiction_and_zero_inside(world_sources: Sources) -> None:
    f = build_features(world_sources, date(2015, 12, 31))
    outside = [g for g in GEOIDS if g not in CITY]
    assert f.loc[outside, "permits_new_12m"].isna().all()
    assert (f.loc[outside, "cov_permits"] == 0).all()
    assert (f.loc[CITY, "cov_permits"] == 1).all()
    assert f.loc[CITY, "permits_new_12m"].notna().all()


def test_permit_counts_are_per_thousand_homes_from_the_newest_release(world_sources: Sources) -> None:
    as_of = date(2015, 12, 31)
    f = build_features(world_sources, as_of)
    p = world_sources.permits
    window = p[(p["geoid"] == CITY[0]) & (p["issued"] > pd.Timestamp(as_of) - pd.DateOffset(months=12))
               & (p["issued"] <= pd.Timestamp(as_of)) & (p["kind"] == "new")]
    assert f.loc[CITY[0], "permits_new_12m"] == pytest.approx(1000 * len(window) / 1300)  # hu_00 of tract 1


def test_unit_features_wait_until_a_file_reporting_units_covers_the_window(world_sources: Sources) -> None:
    f = build_features(world_sources, date(2012, 6, 30))  # only the legacy (no units) file exists
    assert f.loc[CITY, "units_added_12m"].isna().all()
    assert f.loc[CITY, "permits_new_12m"].notna().all()
    g = build_features(world_sources, date(2014, 6, 30))
    assert g.loc[CITY, "units_added_12m"].notna().all()


def test_permits_are_missing_before_the_files_start(world_sources: Sources) -> None:
    f = build_features(world_sources, date(2009, 12, 31))
    assert f[[c for c in f.columns if c.startswith("permit")]].isna().all().all()


def test_rent_changes_follow_the_index(world_sources: Sources) -> None:
    f = build_features(world_sources, date(2015, 12, 31))
    # the 2015-11 value is published 15 days after month end, so the newest month is November
    k_now = (2015 - 2005) * 12 + 10
    k_ago = k_now - 36
    expected = 100 * ((1000 + 5 * k_now) / (1000 + 5 * k_ago) - 1)
    assert f.loc[GEOIDS[0], "rent_change_3y"] == pytest.approx(expected)
    assert f.loc[GEOIDS[0], "rent_index"] == 1000 + 5 * k_now


def test_rent_index_features_are_missing_when_the_series_has_ended(world_sources: Sources) -> None:
    f = build_features(world_sources, date(2018, 1, 1))
    assert f["rent_index"].isna().all() and (f["cov_rent_index"] == 0).all()


def test_rent_features_read_only_months_a_feature_can_reach(world_sources: Sources,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The rent window drops old months (the point: memory at national scale) and changes no feature."""
    dates = [d.date() for d in pd.date_range("2009-01-31", "2017-06-30", freq="2ME")]
    cut = [build_features(world_sources, d) for d in dates]
    kept = len(features._known_rent(world_sources, pd.Timestamp(2015, 12, 31)))
    known = world_sources.rent[world_sources.rent["available"] <= pd.Timestamp(2015, 12, 31)]
    assert 0 < kept < len(known)

    def every_known_month(sources: Sources, as_of: pd.Timestamp) -> pd.DataFrame:
        return sources.rent[sources.rent["available"] <= as_of]

    monkeypatch.setattr(features, "_known_rent", every_known_month)
    for d, windowed in zip(dates, cut, strict=True):
        pd.testing.assert_frame_equal(windowed, build_features(world_sources, d), check_exact=True, obj=str(d))
    assert cut[dates.index(date(2015, 11, 30))]["rent_change_5y"].notna().all()


def test_zip_indices_are_weighted_by_residential_share(tmp_path) -> None:
    w = make_world(tmp_path / "zip", rent="zillow_zip")
    sources = load_sources(load_settings(w.config))
    rent = sources.rent
    row = rent[(rent["geoid"] == GEOIDS[0]) & (rent["month"] == pd.Timestamp("2010-01-31"))]
    assert row["zhvi"].iloc[0] == pytest.approx(0.75 * 300000 + 0.25 * 500000)
    f = build_features(sources, date(2015, 12, 31))
    assert f["home_value_index"].notna().all()


def test_spatial_lag_is_the_mean_of_queen_neighbours(world_sources: Sources) -> None:
    pairs = neighbours(world_sources.tracts)
    # 3-by-2 grid: the bottom-left tract touches right, up and diagonally
    assert set(pairs.loc[pairs["geoid"] == GEOIDS[0], "neighbour"]) == {GEOIDS[1], GEOIDS[3], GEOIDS[4]}
    f = build_features(world_sources, date(2015, 12, 31))
    expected = f.loc[[GEOIDS[1], GEOIDS[3], GEOIDS[4]], "eviction_filing_rate_36m"].mean()
    assert f.loc[GEOIDS[0], "nbr_eviction_filing_rate_36m"] == pytest.approx(expected)


def test_spatial_lags_can_be_turned_off(world_sources: Sources) -> None:
    f = build_features(world_sources, date(2015, 12, 31), FeatureSettings(spatial_lags=False))
    assert not [c for c in f.columns if c.startswith("nbr_")]


def test_the_dictionary_describes_every_feature_once() -> None:
    names = [f.name for f in FEATURES]
    assert len(names) == len(set(names))
    for f in FEATURES:
        assert f.label and f.unit and f.family and f.direction in {"up", "down", "mixed"} and f.description
    assert BY_NAME["eviction_filing_rate_12m"].format(2.5) == "2.50 per 100 renter households"
    assert BY_NAME["rent_change_3y"].format(12.34) == "+12.3%"
    assert BY_NAME["renter_share"].format(0.456) == "46%"
    assert np.isnan(float("nan")) and BY_NAME["renter_share"].format(float("nan")) == "not available"


def test_annual_change_skips_a_same_day_republication(world: World) -> None:
    # Eviction Lab re-publishes ACS 2008-12 on the day the UDP file's vintage is released:
    # the change must be measured against a genuinely older release, not against itself
    sources = load_sources(load_settings(world.config))
    f = build_features(sources, date(2014, 1, 1))
    assert (f["acs_rent_change_annual"].dropna() != 0).all()


def test_shrunk_ratio_pulls_a_small_tract_toward_the_county_and_leaves_a_big_one() -> None:
    rng = np.random.default_rng(0)
    expected = pd.Series(np.r_[np.full(60, 50.0), 1000.0, 2.0, np.nan])
    counts = pd.Series(np.r_[rng.poisson(50 * rng.gamma(4, 0.25, 60)), 2000.0, 4.0, 3.0])
    ratio = shrunk_ratio(counts, expected)
    assert ratio.iloc[60] == pytest.approx(2.0, rel=0.05)  # 2,000 filings where 1,000 were expected: no doubt
    assert 0.9 < ratio.iloc[61] < 1.6  # 4 where 2 were expected: mostly chance
    assert np.isnan(ratio.iloc[62])


def test_eviction_ratios_do_not_move_when_the_whole_county_files_more(world_sources: Sources) -> None:
    # rates per renter drift with the county's filing level; ratios to the county over the same years do not
    # (up to the shrinkage, which weakens as counts grow)
    as_of = date(2015, 12, 31)
    ev = world_sources.evictions.copy()
    ev["filings"] = ev["filings"] * 3
    tripled = build_features(dataclasses.replace(world_sources, evictions=ev), as_of)
    base = build_features(world_sources, as_of)
    ratios = [c for c in base.columns if "eviction_filing_ratio" in c]
    assert len(ratios) == 6
    levels = [c for c in ratios if "change" not in c]
    pd.testing.assert_frame_equal(base[levels], tripled[levels], rtol=0.01)
    changes = [c for c in ratios if "change" in c]  # in percent
    pd.testing.assert_frame_equal(base[changes], tripled[changes], rtol=0, atol=1.0)
    np.testing.assert_allclose(tripled["eviction_filing_rate_12m"], 3 * base["eviction_filing_rate_12m"])


def test_levels_against_the_region_divide_by_the_median_tract(world_sources: Sources) -> None:
    f = build_features(world_sources, date(2015, 12, 31))
    for level in ("acs_median_rent", "acs_median_home_value", "rent_index", "home_value_index"):
        expected = f[level] / f[level].median()
        pd.testing.assert_series_equal(f[f"{level}_vs_region"], expected, check_names=False)


def test_renter_growth_needs_two_census_counts(world_sources: Sources) -> None:
    assert build_features(world_sources, date(2002, 1, 1))["renter_households_change_annual"].isna().all()
    f = build_features(world_sources, date(2012, 1, 1))
    # Census 2000 (500 + 40 i renters, released 2002-08-01) to Eviction Lab's 2010 count (600 + 40 i, 2011-06-30)
    years = (pd.Timestamp("2011-06-30") - pd.Timestamp("2002-08-01")).days / 365.25
    assert f.loc[GEOIDS[0], "renter_households_change_annual"] == pytest.approx(100 * ((600 / 500) ** (1 / years) - 1))


def test_models_see_only_features_comparable_across_years() -> None:
    modelled = set(model_feature_names())
    for name in ("acs_median_rent", "home_value_index", "eviction_filing_rate_12m", "nbr_eviction_filing_rate_36m",
                 "renter_share"):
        assert name not in modelled and name in feature_names()
    for name in ("acs_median_rent_vs_region", "home_value_index_vs_region", "eviction_filing_ratio_12m",
                 "nbr_eviction_filing_ratio_36m", "renter_share_vs_region", "cov_evictions"):
        assert name in modelled
    assert all(f.modelled == BY_NAME[f.name.removeprefix("nbr_")].modelled for f in LAG_FEATURES)
    assert model_feature_names(False) == [n for n in model_feature_names() if not n.startswith("nbr_")]
