"""The local engine against `engine: dask` on a LocalCluster: the figures behind "When to switch".

On one synthetic world (every tract, 20 years), with the cluster the config describes (a LocalCluster of
--workers single-threaded workers, as threads of this process: the config's default):

- features at one as-of date, local against Dask (median of --repeat; the first Dask call also ships the
  tables to the workers, so it is reported on its own);
- the production model's training on every origin closed at that date, local against Dask (once each);
- agreement: tracts of the local top decile the Dask model also puts there, the largest probability gap, and
  the same figures for two local fits whose seeds differ by one (the noise any refit carries).

    python benchmarks/bench_engines.py [--tracts 8500] [--repeat 3] [--workers 2] [--data DIR]
"""

from __future__ import annotations

import statistics
import time
from datetime import date

import numpy as np
import pandas as pd
from _worlds import synthetic_world, world_arguments

from risk.core.settings import load_settings
from risk.features.build import build_features
from risk.features.dictionary import model_feature_names
from risk.model.backtest import build_panel
from risk.model.engines import dask as engine_dask
from risk.model.engines.dask_train import train as dask_train
from risk.model.gbm import TrainedModel, TrainingRows, train
from risk.outcomes.registry import outcome_for
from risk.sources import load_sources

YEARS = 20
TOP_SHARE = 0.10


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _agreement(a: TrainedModel, b: TrainedModel, X: pd.DataFrame) -> tuple[int, int, float]:
    """Tracts of a's top decile also in b's, the decile's size, and the largest probability gap."""
    pa, pb = a.predict(X), b.predict(X)
    k = round(TOP_SHARE * len(X))
    top_a, top_b = set(np.argsort(-pa)[:k]), set(np.argsort(-pb)[:k])
    return len(top_a & top_b), k, float(np.max(np.abs(pa - pb)))


def main() -> None:
    """Print the timings and the agreement."""
    parser = world_arguments(__doc__)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    folder = synthetic_world(args.data, args.tracts, YEARS)
    settings = load_settings(folder / "config.yaml")
    settings = settings.model_copy(update={"engine": "dask", "dask": settings.dask.model_copy(
        update={"n_workers": args.workers, "threads_per_worker": 1})})
    sources = load_sources(settings)
    as_of = date(2000 + YEARS, 3, 1)
    names = model_feature_names(settings.features.spatial_lags)
    panel = [d for d in build_panel(outcome_for(settings.model.outcome, settings), sources, settings)
             if d.origin.closes <= as_of]
    rows = [TrainingRows(d.origin.year, d.X, d.labels["y"]) for d in panel]
    print(f"{args.tracts:,} tracts, as of {as_of}: {sum(len(r.y) for r in rows):,} training rows from "
          f"{len(rows)} closed origins", flush=True)

    local_runs = [_timed(lambda: build_features(sources, as_of, settings.features)) for _ in range(args.repeat)]
    local_times, X = [t for t, _ in local_runs], local_runs[-1][1]
    with engine_dask.cluster(settings) as client:
        threads = sum(client.nthreads().values())
        first, _ = _timed(lambda: engine_dask.build_features(sources, as_of, settings, client))
        dask_times = [_timed(lambda: engine_dask.build_features(sources, as_of, settings, client))[0]
                      for _ in range(args.repeat)]
        dask_fit, on_cluster = _timed(lambda: dask_train(rows, names, settings.model.seed, client=client,
                                                         npartitions=engine_dask.partitions(settings, client)))
    local_fit, local = _timed(lambda: train(rows, names, settings.model.seed))
    other_seed = train(rows, names, settings.model.seed + 1)

    kind = "processes" if settings.dask.processes else "threads"
    print(f"cluster: a LocalCluster of {args.workers} worker(s) ({kind} of this one), {threads} thread(s) in all; "
          "local LightGBM on its fixed thread count")
    print(f"features at one date: local {statistics.median(local_times):.2f} s, Dask "
          f"{statistics.median(dask_times):.2f} s (first call {first:.2f} s); medians of {args.repeat}")
    print(f"training: local {local_fit:.1f} s, Dask {dask_fit:.1f} s")
    same, k, gap = _agreement(local, on_cluster, X)
    print(f"Dask against local: {same} of the local top {k} also in Dask's; largest probability gap {gap:.3f}")
    same, k, gap = _agreement(local, other_seed, X)
    print(f"local, seed + 1:    {same} of the local top {k}; largest probability gap {gap:.3f}")


if __name__ == "__main__":
    main()
