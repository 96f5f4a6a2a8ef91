"""The configured engine (``engine: local`` or ``dask``): who builds features and trains the production model.

Every caller (the weekly run, `risk train`, `risk features`, replay) goes
through here, so ``engine: dask`` means the same thing everywhere.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import pandas as pd

from risk.core.settings import Settings
from risk.features.build import build_features
from risk.sources import Sources

if TYPE_CHECKING:
    from risk.model.backtest import Backtest
    from risk.model.cache import WorkCache
    from risk.model.training import TrainingResult


def features(settings: Settings, sources: Sources, as_of: date) -> pd.DataFrame:
    """Point-in-time features of every tract, built by the configured engine."""
    if settings.engine == "dask":
        from risk.model.engines import dask as engine_dask

        return engine_dask.build_features(sources, as_of, settings)
    return build_features(sources, as_of, settings.features)


def train_and_register(settings: Settings, sources: Sources, as_of: date, backtest: Backtest,
                       cache: WorkCache | None = None) -> TrainingResult:
    """Train the production model with the configured engine, register it, and promote it if it is not worse.

    The local engine reuses a fit of the same rows from the work cache; a cluster fit is always made afresh."""
    if settings.engine == "dask":
        from risk.model.engines import dask as engine_dask

        return engine_dask.train_and_register(settings, sources, as_of, backtest)
    from risk.model.training import train_and_register as local

    return local(settings, sources, as_of, backtest, cache=cache)
