"""LightGBM training for a few dozen positives: additive trees, temporal early stopping, calibration.

Training rows come from origins whose outcome windows have closed, typically
300 tracts and 10-20 positives each. With so few positives a flexible model
learns the noise of whichever tracts happened to surge, so the trees are
stumps (an additive model), each feature may only move the risk the way the
feature dictionary says (monotone constraints), and positives are not
up-weighted (weighting 20x would let a dozen tracts decide every split).
No parameter set is chosen on one origin's dozen positives.

With three or more origins: early stopping on the binary log-loss of the two
newest origins pooled (fitting on the older ones), Platt calibration on those
held-out scores, and a refit on every origin with that many rounds, so the
newest outcomes shape the model too. With two: the same with one validation
origin. With one: fixed rounds and calibration on out-of-fold scores. Seeds
and single-threaded deterministic training make the same data and settings
give a byte-identical model file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from risk.dictionary import BY_NAME

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
    "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbosity": -1,
}
"""Chosen on development folds over origins 2005-2009 only (README, 'Baselines and backtest'): up-weighting
positives ranked no better than chance; deeper trees, no monotone constraints, extra trees, random-forest mode
and choosing among parameter sets on one origin ranked no better. Stumps keep each feature's contribution its
own (exact, additive explanations) and give static tract features fewer ways to memorise the tracts that surged.
Linear trees are left out on purpose: LightGBM cannot compute TreeSHAP contributions for them."""


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


@dataclass
class TrainedModel:
    """A booster, its feature order and its calibration."""

    booster: lgb.Booster
    features: list[str]
    calibrator: Calibrator
    scheme: str

    def raw(self, X: pd.DataFrame) -> np.ndarray:
        """Raw (log-odds) scores."""
        return self.booster.predict(X[self.features], raw_score=True)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities."""
        return self.calibrator(self.raw(X))

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """SHAP values on the raw scale from LightGBM's TreeSHAP: one column per feature plus the base value."""
        return self.booster.predict(X[self.features], pred_contrib=True)

    def save(self, folder: Path) -> None:
        """Write ``model.txt`` and ``calibration.json`` into ``folder``."""
        self.booster.save_model(str(folder / "model.txt"))
        (folder / "calibration.json").write_text(json.dumps(
            {"a": self.calibrator.a, "b": self.calibrator.b, "scheme": self.scheme, "features": self.features},
            indent=2))

    @classmethod
    def load(cls, folder: Path) -> TrainedModel:
        """Read a model written by :meth:`save`."""
        meta = json.loads((folder / "calibration.json").read_text())
        booster = lgb.Booster(model_file=str(folder / "model.txt"))
        return cls(booster, list(meta["features"]), Calibrator(meta["a"], meta["b"]), meta["scheme"])


def _stack(rows: list[TrainingRows]) -> tuple[pd.DataFrame, np.ndarray]:
    return pd.concat([r.X for r in rows]), np.concatenate([r.y.to_numpy() for r in rows])


def _monotone(columns: list[str]) -> list[int]:
    return [{"up": 1, "down": -1}.get(BY_NAME[c].direction, 0) if c in BY_NAME else 0 for c in columns]


def _fit(X: pd.DataFrame, y: np.ndarray, seed: int, rounds: int,
         valid: tuple[pd.DataFrame, np.ndarray] | None = None) -> lgb.Booster:
    params = lgb_params(seed, list(X.columns))
    train_set = lgb.Dataset(X, label=y, free_raw_data=False)
    if valid is None or len(np.unique(valid[1])) < 2:
        return lgb.train(params, train_set, num_boost_round=rounds)
    vset = lgb.Dataset(valid[0], label=valid[1], reference=train_set)
    return lgb.train(params, train_set, num_boost_round=MAX_ROUNDS, valid_sets=[vset],
                     callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False)])


def _oof_raw(X: pd.DataFrame, y: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-fold raw scores within one origin, for calibration when there is no later fold."""
    raw = np.zeros(len(y))
    folds = StratifiedKFold(n_splits=min(5, max(2, int(y.sum()))), shuffle=True, random_state=seed)
    for fit_idx, cal_idx in folds.split(X, y):
        b = _fit(X.iloc[fit_idx], y[fit_idx], seed, FIXED_ROUNDS)
        raw[cal_idx] = b.predict(X.iloc[cal_idx], raw_score=True)
    return raw


def _temporal(rows: list[TrainingRows], seed: int) -> tuple[lgb.Booster, Calibrator, str]:
    """Early stopping and calibration on the newest origins pooled, then a refit on every origin."""
    held = min(VALIDATION_ORIGINS, len(rows) - 1)
    X_fit, y_fit = _stack(rows[:-held])
    X_val, y_val = _stack(rows[-held:])
    probe = _fit(X_fit, y_fit, seed, FIXED_ROUNDS, valid=(X_val, y_val))
    # a validation fold of a few dozen positives: never trust it to stop in the first few rounds
    rounds = max(MIN_ROUNDS, probe.best_iteration or FIXED_ROUNDS)
    calibrator = Calibrator.fit(probe.predict(X_val, num_iteration=rounds, raw_score=True), y_val)
    X_all, y_all = _stack(rows)
    booster = _fit(X_all, y_all, seed, rounds)
    scheme = (f"stumps fit on {_span(rows)} ({rounds} rounds, early-stopped and calibrated on {_span(rows[-held:])} "
              f"held out from a fit on {_span(rows[:-held])})")
    return booster, calibrator, scheme


def _span(rows: list[TrainingRows]) -> str:
    first, last = rows[0].origin, rows[-1].origin
    return str(first) if first == last else f"{first}-{last}"


def train(rows: list[TrainingRows], features: list[str], seed: int) -> TrainedModel:
    """Train on closed origins (oldest first) with the temporal scheme described in the module docstring."""
    rows = sorted(rows, key=lambda r: r.origin)
    rows = [TrainingRows(r.origin, r.X[features], r.y) for r in rows]
    if len(rows) >= 2:
        booster, calibrator, scheme = _temporal(rows, seed)
    else:
        X_fit, y_fit = _stack(rows)
        booster = _fit(X_fit, y_fit, seed, FIXED_ROUNDS)
        calibrator = Calibrator.fit(_oof_raw(X_fit, y_fit, seed), y_fit)
        scheme = f"stumps fit on {rows[0].origin} ({FIXED_ROUNDS} rounds), calibrated on out-of-fold scores"
    return TrainedModel(booster, features, calibrator, scheme)
