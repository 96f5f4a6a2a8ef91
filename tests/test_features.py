"""Point-in-time features: what each one means, checked by hand on the small world."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from world import CITY, GEOIDS, World, make_world

from risk.dictionary import BY_NAME, FEATURES, feature_names
from risk.features import build_features
from risk.settings import FeatureSettings, load_settings
from risk.sources import Sources, load_sources
from risk.spatial import neighbours


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
