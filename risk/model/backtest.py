"""Rolling-origin backtest: LightGBM against the baselines, never a random split.

For each test origin t, every model is trained only on origins whose outcome
window had closed by t's as-of date, then scores the tracts labelled at t.
Metrics are pooled over the test origins, with tract-cluster bootstrap
intervals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
from scipy.special import expit

from risk.core.errors import BacktestError
from risk.core.files import frame_hash
from risk.core.settings import Settings
from risk.features.build import build_features
from risk.features.dictionary import feature_names, model_feature_names
from risk.model.baselines import (
    BASELINES,
    RANK_BASELINES,
    calibrate_rank,
    predict_logistic,
    rank_functions,
)
from risk.model.gbm import TrainingRows, fit_logistic, train
from risk.model.metrics import (
    bootstrap,
    calibration_table,
    lead_times,
    model_metrics,
    per_origin,
)
from risk.outcomes.base import Origin, Outcome
from risk.outcomes.exclusions import apply_exclusions
from risk.outcomes.labels import (
    OriginCounts,
    label_view,
    null_check,
    null_failure,
    origin_null_rate,
)
from risk.outcomes.registry import outcome_for, outcome_spec
from risk.sources import Sources

if TYPE_CHECKING:
    from risk.model.cache import WorkCache


class Regional(Protocol):
    """What a backtest over several regions adds (:class:`risk.model.pooled.PooledExtras`)."""

    def to_json(self) -> dict[str, object]:
        """Its keys of `risk backtest --json`: ``regions``, ``leave_one_region_out``, ``model_choice``."""
        ...

log = logging.getLogger(__name__)
MODELS = ("lightgbm", *BASELINES)
Progress = Callable[[str], None]


class OriginData:
    """Features and labels of one origin.

    ``X`` may be given as a function that reads it: a weekly run whose backtest and fit all come from the work
    cache then never reads most origins' features (at national scale, hundreds of megabytes)."""

    def __init__(self, origin: Origin, X: pd.DataFrame | Callable[[], pd.DataFrame], labels: pd.DataFrame,
                 key: str = "", label_key: str = "", excluded: list[str] | None = None) -> None:
        self.origin = origin
        self._X = X
        self.labels = labels
        self.key = key
        """The work-cache key of this origin's features and labels (empty without a cache)."""
        self.label_key = label_key
        """The work-cache key of its labels alone (what its null worlds read)."""
        self.excluded = list(excluded or [])
        """Why labels of this origin were left out (data the quality checks found broken)."""

    @property
    def X(self) -> pd.DataFrame:
        """The origin's features, one row per labelled tract (read on first use)."""
        if callable(self._X):
            self._X = self._X()
        return self._X

    def emptied(self, why: str) -> OriginData:
        """The same origin with no rows, ``why`` joining the reasons its labels were left out."""
        return OriginData(self.origin, lambda: self.X.iloc[:0], self.labels.iloc[:0],
                          f"{self.key}/null-gated" if self.key else "", self.label_key, [*self.excluded, why])


def build_panel(outcome: Outcome, sources: Sources, settings: Settings, progress: Progress | None = None,
                cache: WorkCache | None = None) -> list[OriginData]:
    """Features at each origin's as-of date for the tracts the outcome labels there.

    Labels are computed from what was known when the window closed, so nothing later can change them."""
    names = feature_names(settings.features.spatial_lags)
    panel = []
    for origin in outcome.origins(sources):
        if progress:
            progress(f"features and labels for origin {origin.year}")
        # features and labels are keyed apart: a record revised after as_of reaches the labels only, and so does
        # a change of the settings the outcome's labels are computed with (its registry entry names them)
        label_parts = ("labels", outcome.name, outcome_spec(outcome.name).label_settings(settings), origin,
                       cache.known(origin.closes, outcome.reads)) if cache else None
        labels, label_key = _cached(cache, label_parts,
                                    lambda: outcome.label(label_view(outcome, sources, origin), origin))  # noqa: B023
        feature_parts = ("features", origin.as_of, cache.known(origin.as_of)) if cache else None
        X, feature_key = _deferred(cache, feature_parts,
                                   lambda: build_features(sources, origin.as_of, settings.features)[names])  # noqa: B023
        labels, excluded = apply_exclusions(outcome, sources, origin, labels, sources.exclusions)
        if labels.empty:
            log.info("%s origin %s: every label left out (%s)", outcome.name, origin.year, "; ".join(excluded))
        key = f"{feature_key}/{label_key}" if cache else ""
        if excluded and cache:  # the same cached labels, fewer of them: the fits and predictions differ
            key = f"{key}/{cache.key('excluded', excluded)}"
        panel.append(OriginData(origin, _rows_of(X, labels.index), labels, key, label_key, excluded))
    return panel


def _cached(cache: WorkCache | None, parts: tuple | None, compute: Callable[[], pd.DataFrame]
            ) -> tuple[pd.DataFrame, str]:
    """A frame from the cache under the key of ``parts`` (``parts[0]`` is its kind), or computed and stored."""
    if cache is None or parts is None:
        return compute(), ""
    key = cache.key(*parts)
    stored = cache.frames(key)
    if stored is not None:
        return stored[0]["frame"], key
    frame = compute()
    cache.put_frames(key, {"frame": frame})
    return frame, key


def _deferred(cache: WorkCache | None, parts: tuple | None, compute: Callable[[], pd.DataFrame]
              ) -> tuple[pd.DataFrame | Callable[[], pd.DataFrame], str]:
    """:func:`_cached`, except that a frame already stored is read only when first used (a reader in its place);
    should the entry be gone by then, it is computed again."""
    if cache is None or parts is None or not cache.has(key := cache.key(*parts)):
        return _cached(cache, parts, compute)
    return lambda: _cached(cache, parts, compute)[0], key


def _rows_of(X: pd.DataFrame | Callable[[], pd.DataFrame], index: pd.Index
             ) -> pd.DataFrame | Callable[[], pd.DataFrame]:
    """The rows of ``index``, from a frame or (when first used) from what a reader returns."""
    return (lambda: X().loc[index]) if callable(X) else X.loc[index]


def closed_before(panel: list[OriginData], test: Origin) -> list[OriginData]:
    """Training origins: outcome window closed on or before the test origin's as-of date."""
    return [d for d in panel if d.origin.closes <= test.as_of and len(d.labels)]


@dataclass
class Backtest:
    """Everything a backtest measured."""

    outcome: str
    description: str
    test_origins: list[int]
    preds: pd.DataFrame
    metrics: dict[str, dict[str, float]]
    pr_auc_ci: dict[str, tuple[float, float]]
    best_baseline: str
    ratio: float
    ratio_ci: tuple[float, float]
    null_rate: float
    observed_rate: float
    null_ok: bool
    unsupported: dict[str, str]
    presence: pd.Series
    lead: dict[str, float]
    calibration: dict[str, pd.DataFrame] = field(default_factory=dict)
    by_origin: dict[str, pd.DataFrame] = field(default_factory=dict)
    schemes: dict[int, str] = field(default_factory=dict)
    train_origins: dict[int, list[int]] = field(default_factory=dict)
    panel: list[OriginData] = field(default_factory=list, repr=False)
    udp_ratio: dict[str, object] = field(default_factory=lambda: {"ratio": None, "ci95": None})
    """LightGBM's PR-AUC over the UDP typology ranking's (what planners use today), with its interval."""
    region: str = ""
    excluded_labels: list[str] = field(default_factory=list)
    """Why labels were left out: data the quality checks found broken (region, county, years or vintage)."""
    features: list[str] = field(default_factory=list)
    """The model columns LightGBM was judged with (and the production model is trained on); empty: every
    comparable feature."""
    prior_features: list[str] = field(default_factory=list)
    """The columns LightGBM's logistic prior was fitted on, when the chosen candidate boosts from a baseline on
    some of them; empty: the prior uses every model column."""
    pooled: Regional | None = None
    """Several regions: each region's figures, leave-one-region-out and the model choice."""

    def to_json(self) -> dict[str, object]:
        """The contract of `risk backtest --json`."""
        def m(name: str) -> dict[str, object] | None:
            if name in self.unsupported:
                return None
            x = self.metrics[name]
            return {"pr_auc": x["pr_auc"], "roc_auc": x["roc_auc"], "precision_at_10pct": x["precision_at_10pct"],
                    "recall_at_10pct": x["recall_at_10pct"],
                    "brier": None if x.get("brier") is None or np.isnan(x["brier"]) else x["brier"],
                    "pr_auc_ci95": list(self.pr_auc_ci.get(name, (float("nan"),) * 2))}

        vs_best = {"baseline": self.best_baseline, "ratio": self.ratio, "ci95": list(self.ratio_ci)}
        out: dict[str, object] = {
            "outcome": self.outcome, "origins": self.test_origins,
            "n_tracts": int(self.preds["geoid"].nunique()), "n_positive": int(self.preds["y"].sum()),
            "null_positive_rate": self.null_rate, "models": {k: m(k) for k in MODELS},
            "lightgbm_vs_best_baseline": vs_best, "lightgbm_vs_udp_typology": self.udp_ratio,
            "null_check": {"observed": self.observed_rate, "null": self.null_rate, "passes": self.null_ok}}
        if self.pooled is None:
            out["regions"] = {self.region: {
                "n_tracts": out["n_tracts"], "n_positive": out["n_positive"], "null_check": out["null_check"],
                "models": out["models"], "lightgbm_vs_best_baseline": vs_best,
                "lightgbm_vs_udp_typology": self.udp_ratio}}
            out["leave_one_region_out"] = None
            out["leave_one_region_out_note"] = "one region: there is no other region to train on"
            return out
        out.update(self.pooled.to_json())
        return out


def _rank_scores(fn, sources: Sources, data: OriginData) -> pd.Series | None:
    score = fn(sources, data.origin)
    if score is None:
        return None
    return score.reindex(data.labels.index).astype("float64")


def _predict_origin(test: OriginData, train_set: list[OriginData], sources: Sources, settings: Settings,
                    ranks: dict, features: list[str]) -> tuple[pd.DataFrame, str]:
    rows = [TrainingRows(d.origin.year, d.X, d.labels["y"]) for d in train_set]
    positives = int(sum(r.y.sum() for r in rows))
    if positives == 0 or positives == sum(len(r.y) for r in rows):
        raise BacktestError(f"the training origins of {test.origin.year} hold {positives} positives of "
                            f"{sum(len(r.y) for r in rows)} cases: a model needs both classes")
    model = train(rows, features, settings.model.seed)
    out = pd.DataFrame({"origin": test.origin.year, "as_of": test.origin.as_of, "closes": test.origin.closes,
                        "geoid": test.labels.index, "y": test.labels["y"].to_numpy()})
    out["lightgbm"] = model.predict(test.X)
    y_train = np.concatenate([d.labels["y"].to_numpy() for d in train_set])
    # LightGBM's prior is this same logistic regression, fitted on these same rows: fitting it again costs a
    # minute per test origin at national scale
    logistic = model.prior if model.prior is not None and model.prior.columns else None
    if logistic is not None:
        out["logistic"] = expit(logistic(test.X[features]))
    else:
        X_train = pd.concat([d.X[features] for d in train_set])
        out["logistic"] = predict_logistic(fit_logistic(X_train, y_train, settings.model.seed), test.X[features])
    for name, fn in ranks.items():
        score = _rank_scores(fn, sources, test)
        if score is None or score.isna().all():
            out[name] = np.nan
            continue
        # a tract the baseline cannot score is ranked in the middle, so every model sees the same tracts
        score = score.fillna(score.median())
        train_scores = [_rank_scores(fn, sources, d) for d in train_set]
        calibrator = None
        if all(s is not None for s in train_scores):
            stacked = pd.concat(train_scores)
            calibrator = calibrate_rank(stacked, pd.Series(y_train, index=stacked.index))
        # without training scores to calibrate on, the ranking still counts; its Brier score does not
        out[name] = calibrator(score.to_numpy()) if calibrator else score.rank(pct=True).to_numpy()
        out[f"{name}_calibrated"] = calibrator is not None
        out[f"{name}_score"] = score.to_numpy()
    return out, model.scheme


def _predict_cached(test: OriginData, train_set: list[OriginData], sources: Sources, settings: Settings,
                    ranks: dict, features: list[str], cache: WorkCache | None) -> tuple[pd.DataFrame, str]:
    """:func:`_predict_origin`, reused when the test origin and every training origin are unchanged."""
    key = cache.key("predict", test.key, [d.key for d in train_set], features) if cache else ""
    stored = cache.frames(key) if cache else None
    if stored is not None:
        return stored[0]["predictions"], str(stored[1])
    part, scheme = _predict_origin(test, train_set, sources, settings, ranks, features)
    if cache:
        cache.put_frames(key, {"predictions": part}, scheme)
    return part, scheme


def run_backtest(settings: Settings, sources: Sources, outcome_name: str | None = None,
                 progress: Progress | None = None, cache: WorkCache | None = None) -> Backtest:
    """Rolling-origin backtest of one outcome; with a work cache, unchanged origins are not recomputed."""
    name = outcome_name or settings.model.outcome
    outcome = outcome_for(name, settings)
    features = model_feature_names(settings.features.spatial_lags)  # both learners see the same, comparable columns
    panel = _null_gated(build_panel(outcome, sources, settings, progress, cache), outcome, sources, settings, cache)
    minimum = outcome_spec(name).min_train_origins(settings)
    tests = [d for d in panel if len(d.labels) and len(closed_before(panel, d.origin)) >= minimum]
    gated = [r for d in panel for r in d.excluded if "null check fails" in r]
    if not any(len(d.labels) for d in panel) and gated:
        raise BacktestError(f"{name}: every origin fails its null check, so its labels cannot be told from noise "
                            f"and nothing is trained or judged ({'; '.join(gated[:3])}"
                            + (f"; {len(gated) - 3} more)" if len(gated) > 3 else ")"))
    if not tests:
        left_out = "; ".join(dict.fromkeys(r for d in panel for r in d.excluded))
        raise BacktestError(f"{name}: no origin has {minimum} closed training origin(s) before it "
                            f"(origins: {[d.origin.year for d in panel if len(d.labels)]}"
                            + (f"; left out: {left_out})" if left_out else ")"))
    # a training origin's baseline scores are needed again by every later test origin: compute each once
    ranks = {name: _per_origin(fn) for name, fn in rank_functions(outcome).items()}
    parts, schemes, used = [], {}, {}
    for test in tests:
        if progress:
            progress(f"training and scoring origin {test.origin.year}")
        train_set = closed_before(panel, test.origin)
        used[test.origin.year] = [d.origin.year for d in train_set]
        part, schemes[test.origin.year] = _predict_cached(test, train_set, sources, settings, ranks, features, cache)
        parts.append(part)
    preds = pd.concat(parts, ignore_index=True)
    for name_ in RANK_BASELINES:
        if name_ not in preds:
            preds[name_] = np.nan
    result = _summarise(outcome, name, settings, sources, panel, tests, preds, schemes, features, cache)
    result.train_origins = used
    result.panel = panel
    result.excluded_labels = list(dict.fromkeys(r for d in panel for r in d.excluded))
    if cache:
        log.info("work cache: %d entries reused, %d computed", cache.hits, cache.misses)
    return result


def _null_gated(panel: list[OriginData], outcome: Outcome, sources: Sources, settings: Settings,
                cache: WorkCache | None) -> list[OriginData]:
    """The panel with every origin whose own null check fails emptied (not used to train or judge), the reason
    joining its left-out labels."""
    ratio = outcome_spec(outcome.name).null_ratio
    counts = {c.origin.year: c for c in label_summary_for(outcome, sources, [d for d in panel if len(d.labels)],
                                                          settings, cache)}
    out = []
    for d in panel:
        why = null_failure([counts[d.origin.year]], ratio) if d.origin.year in counts else None
        out.append(d if why is None else d.emptied(f"origin {d.origin.year}: {why}"))
    return out


@dataclass
class _Scores:
    """Everything measured from the pooled predictions alone."""

    metrics: dict[str, dict[str, float]]
    best: str
    cis: dict[str, tuple[float, float]]
    ratio_ci: tuple[float, float]
    lead: dict[str, float]
    calibration: dict[str, pd.DataFrame]
    by_origin: dict[str, pd.DataFrame]


def _score(preds: pd.DataFrame, usable: list[str], settings: Settings, name: str) -> _Scores:
    metrics = {m: model_metrics(preds, m) for m in usable}
    for m in RANK_BASELINES:
        if m in metrics and not preds.get(f"{m}_calibrated", pd.Series([True])).all():
            metrics[m]["brier"] = float("nan")  # a bare ranking is not a probability
    if not metrics.get("lightgbm"):
        raise BacktestError(f"{name}: the test origins hold {int(preds['y'].sum())} positives of {len(preds)} "
                            "cases; metrics need both classes")
    baselines = [m for m in BASELINES if m in usable and metrics.get(m)]
    if not baselines:
        raise BacktestError(f"{name}: no baseline could be scored on the test origins")
    best = max(baselines, key=lambda m: metrics[m]["pr_auc"])
    cis, ratio_ci = bootstrap(preds, usable, settings.model.bootstrap, settings.model.seed, "lightgbm", best)
    return _Scores(metrics, best, cis, ratio_ci, lead_times(preds, "lightgbm"),
                   {m: calibration_table(preds, m) for m in ("lightgbm", "logistic") if m in usable},
                   {m: per_origin(preds, m) for m in usable})


def _score_cached(preds: pd.DataFrame, usable: list[str], settings: Settings, name: str,
                  cache: WorkCache | None) -> _Scores:
    """:func:`_score`, reused when the pooled predictions are the same as a previous run's."""
    if cache is None:
        return _score(preds, usable, settings, name)
    key = cache.key("scores", frame_hash(preds), usable)
    stored = cache.frames(key)
    if stored is not None:
        frames, n = stored
        return _Scores(n["metrics"], n["best"], {m: tuple(ci) for m, ci in n["cis"].items()}, tuple(n["ratio_ci"]),
                       n["lead"], {m: t for name, t in frames.items() if (m := name.removeprefix("calibration_")) != name},
                       {m: t for name, t in frames.items() if (m := name.removeprefix("by_origin_")) != name})
    scores = _score(preds, usable, settings, name)
    frames = {**{f"calibration_{m}": t for m, t in scores.calibration.items()},
              **{f"by_origin_{m}": t for m, t in scores.by_origin.items()}}
    cache.put_frames(key, frames, {"metrics": scores.metrics, "best": scores.best, "lead": scores.lead,
                                   "cis": {m: list(ci) for m, ci in scores.cis.items()},
                                   "ratio_ci": list(scores.ratio_ci)})
    return scores


def _summarise(outcome: Outcome, name: str, settings: Settings, sources: Sources, panel: list[OriginData],
               tests: list[OriginData], preds: pd.DataFrame, schemes: dict[int, str], features: list[str],
               cache: WorkCache | None = None) -> Backtest:
    unsupported = {m: why_unsupported(m, outcome) for m in BASELINES if preds[m].isna().all()}
    usable = [m for m in MODELS if m not in unsupported]
    scores = _score_cached(preds, usable, settings, name, cache)
    counts = label_summary_for(outcome, sources, tests, settings, cache)
    observed, null, ok = null_check(counts, outcome_spec(name).null_ratio)
    presence = feature_presence([d for d in panel if d.origin.closes <= tests[-1].origin.as_of], features, cache)
    udp = {"ratio": None, "ci95": None}
    if "udp_typology" in scores.metrics and scores.metrics["udp_typology"].get("pr_auc"):
        _, udp_ci = bootstrap(preds, ["lightgbm", "udp_typology"], settings.model.bootstrap, settings.model.seed,
                              "lightgbm", "udp_typology")
        udp = {"ratio": scores.metrics["lightgbm"]["pr_auc"] / scores.metrics["udp_typology"]["pr_auc"],
               "ci95": list(udp_ci)}
    return Backtest(
        udp_ratio=udp, region=settings.region.name,
        outcome=name, description=outcome.description, test_origins=[t.origin.year for t in tests], preds=preds,
        metrics=scores.metrics, pr_auc_ci=scores.cis, best_baseline=scores.best,
        ratio=scores.metrics["lightgbm"]["pr_auc"] / scores.metrics[scores.best]["pr_auc"], ratio_ci=scores.ratio_ci,
        null_rate=null, observed_rate=observed, null_ok=ok, unsupported=unsupported, presence=presence,
        lead=scores.lead, calibration=scores.calibration, by_origin=scores.by_origin, schemes=schemes)


def feature_presence(panel: list[OriginData], features: list[str], cache: WorkCache | None = None) -> pd.Series:
    """Each feature's share of present values over the panel's rows; from the work cache while the origins are
    unchanged (it reads every origin's features)."""
    keys = [d.key for d in panel]
    key = cache.key("presence", keys, features) if cache is not None and all(keys) else ""
    stored = cache.frames(key) if key else None
    if stored is not None:
        return stored[0]["presence"]["share"].rename(None)
    frames = [d.X[features] for d in panel]
    presence = sum(x.notna().sum() for x in frames) / sum(len(x) for x in frames)  # no copy of every row
    if key:
        cache.put_frames(key, {"presence": presence.rename("share").to_frame()})  # type: ignore[union-attr]
    return presence


RankScores = Callable[[Sources, Origin], "pd.Series | None"]


def _per_origin(fn: RankScores) -> RankScores:
    """The same rank function, computed once per origin."""
    cache: dict[int, pd.Series | None] = {}

    def scores(sources: Sources, origin: Origin) -> pd.Series | None:
        if origin.year not in cache:
            cache[origin.year] = fn(sources, origin)
        return cache[origin.year]

    return scores


def label_summary_for(outcome: Outcome, sources: Sources, tests: list[OriginData], settings: Settings,
                      cache: WorkCache | None = None) -> list[OriginCounts]:
    """Null-check counts of the test origins only (simulating the others would be wasted work)."""
    rows = []
    for test in tests:
        key = cache.key("null", test.label_key) if cache else ""
        stored = cache.frames(key) if cache else None
        if stored is not None:
            null = float(stored[1])
        else:
            null = origin_null_rate(outcome, label_view(outcome, sources, test.origin), test.origin,
                                    settings.model.null_simulations, settings.model.seed)
            if cache:
                cache.put_frames(key, {}, null)
        positives = int(test.labels["y"].sum())
        rows.append(OriginCounts(test.origin, positives, len(test.labels) - positives, null))
    return rows


def why_unsupported(model: str, outcome: Outcome) -> str:
    reasons = {
        "persistence": f"{outcome.name} has no earlier value of its own measure at the test origins",
        "mean_reversion": f"{outcome.name} has no long-run history of its measure at the test origins",
        "udp_typology": "the typology cannot be computed from the configured demographic vintages",
        "low_income_share": "no demographic vintage with a low-income share was published by the test origins",
        "logistic": "no usable feature",
    }
    return reasons.get(model, "not available")
