"""The backtest's tract-cluster bootstrap at national scale, against scikit-learn on the copied rows.

A pooled prediction table like the backtest's (one row per test origin and tract, a label with the given base
rate, one score column per model) goes through `risk.model.metrics.bootstrap`; scikit-learn's
`average_precision_score` on the explicitly copied rows of a few resamples gives the per-resample cost of the
direct method, scaled to all of them. Median of --repeat timings, all in this process.

    python benchmarks/bench_bootstrap.py [--tracts 85000] [--origins 14] [--models 4] [--resamples 500]

To time an earlier version of the package, run this file with that version first on the path
(`git worktree add /tmp/old REV; PYTHONPATH=/tmp/old python benchmarks/bench_bootstrap.py`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

import risk
from risk.model.metrics import bootstrap


def _table(tracts: int, origins: int, models: int, rate: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"geoid": np.tile([f"{i:011d}" for i in range(tracts)], origins)})
    frame["y"] = (rng.random(len(frame)) < rate).astype(int)
    for m in range(models):
        frame[f"model{m}"] = np.round(rng.random(len(frame)) + 0.5 * frame["y"], 4)  # some ties, as in rankings
    return frame


def _direct(frame: pd.DataFrame, models: list[str], n: int, seed: int) -> float:
    """Seconds for ``n`` resamples by scikit-learn on the copied rows."""
    rng = np.random.default_rng(seed)
    geoids = frame["geoid"].unique()
    tract = pd.Index(geoids).get_indexer(frame["geoid"])
    start = time.perf_counter()
    for _ in range(n):
        copies = np.bincount(rng.choice(len(geoids), size=len(geoids), replace=True), minlength=len(geoids))
        rows = np.repeat(np.arange(len(frame)), copies[tract])
        y = frame["y"].to_numpy()[rows]
        for m in models:
            average_precision_score(y, frame[m].to_numpy()[rows])
    return time.perf_counter() - start


def main() -> None:
    """Print the median wall time of the bootstrap and the direct method's estimate."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracts", type=int, default=85_000)
    parser.add_argument("--origins", type=int, default=14)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--rate", type=float, default=0.01, help="Base rate of the label.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--direct", type=int, default=3, help="Resamples timed for the direct method.")
    args = parser.parse_args()
    frame = _table(args.tracts, args.origins, args.models, args.rate)
    models = [c for c in frame.columns if c.startswith("model")]
    print(f"risk from {risk.__file__}; {len(frame):,} rows ({args.tracts:,} tracts x {args.origins} origins), "
          f"{len(models)} models, {args.resamples} resamples", flush=True)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        bootstrap(frame, models, args.resamples, 1, models[0], models[1])
        times.append(time.perf_counter() - start)
        print(f"  bootstrap: {times[-1]:.2f} s", flush=True)
    direct = _direct(frame, models, args.direct, 1) / args.direct * args.resamples
    print(f"bootstrap median {statistics.median(times):.2f} s; scikit-learn on the copied rows, "
          f"{args.direct} resamples scaled to {args.resamples}: {direct:.0f} s "
          f"({direct / statistics.median(times):.0f}x)")


if __name__ == "__main__":
    main()
