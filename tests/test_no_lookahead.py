"""No look-ahead: records dated after the as-of date cannot change the features.

Each family's records carry the date they became known (release, publication
lag included, or permit issue date). Deleting or changing any record known
only after ``as_of`` must leave every feature unchanged; changing one known
before it must not (the positive control, so the test can fail).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest
from conftest import needs_shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from risk.features.build import build_features
from risk.sources import Sources

DATED = {"demographics": "released", "evictions": "available", "rent": "available", "permits": "issued"}
VALUES = {"demographics": ["value"], "evictions": ["filings", "judgments", "renters"], "rent": ["zhvi", "zri"],
          "permits": ["units_added", "units_removed", "value"]}


def _mutate(sources: Sources, as_of: date, rng: np.random.Generator, *, delete: float, past: bool = False) -> Sources:
    """Delete a share of the records known after ``as_of`` and scramble the rest (or, with past, those known before)."""
    cut = pd.Timestamp(as_of)
    changes = {}
    for family, column in DATED.items():
        frame = getattr(sources, family)
        if frame is None:
            continue
        frame = frame.copy()
        later = (frame[column] <= cut) if past else (frame[column] > cut)
        if past:
            # records known by as_of change: the features must notice
            for c in VALUES[family]:
                frame.loc[later, c] = frame.loc[later, c] * 3 + 7
            changes[family] = frame
            continue
        drop = later & (rng.random(len(frame)) < delete)
        frame = frame[~drop]
        later = later[~drop]
        for c in VALUES[family]:
            noise = rng.uniform(0.1, 10.0, int(later.sum()))
            frame.loc[later, c] = frame.loc[later, c] * noise
        # a later record may also move to another tract
        if later.any():
            frame.loc[later, "geoid"] = rng.permutation(frame.loc[later, "geoid"].to_numpy())
        changes[family] = frame
    return replace(sources, **changes)


def _assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=0)


SWEEP = [date(2003, 6, 30), date(2008, 12, 31), date(2011, 9, 30), date(2012, 12, 31), date(2013, 12, 17),
         date(2014, 6, 30), date(2015, 12, 31), date(2016, 3, 1), date(2019, 12, 19), date(2022, 1, 3)]


@needs_shared
@pytest.mark.parametrize("as_of", SWEEP, ids=str)
def test_later_records_never_change_features_on_the_full_king_county_data(shared_sources: Sources, as_of: date) -> None:
    rng = np.random.default_rng(as_of.toordinal())
    base = build_features(shared_sources, as_of)
    _assert_same(base, build_features(_mutate(shared_sources, as_of, rng, delete=1.0), as_of))
    _assert_same(base, build_features(_mutate(shared_sources, as_of, rng, delete=0.3), as_of))


@pytest.mark.parametrize("as_of", [date(2012, 12, 31), date(2015, 12, 31), date(2019, 3, 1)], ids=str)
def test_later_records_never_change_features_on_the_bundled_sample(bundled_sources: Sources, as_of: date) -> None:
    rng = np.random.default_rng(7)
    base = build_features(bundled_sources, as_of)
    _assert_same(base, build_features(_mutate(bundled_sources, as_of, rng, delete=0.5), as_of))


@pytest.mark.parametrize("as_of", [date(2012, 12, 31), date(2015, 12, 31)], ids=str)
def test_an_earlier_record_does_change_features(bundled_sources: Sources, as_of: date) -> None:
    base = build_features(bundled_sources, as_of)
    changed = build_features(_mutate(bundled_sources, as_of, np.random.default_rng(3), delete=0.0, past=True), as_of)
    differs = [c for c in base.columns if not base[c].equals(changed[c])]
    assert {"eviction_filing_rate_change_3y", "permits_new_12m", "low_income_share", "acs_median_rent",
            "eviction_filing_ratio_change_3y", "eviction_filing_ratio_12m", "acs_median_rent_vs_region"} <= set(differs)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(as_of=st.dates(min_value=date(2001, 1, 1), max_value=date(2026, 1, 1)),
       delete=st.floats(min_value=0.0, max_value=1.0), seed=st.integers(0, 2**32 - 1))
def test_later_records_never_change_features_for_any_date(world_sources: Sources, as_of: date, delete: float,
                                                          seed: int) -> None:
    base = build_features(world_sources, as_of)
    mutated = _mutate(world_sources, as_of, np.random.default_rng(seed), delete=delete)
    _assert_same(base, build_features(mutated, as_of))
