"""The weekly cycle: every stage composed, under a database lock, recorded in the run history.

Load and validate the sources, build point-in-time features, retrain when
the policy says so, score every tract, explain every score, store the run,
decide alerts, queue the messages in the durable outbox and deliver them.
Each stage commits one transaction or writes a temporary file and renames it,
so a run killed anywhere leaves the last good model, scores and outbox
intact, and the next run completes the work: it finds the same alerts (the
killed run never became the "previous run"), queues only messages not yet in
the outbox and sends what is still queued.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy import Engine

from risk.alerts.digests import RunOutputs, compose
from risk.alerts.recipients import check_recipients, load_recipients
from risk.core import clock
from risk.core.crashpoints import checkpoint
from risk.core.errors import BacktestError, StoppedError
from risk.core.files import atomic_path
from risk.core.settings import Settings
from risk.core.store import (
    engine_for,
    latest_decisions,
    latest_run,
    previous_scores,
    save_scores,
)
from risk.delivery.outbox import queue, requeue_interrupted, send_queued
from risk.features.dictionary import feature_names
from risk.model.engines.configured import train_and_register
from risk.model.gbm import TrainedModel
from risk.model.registry import ModelRecord
from risk.model.track_record import track_record
from risk.scoring.explain import comparison_area, contributions, driver_table
from risk.service.artifacts import features_path, model_registry, read_newest_run
from risk.service.freshness import required_sources
from risk.service.history import abandon_unfinished, begin_run, finish_run, update_run
from risk.service.lock import RunLock
from risk.service.regions import (
    Project,
    load_project,
    project_as_of,
    project_features,
    project_freshness,
    project_scores,
)
from risk.service.regions import backtest as regional_backtest
from risk.sources import Sources

if TYPE_CHECKING:  # only for hints: risk.model.training imports the backtest (see backtest_and_register)
    from risk.model.training import TrainingResult

DRIVERS_PER_TRACT = 5
STAGES = ("validate", "features", "train", "score", "explain", "store", "alerts", "deliver")


@dataclass
class RunResult:
    """What one run did."""

    as_of: date
    features_path: Path
    tracts: int
    coverage: dict[str, int]
    run_id: int | None = None
    status: str = "finished"
    model_id: str | None = None
    retrained: bool = False
    tiers: dict[str, int] = field(default_factory=dict)
    alerts: int = 0
    emails_queued: int = 0
    emails_sent: int = 0
    emails_failed: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    data_notes: list[str] = field(default_factory=list)
    recipients_skipped: list[str] = field(default_factory=list)
    """Messages that could not be written, one line each (recipient and reason); everyone else's went out."""

    def counts(self) -> dict[str, object]:
        """The counts stored in the run history."""
        return {"tracts_scored": self.tracts, "tiers": self.tiers, "alerts": self.alerts,
                "emails_queued": self.emails_queued, "emails_sent": self.emails_sent,
                "emails_failed": self.emails_failed, "recipients_skipped": self.recipients_skipped}

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id, "status": self.status, "as_of": self.as_of.isoformat(),
            "model_id": self.model_id, "retrained": self.retrained, **self.counts(),
            "features_path": str(self.features_path), "coverage": self.coverage,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "data_notes": self.data_notes,
        }


def write_features(features: pd.DataFrame, path: Path) -> Path:
    """Write a feature table to Parquet, atomically."""
    with atomic_path(path) as tmp:
        features.to_parquet(tmp, index=True)
        checkpoint("features.written")
    return path


def retrain_reason(settings: Settings, champion: ModelRecord | None, newest: ModelRecord | None,
                   sources: Sources, as_of: date) -> str | None:
    """Why this run must train a model, or None to keep the champion.

    The policy looks at the newest model trained for the outcome, not only the
    champion: a challenger that was not promoted still counts as this data's
    training, so the next run does not train it again."""
    if champion is None:
        return "no champion yet"
    if champion.metadata.get("features") != feature_names(settings.features.spatial_lags):
        return "the champion was trained on other features"
    last = newest or champion
    policy = settings.model.retrain
    recorded = last.metadata.get("data_hashes")  # absent for a model registered by hand: keep it
    if policy.policy == "data_changed" and recorded is not None and recorded != sources.file_hashes:
        return "an input file changed since the last model was trained"
    trained = last.metadata.get("as_of")
    if policy.policy == "every_n_weeks" and trained:
        if (as_of - date.fromisoformat(str(trained))).days >= 7 * policy.every_weeks:
            return f"the last model was trained more than {policy.every_weeks} weeks before this run"
    return None


def backtest_and_register(settings: Settings, sources: Sources, as_of: date, outcome: str | None = None,
                          progress: Callable[[str], None] | None = None, project: Project | None = None
                          ) -> TrainingResult:
    """Backtest an outcome (default: the configured one), write its report, then train the production model on
    every closed origin, register it and promote it unless it is worse; the work cache is pruned after."""
    # imported here: the backtest pulls in scikit-learn and SciPy, seconds of start-up most weekly runs don't need
    from risk.model.backtest import run_backtest
    from risk.model.cache import work_cache
    from risk.model.report import write_report

    if settings.multi_region:  # pooled over the regions: each region's work is keyed by its own sources
        result = regional_backtest(settings, outcome or settings.model.outcome, progress, project)
        checkpoint("train.backtested")
        write_report(result, settings.paths.reports)
        if progress is not None:
            progress("training the production model on every region's closed origins")
        first = project.regions[0] if project is not None else None
        # the merged origins' keys name every region's inputs: any region's cache folder keys the fit alike
        cache = work_cache(first.settings, first.sources) if first is not None else None
        trained = train_and_register(settings, sources, as_of, result, cache)
        if cache:
            cache.prune()
        return trained
    cache = work_cache(settings, sources)
    result = run_backtest(settings, sources, outcome or settings.model.outcome, progress=progress, cache=cache)
    checkpoint("train.backtested")
    write_report(result, settings.paths.reports)
    if not result.null_ok:  # the report says so; a model of labels that noise alone would give is not trained
        raise BacktestError(
            f"{result.outcome}: the null check fails ({100 * result.null_rate:.2f}% positives in no-change worlds "
            f"against {100 * result.observed_rate:.2f}% observed): its labels cannot be told from noise, so no "
            f"model is trained (the champion, if any, stays); see {settings.paths.reports}")
    if progress is not None:
        progress("training the production model")
    trained = train_and_register(settings, sources, as_of, result, cache)
    if cache:
        cache.prune()
    return trained


def train(settings: Settings, outcome: str | None = None, as_of: date | None = None,
          progress: Callable[[str], None] | None = None) -> TrainingResult:
    """`risk train`: the train stage on its own, whatever the retraining policy says.

    ``as_of`` defaults to the date a run today would score (the newest date the required sources support)."""
    project = load_project(settings)
    as_of = as_of or project_as_of(project, clock.today())
    return backtest_and_register(settings, project.sources, as_of, outcome, progress, project)


def _champion(settings: Settings, sources: Sources, as_of: date, project: Project | None = None
              ) -> tuple[ModelRecord, bool]:
    """The champion for the configured outcome, retrained first when the policy says so."""
    registry = model_registry(settings)
    champion = registry.champion(settings.model.outcome)
    newest = ([r for r in registry.list() if r.outcome == settings.model.outcome] or [None])[-1]
    if retrain_reason(settings, champion, newest, sources, as_of) is None:
        return champion, False  # type: ignore[return-value]
    trained = backtest_and_register(settings, sources, as_of, project=project)
    usable = champion is not None and champion.metadata.get("features") == feature_names(settings.features.spatial_lags)
    if trained.promoted or not usable:
        registry.promote(trained.record.model_id)  # a champion that cannot score these features must go
        return trained.record, True
    return champion, True  # type: ignore[return-value]


def _driver_rows(model: TrainedModel, features: pd.DataFrame, project: Project) -> pd.DataFrame:
    """The top drivers of every tract, as rows for the database; each tract is compared with its own region's
    median."""
    parts = []
    for region in project.regions:
        own = features.loc[features.index.intersection(region.sources.tracts.index)]
        parts.append(driver_table(contributions(model, own), own.median(), DRIVERS_PER_TRACT,
                                  comparison_area(region.settings.region.county_fips)))
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


class _Stages:
    """Times each stage, records it in the run row, and honours a stop request between stages."""

    def __init__(self, engine: Engine, lock: RunLock, stop: threading.Event | None,
                 on_stage: Callable[[str], None] | None) -> None:
        self.engine, self.lock, self.stop, self.on_stage = engine, lock, stop, on_stage
        self.run_id: int | None = None
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Run one stage: refuse to start it after a stop request or a lost lock, and time it."""
        self.lock.check()
        if self.stop is not None and self.stop.is_set():
            raise StoppedError(f"stopped before the {name} stage")
        if self.on_stage is not None:
            self.on_stage(name)
        if self.run_id is not None:
            update_run(self.engine, self.run_id, stage=name)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        checkpoint(f"{name}.done")


def _previous_coverage(engine: Engine) -> dict[str, int] | None:
    """Tracts covered per source in the previous run, to spot a sharp drop."""
    row = latest_run(engine)
    return row.get("coverage") if row else None


def run(settings: Settings, as_of: date | None = None, today: date | None = None, *,
        stop: threading.Event | None = None, on_stage: Callable[[str], None] | None = None) -> RunResult:
    """One weekly cycle, under the database's run lock, recorded in the run history."""
    today = today or clock.today()  # read once: every stage of this run sees the same date
    # a damaged SQLite file is refused before any stage, rather than failing half-way once scores are made
    engine = engine_for(settings.paths.database, settings.paths.database_busy_timeout_s, quick_check=True)
    with RunLock(engine, settings.schedule.lock_stale_s) as lock:
        abandon_unfinished(engine)
        requeue_interrupted(engine)
        stage = _Stages(engine, lock, stop, on_stage)
        hashes: dict[str, str] = {}
        run_id = begin_run(engine, as_of or today, settings.model.outcome, lock.owner, hashes)
        stage.run_id = run_id
        try:
            result = _cycle(settings, engine, run_id, stage, as_of, today, stop)
        except BaseException as e:  # a stop, an error or Ctrl-C: the run row says where and why
            status = "stopped" if isinstance(e, (StoppedError, KeyboardInterrupt)) else "failed"
            finish_run(engine, run_id, status, error=f"{type(e).__name__}: {e}"[:2000],
                       stage_seconds={k: round(v, 3) for k, v in stage.seconds.items()})
            raise
        checkpoint("run.finishing")
        finish_run(engine, run_id, "finished", stage=None, counts=result.counts(), notes=result.data_notes,
                   coverage=result.coverage, retrained=result.retrained, model_id=result.model_id,
                   stage_seconds={k: round(v, 3) for k, v in result.stage_seconds.items()})
    return result


def _cycle(settings: Settings, engine: Engine, run_id: int, stage: _Stages, as_of: date | None,
           today: date, stop: threading.Event | None) -> RunResult:
    with stage("validate"):
        project = load_project(settings, today, reuse=True)
        sources = project.sources
        # before any work: a recipient following an area that matches no tract would be muted silently
        check_recipients(settings, load_recipients(settings.alerts, []), sources.tracts)
        held_back = as_of is None
        as_of = as_of or project_as_of(project, today)
        update_run(engine, run_id, as_of=as_of, data_hashes=sources.file_hashes)
    with stage("features"):
        features = project_features(project, as_of)
        fresh = project_freshness(project, features, as_of, _previous_coverage(engine))
        if held_back and as_of < today:
            needed = ", ".join(sorted({f for r in project.regions for f in required_sources(r.settings)}))
            fresh.notes.append(f"as of {as_of}, not today ({today}): the required source(s) "
                               f"{needed} have nothing fresh after it; until they do, every run sees this same "
                               "week and sends no new e-mail")
        path = write_features(features, features_path(settings, as_of))
    with stage("train"):
        record, retrained = _champion(settings, sources, as_of, project)
        model = record.load()
        fresh.notes.extend(record.metadata.get("region_notes") or [])
        update_run(engine, run_id, model_id=record.model_id, retrained=retrained)
    with stage("score"):
        previous = previous_scores(engine)
        table = project_scores(project, model, features, previous, settings.model.tiers)
    with stage("explain"):
        driver_rows = _driver_rows(model, features, project)
    with stage("store"):
        save_scores(engine, run_id, record.model_id, table, driver_rows)
    with stage("alerts"):
        outputs = RunOutputs(as_of, table, previous, latest_decisions(engine), driver_rows, features, model,
                             fresh.notes, track_record(record.metadata))
        skipped: list[str] = []
        alerts, outgoing = compose(settings, sources.tracts, outputs, problems=skipped)
        checkpoint("alerts.composed")
        queued = queue(engine, run_id, outgoing)
    with stage("deliver"):
        sent = send_queued(engine, settings.delivery, stop=stop, guard=stage.lock.check)
        if stop is not None and stop.is_set() and sent.still_queued:
            raise StoppedError(f"stopped during delivery; {sent.still_queued} message(s) stay queued for the next run")
    return RunResult(as_of=as_of, features_path=path, tracts=len(table), coverage=fresh.coverage, run_id=run_id,
                     model_id=record.model_id, retrained=retrained,
                     tiers={t: int((table["tier"] == t).sum()) for t in ("high", "elevated", "watch", "low")},
                     alerts=len(alerts), emails_queued=queued, emails_sent=sent.sent, emails_failed=sent.failed,
                     stage_seconds=stage.seconds, data_notes=fresh.notes, recipients_skipped=skipped)


def latest_outputs(settings: Settings) -> tuple[int, RunOutputs, Sources]:
    """The newest stored run, reassembled for previews and re-sends."""
    engine = engine_for(settings.paths.database)
    stored = read_newest_run(settings, engine)
    sources = load_project(settings).sources
    features = stored.require_features()
    record = stored.require_record()
    model = record.load()
    outputs = RunOutputs(stored.as_of, stored.scores, previous_scores(engine, before_run=stored.run_id),
                         latest_decisions(engine), stored.drivers, features, model,
                         list(stored.row.get("notes") or []), track_record(record.metadata))
    return stored.run_id, outputs, sources
