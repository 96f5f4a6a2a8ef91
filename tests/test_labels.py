"""Outcome labels: null checks, and no feature computed from a label's inputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from risk.features import build_features
from risk.labels import EvictionSurge, label_summary, null_check, outcome_for
from risk.settings import EvictionSurgeSettings, Settings
from risk.sources import Sources


@pytest.mark.parametrize("name", ["eviction_surge", "low_income_loss"])
def test_every_outcome_passes_its_null_check_on_the_bundled_data(name: str, bundled_settings: Settings,
                                                                bundled_sources: Sources) -> None:
    rows = label_summary(outcome_for(name, bundled_settings), bundled_sources, 10, seed=1)
    observed, null, ok = null_check(rows)
    assert ok, f"{name}: null {null:.4f} against observed {observed:.4f}"
    assert sum(r.positives for r in rows) >= 20


def test_a_short_noisy_baseline_would_fail_where_the_configured_one_passes(bundled_sources: Sources) -> None:
    # the naive 'rose 25% faster than the county' label fires on noise alone; the test must be able to tell
    naive = EvictionSurge(EvictionSurgeSettings(alpha=0.49, min_rise=0.25, baseline_years=1), 60)
    observed, null, ok = null_check(label_summary(naive, bundled_sources, 10, seed=1))
    assert not ok and null > 0.25 * observed


def _eviction_window_changed(sources: Sources, years: list[int]) -> Sources:
    ev = sources.evictions.copy()
    rows = ev["year"].isin(years)
    ev.loc[rows, "filings"] = ev.loc[rows, "filings"] * 4 + 3
    ev.loc[rows, "renters"] = ev.loc[rows, "renters"] * 0.5
    return replace(sources, evictions=ev)


def test_no_feature_is_computed_from_the_eviction_labels_inputs(bundled_settings: Settings,
                                                                 bundled_sources: Sources) -> None:
    outcome = outcome_for("eviction_surge", bundled_settings)
    h = bundled_settings.model.eviction_surge.horizon_years
    for origin in outcome.origins(bundled_sources)[::3]:
        window = list(range(origin.year + 1, origin.year + h + 1))
        changed = _eviction_window_changed(bundled_sources, window)
        before = build_features(bundled_sources, origin.as_of)
        after = build_features(changed, origin.as_of)
        pd.testing.assert_frame_equal(before, after)
        # the label does read those records: the check is not vacuous
        assert not outcome.label(bundled_sources, origin)["y"].equals(outcome.label(changed, origin)["y"])


def test_no_feature_is_computed_from_the_low_income_labels_inputs(bundled_settings: Settings,
                                                                   bundled_sources: Sources) -> None:
    outcome = outcome_for("low_income_loss", bundled_settings)
    for origin in outcome.origins(bundled_sources):
        later = bundled_sources.demographics["released"].dt.date == origin.closes
        demo = bundled_sources.demographics.copy()
        demo.loc[later, "value"] = demo.loc[later, "value"] * np.linspace(0.2, 3.0, int(later.sum()))
        changed = replace(bundled_sources, demographics=demo)
        pd.testing.assert_frame_equal(build_features(bundled_sources, origin.as_of),
                                      build_features(changed, origin.as_of))
        assert not outcome.label(bundled_sources, origin)["y"].equals(outcome.label(changed, origin)["y"])


def test_eviction_label_windows_follow_the_configured_horizon(bundled_settings: Settings,
                                                             bundled_sources: Sources) -> None:
    outcome = outcome_for("eviction_surge", bundled_settings)
    origins = outcome.origins(bundled_sources)
    h = bundled_settings.model.eviction_surge.horizon_years
    assert origins[0].year == bundled_settings.model.eviction_surge.first_origin
    assert origins[-1].year == 2016 - h  # Eviction Lab ends in 2016
    for o in origins:
        assert o.closes.year == o.year + h + 1 and o.as_of.year == o.year + 1


def test_low_income_origins_are_the_vintages_with_counts(bundled_settings: Settings, bundled_sources: Sources) -> None:
    origins = outcome_for("low_income_loss", bundled_settings).origins(bundled_sources)
    assert [(o.year, o.as_of.isoformat(), o.closes.isoformat()) for o in origins] == [
        (1990, "1992-08-01", "2002-08-01"), (2000, "2002-08-01", "2019-12-19")]
