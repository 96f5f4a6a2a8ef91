"""Tracts too small to score, or living mostly in group quarters, are not ranked, never alert and are listed
apart (issue 21, item 9)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from risk.alerts.digests import _unranked_notes
from risk.alerts.rules import decide
from risk.core.settings import AlertSettings, Settings, TierSettings
from risk.features.build import build_features
from risk.scoring.scores import score_tracts, unranked_reasons
from risk.sources import Sources

SIZES = pd.DataFrame({"population": [12.0, 4000.0, 2600.0, np.nan, 3000.0],
                      "households": [4.0, 1500.0, 300.0, np.nan, 1100.0],
                      "renter_households": [2.0, 700.0, 280.0, np.nan, 5.0]},
                     index=pd.Index(["t_small", "t_ok", "t_dorms", "t_unknown", "t_owners"], name="geoid"))


class _Model:
    """Probabilities given per tract: the scores' ranking, not the model, is under test."""

    def __init__(self, p: dict[str, float]) -> None:
        self.p = p

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.array([self.p[g] for g in X.index])


def test_a_tract_with_a_handful_of_people_households_or_renters_is_too_small_to_score() -> None:
    reasons = unranked_reasons(SIZES, TierSettings())
    assert reasons["t_small"] == "too small to score: 12 people, 4 households, 2 renter households"
    assert reasons["t_owners"].startswith("too small to score: 3,000 people, 1,100 households, 5 renter")
    assert reasons["t_dorms"] == ("mostly group quarters (dormitories, prisons or barracks): 2,600 people in "
                                  "300 households")
    assert pd.isna(reasons["t_ok"]) and pd.isna(reasons["t_unknown"])  # no count: nothing says it is small


def test_the_floors_are_settings() -> None:
    loose = TierSettings(min_population=0, min_households=0, min_renter_households=0, group_quarters_ratio=100)
    assert unranked_reasons(SIZES, loose).isna().all()


def test_unranked_tracts_keep_their_probability_but_take_no_rank_and_no_rank_change() -> None:
    model = _Model({"t_small": 0.99, "t_ok": 0.5, "t_dorms": 0.98, "t_unknown": 0.2, "t_owners": 0.97})
    previous = pd.DataFrame({"probability": [0.1] * 5, "percentile": [0.5] * 5, "unranked": [None] * 5},
                            index=SIZES.index)
    table = score_tracts(model, SIZES, previous, TierSettings())  # type: ignore[arg-type]
    ranked = table["unranked"].isna()
    assert list(table.index[ranked]) == ["t_ok", "t_unknown"]
    assert table.loc["t_ok", "percentile"] == 1.0 and table.loc["t_ok", "tier"] == "high"  # first of the ranked
    assert (table.loc[~ranked, "percentile"] == 0).all() and (table.loc[~ranked, "tier"] == "low").all()
    assert table.loc["t_small", "probability"] == 0.99
    assert table.loc[~ranked, "percentile_change"].isna().all()
    assert table.loc["t_ok", "percentile_change"] == 50.0


def test_an_unranked_tract_never_alerts_however_high_its_probability() -> None:
    model = _Model({"t_small": 0.99, "t_ok": 0.5, "t_dorms": 0.98, "t_unknown": 0.2, "t_owners": 0.97})
    table = score_tracts(model, SIZES, pd.DataFrame(), TierSettings())  # type: ignore[arg-type]
    alerts = decide(table, pd.DataFrame(), pd.DataFrame(), AlertSettings(probability=0.9))
    assert [a.geoid for a in alerts] == ["t_ok"]


def test_the_digest_note_names_the_recipients_unranked_tracts_with_their_reasons() -> None:
    table = score_tracts(_Model(dict.fromkeys(SIZES.index, 0.5)), SIZES, pd.DataFrame(),  # type: ignore[arg-type]
                         TierSettings())
    notes = _unranked_notes(table, {"t_small", "t_ok"}, {"t_small": "Census tract 9800.21"})
    assert notes == ["1 tract(s) are not ranked and never alert, because their scores would rest on a handful of "
                     "households: Census tract 9800.21 (too small to score: 12 people, 4 households, 2 renter "
                     "households)."]
    assert _unranked_notes(table, {"t_ok"}, {}) == []


def test_the_bundled_sample_marks_its_university_district_tract_as_group_quarters(
        bundled_settings: Settings, bundled_sources: Sources) -> None:
    features = build_features(bundled_sources, date(2019, 6, 1), bundled_settings.features)
    reasons = unranked_reasons(features, bundled_settings.model.tiers).dropna()
    assert list(reasons.index) == ["53033005302"] and reasons.iloc[0].startswith("mostly group quarters")


def test_a_neighbourhood_of_large_families_stays_ranked() -> None:
    # an Oakland tract of the example regions: 4.1 people per household are families, not dormitories
    families = pd.DataFrame({"population": [5802.0, 11429.0], "households": [1402.0, 999.0],
                             "renter_households": [900.0, 600.0]}, index=pd.Index(["06001406201", "06053001600"]))
    reasons = unranked_reasons(families, TierSettings())
    assert pd.isna(reasons["06001406201"]) and reasons["06053001600"].startswith("mostly group quarters")
