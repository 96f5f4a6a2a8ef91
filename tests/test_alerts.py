"""Which tracts alert, and why: new to the high tier, rising, crossing the probability line; reviews silence."""

from __future__ import annotations

import numpy as np
import pandas as pd

from risk.alerts.rules import decide
from risk.core.settings import AlertSettings

CFG = AlertSettings(rise_points=10.0, probability=0.25, suppress_decisions=("monitor",), suppress_margin_points=5.0)


def _scores(rows: dict[str, tuple[str, float, float, float]]) -> pd.DataFrame:
    """GEOID -> (tier, probability, percentile, percentile_change)."""
    frame = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=["tier", "probability", "percentile", "percentile_change"])
    frame["probability_change"] = np.nan
    return frame.rename_axis("geoid")


def test_each_reason_fires_on_its_own_and_together_and_nothing_fires_without_one() -> None:
    scores = _scores({
        "new_high": ("high", 0.20, 0.97, 1.0),      # high now, elevated before
        "still_high": ("high", 0.20, 0.97, 1.0),    # high before too: nothing new
        "rising": ("watch", 0.05, 0.60, 12.0),
        "crossed": ("elevated", 0.30, 0.90, 0.0),   # 0.30 now, 0.20 before
        "stays_over": ("elevated", 0.30, 0.90, 0.0),  # over the line before too
        "first_seen": ("high", 0.40, 0.99, np.nan),  # no previous run: new high and crossed, not rising
        "quiet": ("low", 0.01, 0.10, -3.0),
    })
    previous = pd.DataFrame({"tier": ["elevated", "high", "watch", "elevated", "elevated", "low"],
                             "probability": [0.2, 0.2, 0.05, 0.20, 0.26, 0.01]},
                            index=["new_high", "still_high", "rising", "crossed", "stays_over", "quiet"])
    alerts = decide(scores, previous, pd.DataFrame(), CFG)
    assert {a.geoid: a.reasons for a in alerts} == {
        "new_high": ("new_high",), "rising": ("rising",), "crossed": ("crossed",),
        "first_seen": ("new_high", "crossed")}
    assert [a.geoid for a in alerts][0] == "first_seen"  # highest probability first
    first = next(a for a in alerts if a.geoid == "first_seen")
    assert first.percentile_change is None and first.probability_change is None


def test_a_reviewed_tract_is_silent_until_it_rises_past_the_margin() -> None:
    scores = _scores({"a": ("high", 0.4, 0.95, 11.0), "b": ("high", 0.4, 0.99, 11.0)})
    decisions = pd.DataFrame({"decision": ["monitor", "monitor"], "percentile": [0.93, 0.93]}, index=["a", "b"])
    alerts = decide(scores, pd.DataFrame(columns=["probability", "percentile"]), decisions, CFG)
    assert [a.geoid for a in alerts] == ["b"]  # a: 2 points above its review, b: 6
