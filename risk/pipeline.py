"""The weekly cycle, composed from the stages that exist so far.

Load and validate the sources, build point-in-time features, train a model
when the registry has no champion for the configured outcome, score every
tract, explain every score, store the run, decide alerts, queue the messages
in the durable outbox and deliver them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from risk.backtest import run_backtest
from risk.delivery import queue, send_queued
from risk.digests import RunOutputs, compose
from risk.explain import contributions, drivers
from risk.dictionary import feature_names
from risk.features import build_features
from risk.files import atomic_path
from risk.model import TrainedModel
from risk.registry import ModelRecord, Registry
from risk.report import write_report
from risk.scores import score_tracts
from risk.settings import Settings
from risk.sources import Sources, load_sources
from risk.errors import RiskError
from risk.store import (
    engine_for,
    latest_decisions,
    latest_run,
    previous_scores,
    run_drivers,
    run_scores,
    save_run,
)
from risk.training import train_and_register

DRIVERS_PER_TRACT = 5


@dataclass
class RunResult:
    """What one run did."""

    as_of: date
    features_path: Path
    tracts: int
    coverage: dict[str, int]
    run_id: int | None = None
    model_id: str | None = None
    retrained: bool = False
    tiers: dict[str, int] = field(default_factory=dict)
    alerts: int = 0
    emails_queued: int = 0
    emails_sent: int = 0
    emails_failed: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    data_notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id, "status": "finished", "as_of": self.as_of.isoformat(), "model_id": self.model_id,
            "retrained": self.retrained, "tracts_scored": self.tracts, "tiers": self.tiers, "alerts": self.alerts,
            "emails_queued": self.emails_queued, "emails_sent": self.emails_sent,
            "emails_failed": self.emails_failed,
            "features_path": str(self.features_path), "coverage": self.coverage,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "data_notes": self.data_notes,
        }


def default_as_of(sources: Sources, today: date | None = None) -> date:
    """The newest date at which every time-series family still has fresh data, capped at today."""
    limits = [pd.Timestamp(today or date.today())]
    for family, frame, column in (("evictions", sources.evictions, "available"), ("rent", sources.rent, "available"),
                                  ("permits", sources.permits, "issued")):
        if frame is not None and not frame.empty:
            limits.append(frame[column].max() + sources.max_age[family])
    return min(limits).date()


def data_notes(features: pd.DataFrame, sources: Sources) -> list[str]:
    """Plain-language notes on missing or stale families at this as-of date."""
    notes = [str(w) for w in sources.warnings]
    configured = {"rent_index": sources.rent is not None, "evictions": sources.evictions is not None,
                  "permits": sources.permits is not None, "demographics": True}
    for family, present in configured.items():
        covered = int(features[f"cov_{family}"].sum())
        if not present:
            notes.append(f"{family.replace('_', ' ')}: not configured; its features are missing for every tract")
        elif covered == 0:
            notes.append(f"{family.replace('_', ' ')}: no data fresh enough at {features.attrs['as_of']}; "
                         "its features are missing for every tract")
    return notes


def write_features(features: pd.DataFrame, path: Path) -> Path:
    """Write a feature table to Parquet, atomically."""
    with atomic_path(path) as tmp:
        features.to_parquet(tmp, index=True)
    return path


def _champion(settings: Settings, sources: Sources, as_of: date) -> tuple[ModelRecord, bool]:
    """The champion for the configured outcome, trained first if there is none."""
    registry = Registry(settings.paths.models)
    champion = registry.champion(settings.model.outcome)
    if champion is not None and champion.metadata.get("features") == feature_names(settings.features.spatial_lags):
        return champion, False
    result = run_backtest(settings, sources, settings.model.outcome)
    write_report(result, settings.paths.reports)
    trained = train_and_register(settings, sources, as_of, result)
    if not trained.promoted:
        registry.promote(trained.record.model_id)  # the configured outcome has no champion at all
    return trained.record, True


def _driver_rows(model: TrainedModel, features: pd.DataFrame) -> pd.DataFrame:
    expl = contributions(model, features)
    county = features.median()
    rows = []
    for geoid in features.index:
        for rank, d in enumerate(drivers(expl, geoid, county, DRIVERS_PER_TRACT), start=1):
            rows.append({"geoid": geoid, "rank": rank, "feature": d.feature, "value": d.value,
                         "contribution": d.contribution, "sentence": d.sentence})
    return pd.DataFrame(rows)


def run(settings: Settings, as_of: date | None = None, today: date | None = None) -> RunResult:
    """One weekly cycle up to stored, explained scores."""
    seconds: dict[str, float] = {}
    started = datetime.now(UTC)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now

    sources = load_sources(settings, today)
    lap("validate")
    as_of = as_of or default_as_of(sources, today)
    features = build_features(sources, as_of, settings.features)
    path = write_features(features, settings.paths.features / f"features_{as_of.isoformat()}.parquet")
    lap("features")
    record, retrained = _champion(settings, sources, as_of)
    model = record.load()
    lap("train")
    engine = engine_for(settings.paths.database)
    previous = previous_scores(engine)
    table = score_tracts(model, features, previous, settings.model.tiers)
    lap("score")
    driver_rows = _driver_rows(model, features)
    lap("explain")
    run_id = save_run(engine, as_of, record.model_id, settings.model.outcome, table, driver_rows, started)
    lap("store")
    notes = data_notes(features, sources)
    outputs = RunOutputs(as_of, table, previous, latest_decisions(engine), driver_rows, features, model, notes)
    alerts, outgoing = compose(settings, sources.tracts, outputs)
    queued = queue(engine, run_id, outgoing)
    lap("alerts")
    sent = send_queued(engine, settings.delivery)
    lap("deliver")
    coverage = {c.removeprefix("cov_"): int(features[c].sum()) for c in features.columns if c.startswith("cov_")}
    return RunResult(as_of=as_of, features_path=path, tracts=len(table), coverage=coverage, run_id=run_id,
                     model_id=record.model_id, retrained=retrained,
                     tiers={t: int((table["tier"] == t).sum()) for t in ("high", "elevated", "watch", "low")},
                     alerts=len(alerts), emails_queued=queued, emails_sent=sent.sent, emails_failed=sent.failed,
                     stage_seconds=seconds, data_notes=notes)


def latest_outputs(settings: Settings) -> tuple[int, RunOutputs, Sources]:
    """The newest stored run, reassembled for previews and re-sends."""
    engine = engine_for(settings.paths.database)
    row = latest_run(engine)
    if row is None:
        raise RiskError("no scoring run in the database yet: run `risk run` first")
    sources = load_sources(settings)
    path = settings.paths.features / f"features_{row['as_of'].isoformat()}.parquet"
    if not path.exists():
        raise RiskError(f"the features of run {row['id']} are missing ({path}): run `risk run` again")
    features = pd.read_parquet(path)
    model = Registry(settings.paths.models).get(row["model_id"]).load()
    outputs = RunOutputs(row["as_of"], run_scores(engine, row["id"]), previous_scores(engine, before_run=row["id"]),
                         latest_decisions(engine), run_drivers(engine, row["id"]), features, model,
                         data_notes(features, sources))
    return int(row["id"]), outputs, sources
