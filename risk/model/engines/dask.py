"""`engine: dask`: point-in-time features and the production model on a dask.distributed cluster.

Features: reduce in Dask, finish in pandas. The long source tables (census
releases, eviction tract-years, rent tract-months, permit records) are split
into partitions that each hold whole tracts. On the workers, dask.dataframe
cuts every partition to what was known on the as-of date and keeps only the
rows a tract's features can read: per tract and measure the newest release and
the newest one at least two years older; per tract the newest rent month and
the months 1, 3 and 5 years before it; the permits of the longest window plus
the rows that date each file and show which tracts have permits; every
eviction year (the long-run average reads them all). Those rows, a small share
of the tables, come back in their original order, with their index, and
:func:`risk.features.build.build_features` finishes on them: the per-tract values,
the regional medians, the empirical-Bayes shrinkage and the spatial lags.
Rows rather than per-tract sums come back so that the finishing is the local
engine's own code, summing the same numbers in the same order: both engines
give the same features bit for bit, and a change to a feature needs no second
implementation (the tests compare the engines, and fail if it reads a row the
selection drops). Each family declares its selection beside its loader
(:attr:`risk.sources.family.Family.rows`); one that declares none keeps every
known row.

Training: :mod:`lightgbm.dask` with the parameters and the temporal scheme of
:mod:`risk.model.gbm` (see :mod:`risk.model.engines.dask_train`).

The cluster is a ``LocalCluster`` started for the call and closed after it,
or the scheduler named by ``dask.scheduler_address``; an unreachable scheduler
is a :class:`~risk.core.errors.ConfigError` naming that key.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Iterator
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from risk.core.settings import Settings, config_issue
from risk.features import build as local_features
from risk.sources import Sources
from risk.sources.family import known_rows
from risk.sources.registry import dated

if TYPE_CHECKING:
    from distributed import Client

    from risk.model.backtest import Backtest
    from risk.model.training import TrainingResult

WORKER_MODULES = ("risk.model.engines.dask", "lightgbm.dask")
"""What every worker must be able to import (a remote cluster needs this package installed)."""


@contextlib.contextmanager
def cluster(settings: Settings) -> Iterator[Client]:
    """A client of the configured cluster; a LocalCluster it starts is closed on the way out."""
    import dask
    from distributed import Client, LocalCluster

    cfg = settings.dask
    # pandas' own string columns go to the workers and back as they are
    with dask.config.set({"dataframe.convert-string": False}):
        if cfg.scheduler_address is None:
            # on the loopback interface only: LightGBM's machines talk to each other at their Dask workers' hosts,
            # and the scheduler's status pages (no dashboard) take any free port
            with LocalCluster(n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker,
                              processes=cfg.processes, protocol="tcp://", host="127.0.0.1",
                              dashboard_address="127.0.0.1:0") as lc, Client(lc) as client:
                yield client
            return
        key = "dask.scheduler_address"
        try:
            client = Client(cfg.scheduler_address, timeout=cfg.connect_timeout_s)
        except (OSError, TimeoutError, ValueError) as e:
            raise config_issue(settings, key, f"cannot reach the Dask scheduler at {cfg.scheduler_address} within "
                         f"{cfg.connect_timeout_s:g} s ({e}); start it, correct the address, or leave the key "
                         "empty for a LocalCluster") from e
        with client:
            try:
                client.wait_for_workers(1, timeout=cfg.connect_timeout_s)
            except TimeoutError as e:
                raise config_issue(settings, key, f"the Dask scheduler at {cfg.scheduler_address} has no workers "
                             f"(waited {cfg.connect_timeout_s:g} s)") from e
            modules = WORKER_MODULES

            def imports() -> None:  # sent by value: a worker without this package can still run it
                for name in modules:
                    importlib.import_module(name)

            try:
                client.run(imports)
            except ImportError as e:
                raise config_issue(settings, key, f"a worker of {cfg.scheduler_address} cannot import {e.name or e}: "
                             "install this package (with its pinned dask and lightgbm) on every worker") from e
            yield client


@contextlib.contextmanager
def _client_for(settings: Settings, client: Client | None) -> Iterator[Client]:
    if client is not None:
        yield client
    else:
        with cluster(settings) as started:
            yield started


def partitions(settings: Settings, client: Client) -> int:
    """``dask.partitions``, or one per worker thread."""
    return settings.dask.partitions or max(1, sum(client.nthreads().values()))


# -- features -----------------------------------------------------------------------------------------------------

def build_features(sources: Sources, as_of: date, settings: Settings, client: Client | None = None) -> pd.DataFrame:
    """The local engine's feature table, with the per-tract reductions done on the cluster."""
    with _client_for(settings, client) as c:
        view = known_view(sources, as_of, c, partitions(settings, c))
    return local_features.build_features(view, as_of, settings.features)


def known_view(sources: Sources, as_of: date, client: Client, npartitions: int) -> Sources:
    """``sources.known_at(as_of)`` cut down on the cluster to the rows the features read, in their order."""
    import dask

    t = pd.Timestamp(as_of)
    families = dated()
    lazy = {}
    for family in families:
        frame = sources.table(family.name)
        if frame is not None and not frame.empty:
            parts = _by_tract(frame, npartitions, client)
            # each family's own selection (sources declare it beside their loader), or every known row
            lazy[family.name] = (parts.map_partitions(family.rows, t) if family.rows is not None
                                 else parts.map_partitions(known_rows, family.known, t))
    done = dict(zip(lazy, dask.compute(*lazy.values(), scheduler=client), strict=True))
    cut = sources.known_at(as_of)  # the families left out above: None or empty, cut as the local engine does
    return sources.with_tables({f.name: _in_order(done[f.name]) if f.name in done else cut.table(f.name)
                                for f in families})


def _by_tract(frame: pd.DataFrame, npartitions: int, client: Client):
    """A dask DataFrame of ``frame`` on the workers, every tract's rows in one partition, with their position."""
    import dask.dataframe as dd

    codes, uniques = pd.factorize(frame["geoid"], sort=True)
    part = np.maximum(codes, 0) * npartitions // max(len(uniques), 1)
    order = np.argsort(part, kind="stable")  # keeps the original order within a partition
    bounds = np.searchsorted(part[order], np.arange(npartitions + 1))
    chunks = []
    for p in range(npartitions):
        rows = order[bounds[p]:bounds[p + 1]]
        chunks.append(frame.iloc[rows].assign(_pos=rows))
    futures = client.scatter(chunks)
    return dd.from_delayed(futures, meta=chunks[0].iloc[:0], verify_meta=False)


def _in_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The kept rows in the source table's order, with its index, as the local engine reads them."""
    return frame.sort_values("_pos", kind="stable").drop(columns="_pos")


# -- training -----------------------------------------------------------------------------------------------------

def train_and_register(settings: Settings, sources: Sources, as_of: date, backtest: Backtest,
                       client: Client | None = None) -> TrainingResult:
    """:func:`risk.model.training.train_and_register` with the model trained on the cluster."""
    from risk.model.engines import dask_train as engine_dask_train
    from risk.model.training import train_and_register as register

    with _client_for(settings, client) as c:
        trainer = functools.partial(engine_dask_train.train, client=c, npartitions=partitions(settings, c))
        return register(settings, sources, as_of, backtest, trainer=trainer)
