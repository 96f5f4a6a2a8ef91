"""Cases of a pooled backtest: one region's origin each, and predictions trained over several regions' cases.

A model is trained once per distinct set of training cases (every region's rows of the same origin year as one
block, so the temporal scheme holds out the newest years) and scores every test case; the rank baselines are
calibrated on the same rows. With a work cache, the predictions of a test case are reused while none of the
cases they were computed from changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.metrics import average_precision_score

from risk.core.errors import BacktestError
from risk.core.settings import Settings
from risk.model.backtest import OriginData
from risk.model.baselines import RANK_BASELINES, calibrate_rank, rank_functions
from risk.model.cache import WorkCache
from risk.model.gbm import LinearPrior, TrainingRows, train
from risk.outcomes.base import Outcome
from risk.sources import Sources

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RegionInput:
    """One region's settings and validated sources."""

    name: str
    settings: Settings
    sources: Sources


@dataclass
class Case:
    """One region's origin: its features and labels."""

    region: str
    data: OriginData


def _merged_rows(cases: list[Case], features: list[str]) -> list[TrainingRows]:
    """One training block per origin year, every region's rows of that year together (the temporal scheme holds
    out the newest years, not one region's newest origin)."""
    by_year: dict[int, list[Case]] = {}
    for c in cases:
        by_year.setdefault(c.data.origin.year, []).append(c)
    return [TrainingRows(year, pd.concat([c.data.X[features] for c in group]),
                         pd.concat([c.data.labels["y"] for c in group]))
            for year, group in sorted(by_year.items())]


def merged_panel(cases: list[Case]) -> list[OriginData]:
    """Every region's origins of a year as one, dated by the latest-closing of them: what the production model
    trains on (an origin counts as closed only once every region's window has closed). Keyed by its regions'
    keys, so that the production fit is reused while none of them changes."""
    by_year: dict[int, list[Case]] = {}
    for c in cases:
        by_year.setdefault(c.data.origin.year, []).append(c)
    return [OriginData(max((c.data.origin for c in group), key=lambda o: o.closes),
                       partial(_stacked_features, group), pd.concat([c.data.labels for c in group]),
                       _joined_key(group))
            for _, group in sorted(by_year.items())]


def _stacked_features(cases: list[Case]) -> pd.DataFrame:
    """The cases' features stacked, read only when a fit needs them (a reused fit does not)."""
    return pd.concat([c.data.X for c in cases])


def _joined_key(cases: list[Case]) -> str:
    """One key for several regions' origins; empty when any of them has none (no work cache)."""
    if not all(c.data.key for c in cases):
        return ""
    text = "|".join(sorted(f"{c.region}={c.data.key}" for c in cases))
    return hashlib.sha256(text.encode()).hexdigest()


class Ranks:
    """Each region's rank-baseline scores per origin, computed once."""

    def __init__(self, regions: dict[str, RegionInput], outcomes: dict[str, Outcome],
                 cache: WorkCache | None = None) -> None:
        self.regions, self.fns = regions, {r: rank_functions(o) for r, o in outcomes.items()}
        self.memo: dict[tuple[str, str, int], pd.Series | None] = {}
        self.cache = cache
        """Where predictions are kept between runs (None: recomputed every run)."""

    def score(self, model: str, case: Case) -> pd.Series | None:
        key = (model, case.region, case.data.origin.year)
        if key not in self.memo:
            s = self.fns[case.region][model](self.regions[case.region].sources, case.data.origin)
            self.memo[key] = None if s is None else s.reindex(case.data.labels.index).astype("float64")
        return self.memo[key]


def _predict_cached(tests: list[Case], train_cases: list[Case], features: list[str], seed: int, ranks: Ranks,
                    with_baselines: bool = True, prior: list[str] | None = None) -> pd.DataFrame:
    """:func:`_predict`, reused from the work cache while every test and training origin is unchanged."""
    cache = ranks.cache
    test_key, train_key = _joined_key(tests), _joined_key(train_cases)
    if cache is None or not test_key or not train_key:
        return _predict(tests, train_cases, features, seed, ranks, with_baselines, prior)
    key = cache.key("pooled-predict", test_key, train_key, features, prior, with_baselines, seed)
    stored = cache.frames(key)
    if stored is not None:
        return stored[0]["predictions"]
    part = _predict(tests, train_cases, features, seed, ranks, with_baselines, prior)
    cache.put_frames(key, {"predictions": part})
    return part


def _predict(tests: list[Case], train_cases: list[Case], features: list[str], seed: int, ranks: Ranks,
             with_baselines: bool = True, prior: list[str] | None = None) -> pd.DataFrame:
    """Train once on ``train_cases`` (pooled), score every test case; baselines calibrated on the same rows."""
    rows = _merged_rows(train_cases, features)
    y_train = pd.concat([r.y for r in rows])
    if y_train.nunique() < 2:
        raise BacktestError(f"training rows for {sorted({t.data.origin.year for t in tests})} hold one class only")
    model = train(rows, features, seed, prior_features=prior)
    logistic = model.prior
    if with_baselines and prior:  # the logistic baseline is always fitted on every feature, as it is named
        logistic = LinearPrior.fit(pd.concat([r.X for r in rows]), y_train.to_numpy(), seed)
    parts = []
    for t in tests:
        out = pd.DataFrame({"region": t.region, "origin": t.data.origin.year, "as_of": t.data.origin.as_of,
                            "closes": t.data.origin.closes, "geoid": t.data.labels.index,
                            "y": t.data.labels["y"].to_numpy()})
        out["lightgbm"] = model.predict(t.data.X)
        if with_baselines:
            out["logistic"] = (expit(logistic(t.data.X[features])) if logistic is not None and logistic.columns
                               else np.nan)
            for name in RANK_BASELINES:
                out[name] = _rank_column(name, t, train_cases, ranks)
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def _rank_column(name: str, test: Case, train_cases: list[Case], ranks: Ranks) -> np.ndarray:
    score = ranks.score(name, test)
    if score is None or score.isna().all():
        return np.full(len(test.data.labels), np.nan)
    score = score.fillna(score.median())  # a tract the baseline cannot score is ranked in the middle
    scores = [ranks.score(name, c) for c in train_cases]
    pairs = [(s, c.data.labels["y"]) for s, c in zip(scores, train_cases, strict=True) if s is not None]
    calibrator = calibrate_rank(pd.concat([s for s, _ in pairs], ignore_index=True),
                                pd.concat([y for _, y in pairs], ignore_index=True)) if pairs else None
    # without training scores to calibrate on, a region's percentile rank stands in (comparable across regions)
    return calibrator(score.to_numpy()) if calibrator else score.rank(pct=True).to_numpy()


def pairs_for(cases: list[Case], minimum: int, pool: Callable[[Case], list[Case]]) -> list[tuple[Case, list[Case]]]:
    """Each test case with its training cases: closed by its as-of date, at least ``minimum`` origin years."""
    out = []
    for c in cases:
        train_cases = [d for d in pool(c) if d.data.origin.closes <= c.data.origin.as_of]
        if len({d.data.origin.year for d in train_cases}) >= minimum:
            out.append((c, train_cases))
    return out


def predictions(pairs: list[tuple[Case, list[Case]]], features: list[str], seed: int, ranks: Ranks,
         with_baselines: bool = True, progress: Progress | None = None, label: str = "",
         prior: list[str] | None = None) -> pd.DataFrame:
    """Predictions of every test case, training once per distinct training set."""
    groups: dict[tuple, tuple[list[Case], list[Case]]] = {}
    for test, train_cases in pairs:
        key = tuple(sorted((d.region, d.data.origin.year) for d in train_cases))
        groups.setdefault(key, ([], train_cases))[0].append(test)
    parts = []
    for tests, train_cases in groups.values():
        if progress:
            progress(f"{label}training on {len(train_cases)} region-origins, scoring "
                     f"{', '.join(sorted({f'{t.region} {t.data.origin.year}' for t in tests}))}")
        parts.append(_predict_cached(tests, train_cases, features, seed, ranks, with_baselines, prior))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True).sort_values(["region", "origin", "geoid"], ignore_index=True)


def fill_regions(preds: pd.DataFrame) -> dict[str, list[str]]:
    """A baseline some regions cannot compute (no demographics there) ranks those regions' tracts in the middle,
    so that every model is judged on the same rows; returns which regions each baseline could not score."""
    missing = {}
    for m in RANK_BASELINES:
        if m not in preds or preds[m].isna().all() or preds[m].notna().all():
            continue
        absent = preds[m].isna()
        missing[m] = sorted(preds.loc[absent, "region"].unique())
        preds[m] = preds[m].fillna(preds[m].median())
        preds[f"{m}_filled"] = absent
    return missing


def pr_auc(preds: pd.DataFrame) -> float | None:
    """LightGBM's pooled PR-AUC (:func:`~risk.model.metrics.model_metrics`'s, without the other figures)."""
    rows = preds[preds["lightgbm"].notna()] if not preds.empty else preds
    if rows.empty or rows["y"].nunique() < 2:
        return None
    return float(average_precision_score(rows["y"].to_numpy(dtype=int), rows["lightgbm"].to_numpy(dtype="float64")))
