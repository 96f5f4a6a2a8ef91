"""Replay: the weekly cycle over history, to see how the alerts would have behaved.

Each replayed week builds features as of that date, scores every tract with a
model trained only on outcome windows closed by that date (trained in memory
and cached until a new window closes; the registry is not touched), and
decides alerts against the week before. Nothing is stored and no e-mail is
sent. Per week it reports how many tracts alerted, the churn of the high tier
(the share of the union of this week's and last week's high-tier tracts that
is in only one of them), and, where the outcome is known, how early the
alerts came: an alert is early for a tract that turns positive in an outcome
window ending after the alert (and starting at most a year after it); its
lead is the time from the alert to the day the outcome became known.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

import pandas as pd

from risk.alerts.rules import decide
from risk.core.errors import RiskError
from risk.core.settings import Settings
from risk.features.dictionary import feature_names
from risk.model.backtest import OriginData, build_panel
from risk.model.engines import configured as engine
from risk.model.gbm import TrainedModel, TrainingRows, train
from risk.outcomes.registry import outcome_for
from risk.scoring.scores import score_tracts
from risk.sources import load_sources

LEAD_WINDOW = timedelta(days=365)


@dataclass(frozen=True)
class ReplayWeek:
    """One replayed week."""

    as_of: date
    model_origin: str
    flagged: int
    alerts: int
    churn: float | None
    early_alerts: int
    median_lead_years: float | None


@dataclass
class Replay:
    """Every replayed week and the outcome the model predicts."""

    outcome: str
    weeks: list[ReplayWeek] = field(default_factory=list)
    positives_in_range: int = 0
    positives_alerted_early: int = 0

    def summary(self) -> str:
        """One paragraph for people."""
        churn = [w.churn for w in self.weeks if w.churn is not None]
        leads = [w.median_lead_years for w in self.weeks if w.median_lead_years is not None]
        parts = [f"{len(self.weeks)} weeks replayed for {self.outcome}",
                 f"median alerts per week {statistics.median([w.alerts for w in self.weeks]):.0f}"]
        if churn:
            parts.append(f"median high-tier churn {statistics.median(churn):.0%}")
        if self.positives_in_range:
            parts.append(f"{self.positives_alerted_early} of {self.positives_in_range} positive outcomes ending "
                         f"in the range were alerted before their window ended")
        if leads:
            parts.append(f"median lead {statistics.median(leads):.1f} years")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"outcome": self.outcome, "summary": self.summary(), "positives_in_range": self.positives_in_range,
                "positives_alerted_early": self.positives_alerted_early,
                "weeks": [{**asdict(w), "as_of": w.as_of.isoformat()} for w in self.weeks]}


def _positives(panel: list[OriginData]) -> pd.DataFrame:
    """Positive tract-windows; a window ends when its outcome becomes known (``closes``), for every outcome."""
    rows = [{"geoid": g, "start": d.origin.as_of, "end": d.origin.closes}
            for d in panel for g in d.labels.index[d.labels["y"] == 1]]
    return pd.DataFrame(rows, columns=["geoid", "start", "end"])


def _model_for(panel: list[OriginData], as_of: date, names: list[str], seed: int,
               cache: dict[tuple[int, ...], TrainedModel]) -> tuple[TrainedModel, str] | None:
    closed = [d for d in panel if d.origin.closes <= as_of]
    if not closed:
        return None
    key = tuple(d.origin.year for d in closed)
    if key not in cache:
        cache[key] = train([TrainingRows(d.origin.year, d.X, d.labels["y"]) for d in closed], names, seed)
    return cache[key], f"{key[0]}-{key[-1]}"


def _early(alerted: list[str], as_of: date, positives: pd.DataFrame) -> list[float]:
    hits = positives[positives["geoid"].isin(alerted) & (positives["end"] >= as_of)
                     & (positives["start"] <= as_of + LEAD_WINDOW)]
    return [(end - as_of).days / 365.25 for end in hits.groupby("geoid")["end"].min()]


def replay(settings: Settings, start: date, end: date, step: timedelta,
           progress: Callable[[str], None] | None = None) -> Replay:
    """Replay the weekly cycle from ``start`` to ``end`` every ``step`` (no storage, no e-mail)."""
    sources = load_sources(settings)
    outcome = outcome_for(settings.model.outcome, settings)
    panel = build_panel(outcome, sources, settings, progress)
    positives = _positives(panel)
    names = feature_names(settings.features.spatial_lags)
    no_decisions = pd.DataFrame(columns=["decision", "percentile", "decided_at"])
    result = Replay(settings.model.outcome)
    cache: dict[tuple[int, ...], TrainedModel] = {}
    previous = pd.DataFrame(columns=["probability", "percentile", "tier"])
    alert_dates: dict[str, list[date]] = {}
    as_of = start
    while as_of <= end:
        if progress:
            progress(f"replaying {as_of}")
        chosen = _model_for(panel, as_of, names, settings.model.seed, cache)
        if chosen is None:
            raise RiskError(f"no outcome window of {settings.model.outcome} has closed by {as_of}: "
                            "start the replay later")
        model, label = chosen
        features = engine.features(settings, sources, as_of)
        table = score_tracts(model, features[names], previous, settings.model.tiers)
        alerted = [a.geoid for a in decide(table, previous, no_decisions, settings.alerts)]
        for geoid in alerted:
            alert_dates.setdefault(geoid, []).append(as_of)
        high, before = set(table.index[table["tier"] == "high"]), set(previous.index[previous["tier"] == "high"])
        churn = len(high ^ before) / len(high | before) if before and (high | before) else None
        leads = _early(alerted, as_of, positives)
        result.weeks.append(ReplayWeek(as_of, label, len(high), len(alerted), churn, len(leads),
                                       statistics.median(leads) if leads else None))
        previous = table
        as_of += step
    in_range = positives[(positives["end"] >= start) & (positives["end"] <= end)]
    result.positives_in_range = len(in_range)
    result.positives_alerted_early = int(sum(  # an alert at most a year before the window opened, up to its end
        any(s - LEAD_WINDOW <= a <= e for a in alert_dates.get(g, []))
        for g, s, e in zip(in_range["geoid"], in_range["start"], in_range["end"])))
    return result
