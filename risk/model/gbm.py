"""LightGBM training for a few dozen positives: additive trees, temporal early stopping, calibration.

Training rows come from origins whose outcome windows have closed, typically
300 tracts and 10-20 positives each. With so few positives a flexible model
learns the noise of whichever tracts happened to surge, so the trees are
stumps (an additive model), each tree may only move the risk the way the
feature dictionary says (monotone constraints; the linear prior below is not
constrained, so a feature's total contribution can go against its dictionary
direction), and positives are not
up-weighted (weighting 20x would let a dozen tracts decide every split).
No parameter set is chosen on one origin's dozen positives.

The trees do not start from the base rate but from a prior: the log-odds of
the regularised logistic regression on the same features and rows (the
logistic baseline), given to LightGBM as ``init_score``. The trees learn what
the linear model misses. On the development origins (2005-2009) the trees
alone ranked well below the logistic regression (pooled PR-AUC 0.07-0.08
against 0.11): a few dozen positives spread over 50 features leave each stump
too little to learn from, while the linear model pools them into one
direction per feature. The prior is linear, so every feature's part of it is
its own exact SHAP value (coefficient times the standardised value, whose
training mean is zero), and contributions stay additive: the base value is
the trees' expected value plus the prior's intercept.

With three or more origins: early stopping on the binary log-loss of the two
newest origins pooled (fitting on the older ones), Platt calibration on those
held-out scores, and a refit on every origin with that many rounds, so the
newest outcomes shape the model too. With two: the same with one validation
origin. With one: fixed rounds and calibration on out-of-fold scores. Seeds,
deterministic training and a fixed thread count make the same data and
settings give a byte-identical model file on any machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from risk.features.dictionary import BY_NAME

FIXED_ROUNDS = 200
MIN_ROUNDS = 50
MAX_ROUNDS = 800
EARLY_STOP = 100
VALIDATION_ORIGINS = 2
"""Newest origins pooled for early stopping and calibration: one origin holds only a dozen positives."""


@dataclass(frozen=True)
class TrainingRows:
    """Feature rows of one origin and their labels."""

    origin: int
    X: pd.DataFrame
    y: pd.Series


PARAMS: dict[str, object] = {
    "objective": "binary", "metric": "binary_logloss", "num_leaves": 2, "min_data_in_leaf": 20,
    "learning_rate": 0.03, "feature_fraction": 0.7, "bagging_fraction": 0.7, "bagging_freq": 1, "lambda_l2": 5.0,
    "deterministic": True, "force_row_wise": True, "num_threads": 2, "verbosity": -1,
}
"""Chosen on development folds over origins 2005-2009 only (README, 'Baselines and backtest'): up-weighting
positives ranked no better than chance; deeper trees, no monotone constraints, extra trees, random-forest mode
and choosing among parameter sets on one origin ranked no better. Stumps keep each feature's contribution its
own (exact, additive explanations) and give static tract features fewer ways to memorise the tracts that surged.
Linear trees are left out on purpose: LightGBM cannot compute TreeSHAP contributions for them.

Two threads, always: the 2-core machine this is sized for boosts 1.2 million rows 1.7 times faster than on one,
and a fixed count (not "every core") keeps the model file the same on every machine, because LightGBM's
histogram sums depend on how the rows are split among threads. The bundled data gives the same trees as
on one thread."""


def lgb_params(seed: int, columns: list[str]) -> dict[str, object]:
    """LightGBM parameters: deterministic, stumps, monotone in the dictionary's direction of each feature."""
    return {**PARAMS, "seed": seed, "monotone_constraints": _monotone(columns)}


@dataclass
class Calibrator:
    """Platt scaling of a raw score: p = 1 / (1 + exp(-(a * raw + b)))."""

    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        """Fit on scores not used to train the model."""
        if len(np.unique(y)) < 2:
            # one class on the calibration fold: predict its smoothed base rate rather than raw log-odds
            rate = (y.sum() + 0.5) / (len(y) + 1.0)
            return cls(0.0, float(np.log(rate / (1 - rate))))
        lr = LogisticRegression(C=1e6, max_iter=1000)
        lr.fit(raw.reshape(-1, 1), y)
        return cls(float(lr.coef_[0, 0]), float(lr.intercept_[0]))

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * np.asarray(raw, dtype="float64") + self.b)))


LOGISTIC_C = 0.1
"""L2 strength of the logistic regression (the baseline and the trees' prior): standardised features."""


def fit_logistic(X: pd.DataFrame, y: np.ndarray, seed: int) -> Pipeline:
    """Regularised logistic regression with median imputation and missing-value indicators.

    Columns never present in ``X`` are left out (``feature_names_in_used``).
    """
    usable = X.columns[X.notna().any()]
    model = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler(),
                          LogisticRegression(C=LOGISTIC_C, max_iter=5000, random_state=seed))
    model.fit(X if len(usable) == X.shape[1] else X[usable], y)  # selecting every column would copy them all
    model.feature_names_in_used = list(usable)  # type: ignore[attr-defined]
    return model


def _design(X: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, list[float], list[str]]:
    """:func:`fit_logistic`'s imputed columns and missing-value indicators, written into one array.

    The same matrix as scikit-learn's imputer gives, without its copies: at national scale the training matrix
    is 400 MB and the imputer and scaler held five copies of it at once, the peak of the whole run."""
    missing = {c: X[c].isna().to_numpy() for c in columns}
    flagged = [c for c in columns if missing[c].any()]
    design = np.empty((len(X), len(columns) + len(flagged)))
    medians = []
    for j, c in enumerate(columns):
        values = X[c].to_numpy(dtype="float64")
        medians.append(float(np.median(values[~missing[c]])))
        design[:, j] = np.where(missing[c], medians[-1], values)
    for j, c in enumerate(flagged, start=len(columns)):
        design[:, j] = missing[c]
    return design, medians, flagged


def _standardise(design: np.ndarray, block: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Standardise ``design`` in place; its means and scales are scikit-learn's ``StandardScaler``'s to rounding
    (the same two-pass sums, a few columns at a time instead of a copy of the whole matrix)."""
    n = design.shape[0]
    mean = np.sum(design, axis=0) / n
    var = np.empty_like(mean)
    for lo in range(0, design.shape[1], block):
        part = design[:, lo:lo + block] - mean[lo:lo + block]
        correction = np.sum(part, axis=0)
        part **= 2
        var[lo:lo + block] = (np.sum(part, axis=0) - correction ** 2 / n) / n
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = np.where(constant, 1.0, np.sqrt(var))
    for lo in range(0, design.shape[1], block):
        design[:, lo:lo + block] -= mean[lo:lo + block]
        design[:, lo:lo + block] /= scale[lo:lo + block]
    return mean, scale


@dataclass
class LinearPrior:
    """The log-odds of a fitted :func:`fit_logistic`, in plain numbers, split into one term per feature.

    logit = intercept + sum over columns of coef * (imputed value - mean) / scale
    + sum over columns with a missing-value indicator of coef * (missing - mean) / scale. Each term
    has training mean zero, so it is that feature's exact SHAP value on the log-odds scale.
    """

    columns: list[str]
    medians: list[float]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    indicators: list[str]
    indicator_mean: list[float]
    indicator_scale: list[float]
    indicator_coef: list[float]
    intercept: float

    @classmethod
    def fit(cls, X: pd.DataFrame, y: np.ndarray, seed: int) -> LinearPrior:
        """The logistic baseline fitted on the training rows; a constant base rate when they hold one class."""
        if len(np.unique(y)) < 2:
            # e.g. the older origins of an early-stopping probe without a positive: no direction to learn
            rate = (float(np.sum(y)) + 0.5) / (len(y) + 1.0)
            return cls([], [], [], [], [], [], [], [], [], float(np.log(rate / (1 - rate))))
        columns = [c for c in X.columns if X[c].notna().any()]
        design, medians, flagged = _design(X, columns)
        mean, scale = _standardise(design)
        lr = LogisticRegression(C=LOGISTIC_C, max_iter=5000, random_state=seed).fit(design, y)
        coef, k = lr.coef_[0], len(columns)
        return cls(columns, medians, [float(v) for v in mean[:k]], [float(v) for v in scale[:k]],
                   [float(v) for v in coef[:k]], flagged, [float(v) for v in mean[k:]],
                   [float(v) for v in scale[k:]], [float(v) for v in coef[k:]], float(lr.intercept_[0]))

    def terms(self, X: pd.DataFrame, features: list[str]) -> np.ndarray:
        """Each feature's term of the log-odds (columns in ``features`` order; zero where the prior has none)."""
        out = np.zeros((len(X), len(features)))
        where = {f: i for i, f in enumerate(features)}
        for c, med, mu, sd, w in zip(self.columns, self.medians, self.mean, self.scale, self.coef, strict=True):
            v = X[c].to_numpy(dtype="float64")
            out[:, where[c]] += w * (np.where(np.isnan(v), med, v) - mu) / sd
        for c, mu, sd, w in zip(self.indicators, self.indicator_mean, self.indicator_scale, self.indicator_coef,
                                strict=True):
            out[:, where[c]] += w * (X[c].isna().to_numpy(dtype="float64") - mu) / sd
        return out

    def __call__(self, X: pd.DataFrame) -> np.ndarray:
        """The prior's log-odds."""
        return self.intercept + self.terms(X, [*dict.fromkeys([*self.columns, *self.indicators])]).sum(axis=1)


@dataclass
class TrainedModel:
    """A booster, its feature order, the prior it was boosted from, and its calibration."""

    booster: lgb.Booster
    features: list[str]
    calibrator: Calibrator
    scheme: str
    prior: LinearPrior | None = None

    def raw(self, X: pd.DataFrame) -> np.ndarray:
        """Raw (log-odds) scores: the prior's plus the trees'."""
        raw = self.booster.predict(X[self.features], raw_score=True)
        return raw if self.prior is None else raw + self.prior(X[self.features])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities."""
        return self.calibrator(self.raw(X))

    def tree_contributions(self, X: pd.DataFrame) -> np.ndarray:
        """The trees' SHAP values from LightGBM's TreeSHAP (``pred_contrib``): one column per feature, then base."""
        return self.booster.predict(X[self.features], pred_contrib=True)

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """SHAP values on the raw scale: the trees' plus each feature's term of the prior; base value last."""
        contrib = np.array(self.tree_contributions(X), dtype="float64")
        if self.prior is not None:
            contrib[:, :-1] += self.prior.terms(X[self.features], self.features)
            contrib[:, -1] += self.prior.intercept
        return contrib

    def save(self, folder: Path) -> None:
        """Write ``model.txt`` and ``calibration.json`` (calibration, features and the prior) into ``folder``."""
        self.booster.save_model(str(folder / "model.txt"))
        meta: dict[str, object] = {"a": self.calibrator.a, "b": self.calibrator.b, "scheme": self.scheme,
                                   "features": self.features}
        if self.prior is not None:
            meta["prior"] = asdict(self.prior)
        (folder / "calibration.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path) -> TrainedModel:
        """Read a model written by :meth:`save` (a model saved without a prior has none)."""
        meta = json.loads((folder / "calibration.json").read_text())
        booster = lgb.Booster(model_file=str(folder / "model.txt"))
        prior = LinearPrior(**meta["prior"]) if meta.get("prior") else None
        return cls(booster, list(meta["features"]), Calibrator(meta["a"], meta["b"]), meta["scheme"], prior)


def _stack(rows: list[TrainingRows]) -> tuple[pd.DataFrame, np.ndarray]:
    return pd.concat([r.X for r in rows]), np.concatenate([r.y.to_numpy() for r in rows])


def _monotone(columns: list[str]) -> list[int]:
    return [{"up": 1, "down": -1}.get(BY_NAME[c].direction, 0) if c in BY_NAME else 0 for c in columns]


def _fit(X: pd.DataFrame, y: np.ndarray, seed: int, rounds: int,
         valid: tuple[pd.DataFrame, np.ndarray] | None = None,
         prior_columns: list[str] | None = None) -> tuple[lgb.Booster, LinearPrior]:
    """Stumps boosted from the logistic prior fitted on the same rows (on ``prior_columns`` only, if given);
    early-stopped on ``valid`` if given."""
    prior = LinearPrior.fit(X[prior_columns] if prior_columns else X, y, seed)
    params = lgb_params(seed, list(X.columns))
    train_set = lgb.Dataset(X, label=y, init_score=prior(X), free_raw_data=False)
    if valid is None or len(np.unique(valid[1])) < 2:
        return lgb.train(params, train_set, num_boost_round=rounds), prior
    vset = lgb.Dataset(valid[0], label=valid[1], init_score=prior(valid[0]), reference=train_set)
    return lgb.train(params, train_set, num_boost_round=MAX_ROUNDS, valid_sets=[vset],
                     callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False)]), prior


Fit = Callable[..., "tuple[lgb.Booster, LinearPrior]"]
"""``fit(X, y, seed, rounds, valid=None, prior_columns=None)``: one boosted fit with its prior (:func:`_fit`, or the Dask engine's
data-parallel fit on a cluster)."""


def _oof_raw(X: pd.DataFrame, y: np.ndarray, seed: int, fit: Fit = _fit,
             prior_columns: list[str] | None = None) -> np.ndarray:
    """Out-of-fold raw scores within one origin, for calibration when there is no later fold."""
    raw = np.zeros(len(y))
    folds = StratifiedKFold(n_splits=min(5, max(2, int(y.sum()))), shuffle=True, random_state=seed)
    for fit_idx, cal_idx in folds.split(X, y):
        b, prior = fit(X.iloc[fit_idx], y[fit_idx], seed, FIXED_ROUNDS, prior_columns=prior_columns)
        raw[cal_idx] = b.predict(X.iloc[cal_idx], raw_score=True) + prior(X.iloc[cal_idx])
    return raw


def _temporal(rows: list[TrainingRows], seed: int, fit: Fit, where: str, prior_columns: list[str] | None = None
              ) -> tuple[lgb.Booster, LinearPrior, Calibrator, str]:
    """Early stopping and calibration on the newest origins pooled, then a refit on every origin."""
    held = min(VALIDATION_ORIGINS, len(rows) - 1)
    # one stacked copy of every row, the probe's rows and the held-out rows being slices of it: at national scale
    # each copy is half a gigabyte
    X_all, y_all = _stack(rows)
    cut = len(y_all) - sum(len(r.y) for r in rows[-held:])
    X_fit, y_fit, X_val, y_val = X_all.iloc[:cut], y_all[:cut], X_all.iloc[cut:], y_all[cut:]
    probe, probe_prior = fit(X_fit, y_fit, seed, FIXED_ROUNDS, valid=(X_val, y_val), prior_columns=prior_columns)
    # a validation fold of a few dozen positives: never trust it to stop in the first few rounds
    rounds = max(MIN_ROUNDS, probe.best_iteration or FIXED_ROUNDS)
    calibrator = Calibrator.fit(probe.predict(X_val, num_iteration=rounds, raw_score=True) + probe_prior(X_val),
                                y_val)
    del probe, probe_prior, X_fit, X_val
    booster, prior = fit(X_all, y_all, seed, rounds, prior_columns=prior_columns)
    scheme = (f"stumps boosted from {_prior_words(prior_columns)}, fit {where}on {_span(rows)} ({rounds} rounds, early-stopped "
              f"and calibrated on {_span(rows[-held:])} held out from a fit on {_span(rows[:-held])})")
    return booster, prior, calibrator, scheme


def _span(rows: list[TrainingRows]) -> str:
    first, last = rows[0].origin, rows[-1].origin
    return str(first) if first == last else f"{first}-{last}"


def _prior_words(prior_columns: list[str] | None) -> str:
    return ("a logistic prior" if not prior_columns
            else f"a logistic prior on {len(prior_columns)} of the features (the outcome's own history)")


def train(rows: list[TrainingRows], features: list[str], seed: int, *, fit: Fit = _fit,
          where: str = "", prior_features: list[str] | None = None) -> TrainedModel:
    """Train on closed origins (oldest first) with the temporal scheme described in the module docstring.

    ``fit`` does each boosted fit (this process by default); ``where`` says where, in the scheme text.
    ``prior_features`` (a subset of ``features``) fits the prior on those alone: the trees then start from that
    baseline's score and learn what the other features add."""
    rows = sorted(rows, key=lambda r: r.origin)
    rows = [TrainingRows(r.origin, r.X[features], r.y) for r in rows]
    where = f"{where} " if where else ""
    if len(rows) >= 2:
        booster, prior, calibrator, scheme = _temporal(rows, seed, fit, where, prior_features)
    else:
        X_fit, y_fit = _stack(rows)
        booster, prior = fit(X_fit, y_fit, seed, FIXED_ROUNDS, prior_columns=prior_features)
        calibrator = Calibrator.fit(_oof_raw(X_fit, y_fit, seed, fit, prior_features), y_fit)
        scheme = (f"stumps boosted from {_prior_words(prior_features)}, fit {where}on {rows[0].origin} ({FIXED_ROUNDS} rounds), "
                  "calibrated on out-of-fold scores")
    return TrainedModel(booster, features, calibrator, scheme, prior)
