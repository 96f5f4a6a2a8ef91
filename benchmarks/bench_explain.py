"""The explain stage's levers, measured: tree depth for TreeSHAP, and drivers for every tract at once.

On one synthetic world's features at one as-of date (every tract), with labels from the planted drivers:

- TreeSHAP (`pred_contrib`) of the production model (stumps boosted from a logistic prior, `risk.model.gbm.train`)
  against a default-depth LightGBM (31 leaves, 300 trees), the model the issue's estimate assumed;
- the top-5 drivers with sentences, one tract at a time (`explain.drivers`, the old stage) against all at once
  (`explain.driver_table`, the stage now).

Median of --repeat timings, all in this process.

    python benchmarks/bench_explain.py [--tracts 8500] [--repeat 3] [--data DIR]
"""

from __future__ import annotations

import statistics
import time
from datetime import date

import lightgbm as lgb
import numpy as np
from _worlds import synthetic_world, world_arguments

from risk.core.settings import load_settings
from risk.features.build import build_features
from risk.features.dictionary import model_feature_names
from risk.model.gbm import PARAMS, TrainingRows, train
from risk.scoring.explain import contributions, driver_table, drivers
from risk.sources import load_sources

YEARS = 20


def _timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    """Print the timings."""
    parser = world_arguments(__doc__)
    args = parser.parse_args()
    folder = synthetic_world(args.data, args.tracts, YEARS)
    settings = load_settings(folder / "config.yaml")
    sources = load_sources(settings)
    names = model_feature_names(settings.features.spatial_lags)
    X = build_features(sources, date(2000 + YEARS, 3, 1), settings.features)
    planted = X["rent_change_1y"].rank(pct=True) + X["permits_new_12m"].rank(pct=True) \
        + X["low_income_share_vs_region"].rank(pct=True)
    noise = np.random.default_rng(0).normal(0, 0.5, len(X))
    y = ((planted + noise).rank(pct=True) > 0.94).astype(int)
    half = len(X) // 2  # two pseudo-origins: the production trainer early-stops on the newer
    rows = [TrainingRows(2015, X.iloc[:half], y.iloc[:half]), TrainingRows(2016, X.iloc[half:], y.iloc[half:])]
    production = train(rows, names, settings.model.seed)
    deep = lgb.train({**PARAMS, "num_leaves": 31, "min_data_in_leaf": 20}, lgb.Dataset(X[names], y),
                     num_boost_round=300)
    print(f"{len(X):,} tracts x {len(names)} model features; production model {production.booster.num_trees()} "
          f"stumps (+ linear prior); deep model 300 trees of 31 leaves; median of {args.repeat}")

    t_prod, expl = _timed(lambda: contributions(production, X), args.repeat)
    t_deep, _ = _timed(lambda: deep.predict(X[names], pred_contrib=True), args.repeat)
    print(f"  TreeSHAP, production stumps      {t_prod:8.2f} s")
    print(f"  TreeSHAP, 300 trees x 31 leaves  {t_deep:8.2f} s   ({t_deep / t_prod:.0f}x)")

    county = X.median()
    t_table, _ = _timed(lambda: driver_table(expl, county, 5), args.repeat)
    t_loop, _ = _timed(lambda: [drivers(expl, g, county, 5) for g in expl.values.index], 1)
    print(f"  drivers, all tracts at once      {t_table:8.2f} s")
    print(f"  drivers, one tract at a time     {t_loop:8.2f} s   ({t_loop / t_table:.0f}x; one run)")


if __name__ == "__main__":
    main()
