"""Alert rules and subscriptions: which tracts alert this week, and who hears about which.

A tract alerts when it newly enters the high tier, when its percentile rank
rises by ``rise_points`` since the last run, or when its probability crosses
``probability``. After a planner's decision in ``suppress_decisions`` (a
false alarm, a case already escalated) it stays quiet unless its percentile
rank rises ``suppress_margin_points`` above the rank it had when decided.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from risk.core.settings import AlertSettings


@dataclass(frozen=True)
class Week:
    """What every rule sees, one value per tract (aligned on this run's scores): this run and the one before."""

    scores: pd.DataFrame
    previous_tier: pd.Series
    previous_probability: pd.Series
    percentile_change: pd.Series


@dataclass(frozen=True)
class Rule:
    """One reason to alert: its name (stored and used in keys), its words in messages, and which tracts it fires for."""

    name: str
    words: str
    fires: Callable[[Week, AlertSettings], np.ndarray]


RULES: tuple[Rule, ...] = (
    Rule("new_high", "newly in the high tier",
         lambda w, cfg: (w.scores["tier"] == "high").to_numpy() & (w.previous_tier != "high").to_numpy()),
    Rule("rising", "rising fast",
         lambda w, cfg: (w.percentile_change.notna() & (w.percentile_change >= cfg.rise_points)).to_numpy()),
    Rule("crossed", "crossed the alert probability",
         lambda w, cfg: (w.scores["probability"] >= cfg.probability).to_numpy()
         & ~(w.previous_probability >= cfg.probability).to_numpy()),
)
"""Every alert rule, in the order its reasons are listed: a new rule is one line here (and its threshold in
``alerts`` settings)."""

REASONS = {rule.name: rule.words for rule in RULES}


@dataclass(frozen=True)
class Alert:
    """One tract alerting this week, with the reasons."""

    geoid: str
    reasons: tuple[str, ...]
    probability: float
    percentile: float
    tier: str
    probability_change: float | None
    percentile_change: float | None


def week_of(as_of: date) -> str:
    """ISO week of a run, e.g. ``2019-W09``: the unit of exactly-once delivery."""
    year, week, _ = as_of.isocalendar()
    return f"{year}-W{week:02d}"


def idempotency_key(recipient: str, item: str, week: str) -> str:
    """Stable key of one item (a tract, or a kind of message) for one recipient in one run week."""
    return hashlib.sha256(f"{recipient.lower()}|{item}|{week}".encode()).hexdigest()[:32]


def decide(scores: pd.DataFrame, previous: pd.DataFrame, decisions: pd.DataFrame, cfg: AlertSettings) -> list[Alert]:
    """Alerts of this run. ``scores``/``previous`` are indexed by GEOID; ``decisions`` holds the latest
    review per tract (index GEOID, columns ``decision`` and ``percentile``)."""
    if "unranked" in scores:  # a tract too small to score (or mostly group quarters) never alerts
        scores = scores[scores["unranked"].isna()]
    prev_tier = previous["tier"].reindex(scores.index) if "tier" in previous else pd.Series(index=scores.index)
    prev_p = previous["probability"].reindex(scores.index) if "probability" in previous else pd.Series(
        index=scores.index, dtype="float64")
    if scores.empty:
        return []
    change = scores["percentile_change"] if "percentile_change" in scores else pd.Series(np.nan, index=scores.index)
    week = Week(scores, prev_tier, prev_p, change)
    # each rule for every tract at once: a row-by-row loop over 85,000 tracts takes tens of seconds
    reasons = pd.DataFrame({rule.name: rule.fires(week, cfg) for rule in RULES}, index=scores.index)
    alerts = []
    for geoid, flags in reasons[reasons.any(axis=1)].iterrows():
        row = scores.loc[geoid]
        if _suppressed(geoid, row["percentile"], decisions, cfg):
            continue
        alerts.append(Alert(str(geoid), tuple(r for r in reasons.columns if flags[r]), float(row["probability"]),
                            float(row["percentile"]), str(row["tier"]), _num(row.get("probability_change")),
                            _num(change[geoid])))
    return sorted(alerts, key=lambda a: -a.probability)


def _num(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


def _suppressed(geoid: str, percentile: float, decisions: pd.DataFrame, cfg: AlertSettings) -> bool:
    if decisions.empty or geoid not in decisions.index:
        return False
    last = decisions.loc[geoid]
    if last["decision"] not in cfg.suppress_decisions:
        return False
    return 100 * (percentile - float(last["percentile"])) < cfg.suppress_margin_points
