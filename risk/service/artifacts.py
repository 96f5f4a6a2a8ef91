"""A run's artifacts: where its files live, and the newest finished run read back.

The weekly job writes a feature table per as-of date, backtest reports and the
model registry under ``settings.paths``; `risk explain`, `risk alerts preview`
and the review pages read them back. Both sides name those paths through here,
and every reader gets the newest run from :func:`read_newest_run`, so the run
the CLI explains is always the one the pages show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from risk.core.errors import NoRunYet, RiskError
from risk.core.settings import Settings
from risk.core.store import engine_for, latest_run, run_drivers, run_scores
from risk.model.registry import ModelRecord, Registry


def features_path(settings: Settings, as_of: date) -> Path:
    """The Parquet file of the features scored as of ``as_of`` (one per date: a rerun of the date replaces it)."""
    return settings.paths.features / f"features_{as_of.isoformat()}.parquet"


def backtest_report(settings: Settings, outcome: str) -> Path:
    """The folder of an outcome's backtest report.

    :func:`risk.model.report.write_report` names it the same way; it is not called here because
    importing it loads matplotlib and scikit-learn, seconds the review pages should not wait for."""
    return settings.paths.reports / f"backtest-{outcome}"


def preview_folder(settings: Settings) -> Path:
    """Where `risk alerts preview` writes its HTML files unless told another folder."""
    return settings.paths.reports / "preview"


def model_registry(settings: Settings) -> Registry:
    """The registry of trained models (the champion of each outcome among them)."""
    return Registry(settings.paths.models)


@dataclass(frozen=True)
class StoredRun:
    """A finished run read back: its history row, scores and drivers, and its features and model if still there.

    The feature file or the registered model can be gone (deleted by hand, a registry moved): they are None
    then, and :meth:`require_features` / :meth:`require_record` say what is missing to callers that need them."""

    row: dict[str, Any]
    """The run's row in the run history (id, as_of, model_id, notes, ...)."""
    scores: pd.DataFrame
    """Scores indexed by GEOID."""
    drivers: pd.DataFrame
    """The stored driver rows (geoid, rank, feature, value, contribution, sentence)."""
    features_path: Path
    features: pd.DataFrame | None
    record: ModelRecord | None
    missing_model: RiskError | None = None
    """The registry's own error when ``record`` is None, raised again by :meth:`require_record`."""

    @property
    def run_id(self) -> int:
        """The run's id."""
        return int(self.row["id"])

    @property
    def as_of(self) -> date:
        """The date the run's features are known at."""
        return self.row["as_of"]

    def require_features(self) -> pd.DataFrame:
        """The feature table; an error naming the missing file if it is gone."""
        if self.features is None:
            raise RiskError(f"the features of run {self.run_id} are missing ({self.features_path}): "
                            "run `risk run` again")
        return self.features

    def require_record(self) -> ModelRecord:
        """The run's registered model; the registry's error if it is not registered (any more)."""
        if self.record is None:
            raise self.missing_model or RiskError(f"the model of run {self.run_id} is not in the registry")
        return self.record


def read_newest_run(settings: Settings, engine: Engine | None = None, *,
                    known: StoredRun | None = None) -> StoredRun:
    """The newest finished run (the one later runs compare against); :class:`NoRunYet` if there is none.

    ``known`` is a run read before: when it is still the newest it is returned as it is, so a reader that
    keeps it (the review pages) pays one indexed query per call and reads a run's files once."""
    engine = engine or engine_for(settings.paths.database)
    row = latest_run(engine)
    if row is None:
        raise NoRunYet("no scoring run in the database yet: run `risk run` first")
    if known is not None and known.run_id == int(row["id"]):
        return known
    path = features_path(settings, row["as_of"])
    features = pd.read_parquet(path) if path.exists() else None
    record: ModelRecord | None = None
    missing: RiskError | None = None
    try:
        record = model_registry(settings).get(row["model_id"])
    except RiskError as e:  # kept, not raised: the pages still show the scores of a run whose model is gone
        missing = e
    return StoredRun(row, run_scores(engine, row["id"]), run_drivers(engine, row["id"]), path, features, record,
                     missing)
