"""Development folds for model choices: origins up to 2009 only, never the backtest's test origins.

Three fold designs, each scored by pooled PR-AUC (and ROC-AUC) of every model:
  A  like the backtest: each origin scored by models trained on the origins closed before it;
  B  each origin scored by models trained on the origins whose windows do not overlap its own;
  C  each origin and each of 8 blocks of tracts, trained on the other origins outside the block.

    python scripts/dev_folds.py [--config config.yaml] [--designs ABC] [--last-origin 2009]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from risk.core.settings import load_settings
from risk.features.dictionary import model_feature_names
from risk.model.backtest import (
    OriginData,
    _per_origin,
    _predict_origin,
    build_panel,
    closed_before,
)
from risk.model.baselines import BASELINES, rank_functions
from risk.model.metrics import bootstrap, model_metrics
from risk.outcomes.registry import outcome_for
from risk.sources import load_sources

BLOCKS = 8


def _subset(d: OriginData, geoids: list[str]) -> OriginData:
    return OriginData(d.origin, d.X.loc[geoids], d.labels.loc[geoids])


def _folds(panel: list[OriginData], design: str) -> Iterator[tuple[OriginData, list[OriginData]]]:
    if design == "A":
        yield from ((t, closed_before(panel, t.origin)) for t in panel if closed_before(panel, t.origin))
    elif design == "B":
        for t in panel:
            train = [d for d in panel if abs(d.origin.year - t.origin.year) >= 3]
            if train:
                yield t, train
    else:
        tracts = sorted(set().union(*(set(d.labels.index) for d in panel)))
        block = {g: i * BLOCKS // len(tracts) for i, g in enumerate(tracts)}
        for t in panel:
            for k in range(BLOCKS):
                train = [_subset(d, [g for g in d.labels.index if block[g] != k]) for d in panel if d is not t]
                yield _subset(t, [g for g in t.labels.index if block[g] == k]), train


def main() -> None:
    """Print one line per design."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path(__file__).resolve().parents[1] / "config.yaml")
    parser.add_argument("--designs", default="ABC")
    parser.add_argument("--last-origin", type=int, default=2009)
    args = parser.parse_args()
    settings = load_settings(args.config)
    sources = load_sources(settings)
    outcome = outcome_for("eviction_surge", settings)
    every = outcome.origins
    outcome.origins = lambda s: [o for o in every(s) if o.year <= args.last_origin]  # type: ignore[method-assign]
    panel = build_panel(outcome, sources, settings)
    features = model_feature_names(settings.features.spatial_lags)
    ranks = {n: _per_origin(fn) for n, fn in rank_functions(outcome).items()}
    models = ["lightgbm", *BASELINES]
    for design in args.designs:
        preds = pd.concat([_predict_origin(t, train, sources, settings, ranks, features)[0]
                           for t, train in _folds(panel, design)], ignore_index=True)
        metrics = {m: model_metrics(preds, m) for m in models}
        best = max(BASELINES, key=lambda m: metrics[m]["pr_auc"])
        _, ci = bootstrap(preds, models, 200, settings.model.seed, "lightgbm", best)
        print(f"design {design}: {len(preds)} rows, {int(preds['y'].sum())} positives; PR-AUC/ROC-AUC " +
              " ".join(f"{m} {metrics[m]['pr_auc']:.3f}/{metrics[m]['roc_auc']:.2f}" for m in models) +
              f"; lightgbm/{best} {metrics['lightgbm']['pr_auc'] / metrics[best]['pr_auc']:.2f} "
              f"({ci[0]:.2f}-{ci[1]:.2f})", flush=True)


if __name__ == "__main__":
    main()
