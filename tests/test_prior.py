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


def test_trees_boosted_from_a_prior_on_some_features_still_explain_every_score_exactly() -> None:
    from risk.features.dictionary import model_feature_names
    from risk.model.gbm import TrainingRows, train

    rng = np.random.default_rng(11)
    features = model_feature_names(False)[:8]
    history = features[:3]
    rows = []
    for origin in (2010, 2011, 2012):
        X = pd.DataFrame(rng.normal(size=(600, len(features))), columns=features)
        logit = -2.5 + 1.2 * X[history[0]] + 0.8 * X[features[5]]
        rows.append(TrainingRows(origin, X, pd.Series((rng.random(600) < 1 / (1 + np.exp(-logit))).astype(int))))
    model = train(rows, features, seed=3, prior_features=history)
    assert model.prior is not None and set(model.prior.columns) <= set(history)
    assert "prior on 3 of the features" in model.scheme
    X = rows[-1].X
    np.testing.assert_allclose(model.contributions(X).sum(axis=1), model.raw(X), rtol=0, atol=1e-6)
    # the trees start from the history prior: the features outside it reach the score through the trees only
    terms = model.prior.terms(X, features)
    assert np.abs(terms[:, 3:]).max() == 0 and np.abs(terms[:, :3]).max() > 0
    every = train(rows, features, seed=3)
    assert every.prior is not None and set(every.prior.columns) == set(features)
    assert not np.allclose(every.raw(X), model.raw(X))


def test_a_saved_model_keeps_its_partial_prior(tmp_path) -> None:
    from risk.features.dictionary import model_feature_names
    from risk.model.gbm import TrainedModel, TrainingRows, train

    rng = np.random.default_rng(2)
    features = model_feature_names(False)[:5]
    X = pd.DataFrame(rng.normal(size=(500, 5)), columns=features)
    y = pd.Series((rng.random(500) < 0.1 + 0.2 * (X[features[0]] > 0)).astype(int))
    model = train([TrainingRows(2012, X, y)], features, seed=1, prior_features=features[:2])
    model.save(tmp_path)
    again = TrainedModel.load(tmp_path)
    np.testing.assert_allclose(again.predict(X), model.predict(X))
    assert again.prior is not None and again.prior.columns == model.prior.columns
