"""The trees' logistic prior is scikit-learn's logistic baseline, fitted without copying the training matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd

from risk.model.baselines import predict_logistic
from risk.model.gbm import LinearPrior, fit_logistic


def test_the_prior_is_the_scikit_learn_pipeline_fitted_without_its_copies() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    X = pd.DataFrame(rng.random((n, 6)) * [1, 10, 100, 0.1, 5, 1], columns=list("abcdef"))
    X = X.mask(rng.random(X.shape) < 0.15)
    X["b"] = X["b"].fillna(2.0)  # a column with nothing missing: no indicator
    X["e"] = 3.0  # constant: scaled by 1, as the scaler does
    X["f"] = np.where(np.arange(n) % 2, np.nan, rng.integers(0, 4, n))  # an even count of values: two middles
    X["g"] = np.nan  # never present: left out
    y = (rng.random(n) < 0.1 + 0.2 * X["a"].fillna(0)).astype(int).to_numpy()
    pipe = fit_logistic(X, y, seed=3)
    prior = LinearPrior.fit(X, y, seed=3)
    imputer, scaler, lr = (step for _, step in pipe.steps)
    assert prior.columns == list(pipe.feature_names_in_used) == list("abcdef")
    assert prior.indicators == [c for c in "abcdef" if X[c].isna().any()]
    assert prior.medians == list(imputer.statistics_)
    # the same sums, though not always in the same order as scikit-learn's (that follows pandas' memory layout)
    np.testing.assert_allclose(prior.mean + prior.indicator_mean, scaler.mean_, rtol=1e-12)
    np.testing.assert_allclose(prior.scale + prior.indicator_scale, scaler.scale_, rtol=1e-12)
    np.testing.assert_allclose(prior.coef + prior.indicator_coef, lr.coef_[0], rtol=1e-8)
    np.testing.assert_allclose(prior.intercept, lr.intercept_[0], rtol=1e-8)
    np.testing.assert_allclose(1 / (1 + np.exp(-prior(X))), predict_logistic(pipe, X), rtol=0, atol=1e-10)
