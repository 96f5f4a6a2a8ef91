"""The weekly cycle, composed from the stages that exist so far.

Today that is load + validate and point-in-time features. Training, scoring,
explanations, alerts and delivery are later stages; ``run`` names them in its
result as not built yet rather than pretending to run them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from risk.features import build_features
from risk.files import atomic_path
from risk.settings import Settings
from risk.sources import Sources, load_sources

NOT_BUILT = ("train", "score", "explain", "alerts", "deliver")


@dataclass
class RunResult:
    """What one run did."""

    as_of: date
    features_path: Path
    tracts: int
    coverage: dict[str, int]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    data_notes: list[str] = field(default_factory=list)
    stages_not_built: tuple[str, ...] = NOT_BUILT

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "status": "partial", "as_of": self.as_of.isoformat(), "features_path": str(self.features_path),
            "tracts_featured": self.tracts, "coverage": self.coverage,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "data_notes": self.data_notes, "stages_not_built": list(self.stages_not_built),
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


def run(settings: Settings, as_of: date | None = None, today: date | None = None) -> RunResult:
    """Load and validate every source, then build and store the features for ``as_of``."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    sources = load_sources(settings, today)
    seconds["validate"] = time.perf_counter() - start
    as_of = as_of or default_as_of(sources, today)
    start = time.perf_counter()
    features = build_features(sources, as_of, settings.features)
    path = write_features(features, settings.paths.features / f"features_{as_of.isoformat()}.parquet")
    seconds["features"] = time.perf_counter() - start
    coverage = {c.removeprefix("cov_"): int(features[c].sum()) for c in features.columns if c.startswith("cov_")}
    return RunResult(as_of=as_of, features_path=path, tracts=len(features), coverage=coverage,
                     stage_seconds=seconds, data_notes=data_notes(features, sources))
