"""Explanations on a real LightGBM model trained on the bundled King County sample.

Labels are synthetic but deterministic (the top fifth of tracts by a mix of
eviction filings, renter share and new construction, at each origin), which
keeps training to a fraction of a second while the model still uses many
features, some with missing values.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import lightgbm as lgb
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from risk.core.errors import ExplanationError, RiskError
from risk.core.settings import Settings
from risk.features.build import build_features
from risk.features.dictionary import BY_NAME, feature_names
from risk.model.gbm import Calibrator, TrainedModel, TrainingRows, train
from risk.scoring.explain import (
    Explanation,
    bar_png,
    beeswarm_png,
    check_additivity,
    contributions,
    driver_table,
    drivers,
    global_importance,
    tract_explanation,
    waterfall_png,
)
from risk.sources import Sources

# shap 0.51 sets colormap extremes in a way matplotlib 3.11 plans to deprecate; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:shap")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRAIN_YEARS = (2012, 2014)
Fitted = tuple[TrainedModel, pd.DataFrame, pd.Series]
EXPLAIN_AS_OF = date(2016, 6, 1)


def _labels(X: pd.DataFrame) -> pd.Series:
    score = (X["eviction_filing_rate_36m"].rank(pct=True) + X["renter_share"].rank(pct=True)
             + X["permits_new_36m"].fillna(-1).rank(pct=True))
    return (score > score.quantile(0.8)).astype(int)


@pytest.fixture(scope="module")
def fitted(bundled_sources: Sources, bundled_settings: Settings) -> Fitted:
    """A model trained on two origins, the features of a later as-of date and their county medians."""
    names = feature_names(bundled_settings.features.spatial_lags)
    rows = []
    for year in TRAIN_YEARS:
        X = build_features(bundled_sources, date(year, 6, 1), bundled_settings.features)[names]
        rows.append(TrainingRows(year, X, _labels(X)))
    model = train(rows, names, bundled_settings.model.seed)
    X = build_features(bundled_sources, EXPLAIN_AS_OF, bundled_settings.features)[names]
    return model, X, X.median()


@pytest.fixture(scope="module")
def expl(fitted: Fitted) -> Explanation:
    model, X, _ = fitted
    return contributions(model, X)


def _with_missing(X: pd.DataFrame, geoid: str, features: list[str]) -> pd.DataFrame:
    X = X.copy()
    X.loc[geoid, features] = np.nan
    return X


# ---------------------------------------------------------------- contributions


@pytest.mark.filterwarnings("ignore:LightGBM binary classifier")
def test_lightgbm_contributions_equal_shap_tree_explainer(fitted: Fitted, expl: Explanation) -> None:
    import shap

    model, X, _ = fitted
    explainer = shap.TreeExplainer(model.booster)
    values = explainer.shap_values(X[model.features])
    # shap has returned [negative, positive] lists and (n, p, 2) arrays for binary models in other versions
    if isinstance(values, list):
        values = values[-1]
    values = np.asarray(values)
    if values.ndim == 3:
        values = values[..., -1]
    base = np.atleast_1d(np.asarray(explainer.expected_value, dtype="float64"))[-1]

    # the booster's own pred_contrib is TreeSHAP exactly
    trees = model.tree_contributions(X)
    assert values.shape == expl.values.shape == trees[:, :-1].shape
    np.testing.assert_allclose(trees[:, :-1], values, rtol=0, atol=1e-6)
    assert trees[0, -1] == pytest.approx(base, abs=1e-6)
    # the trees are boosted from a linear prior: each feature's term of it joins that feature's contribution
    # and its intercept the base value (a linear term with training mean zero is its own exact SHAP value)
    assert model.prior is not None
    terms = model.prior.terms(X[model.features], model.features)
    assert np.abs(terms).max() > 0
    np.testing.assert_allclose(expl.values.to_numpy(), values + terms, rtol=0, atol=1e-6)
    assert expl.base_value == pytest.approx(base + model.prior.intercept, abs=1e-6)
    assert list(expl.values.columns) == model.features
    assert expl.values.index.equals(X.index) and expl.values.index.name == "geoid"
    assert expl.data.equals(X[model.features])


def test_contributions_add_up_to_the_raw_score_for_every_tract(fitted: Fitted, expl: Explanation) -> None:
    model, X, _ = fitted
    raw = model.raw(X)
    np.testing.assert_allclose(expl.values.sum(axis=1) + expl.base_value, raw, rtol=0, atol=1e-6)
    np.testing.assert_allclose(expl.raw.to_numpy(), raw, rtol=0, atol=0)
    check_additivity(expl)  # and the check itself agrees


def test_contributions_that_do_not_add_up_raise(expl: Explanation) -> None:
    tampered = expl.values.copy()
    victim = tampered.index[7]
    tampered.loc[victim, tampered.columns[0]] += 1e-3
    with pytest.raises(ExplanationError, match=victim) as caught:
        check_additivity(dataclasses.replace(expl, values=tampered))
    assert isinstance(caught.value, RiskError)

    tampered = expl.values.copy()
    tampered.iloc[3, 2] = np.nan  # a NaN contribution must not slip through a '>' comparison
    with pytest.raises(ExplanationError):
        check_additivity(dataclasses.replace(expl, values=tampered))

    with pytest.raises(ExplanationError):
        check_additivity(dataclasses.replace(expl, base_value=expl.base_value + 1e-5))


def test_a_linear_tree_model_is_refused_with_a_clear_error(fitted: Fitted) -> None:
    _, X, _ = fitted
    features = ["renter_share", "low_income_share"]
    booster = lgb.train({"objective": "binary", "linear_tree": True, "num_leaves": 4, "verbosity": -1,
                         "seed": 1, "num_threads": 1}, lgb.Dataset(X[features], label=_labels(X)), 10)
    with pytest.raises(ExplanationError, match="linear trees"):
        contributions(TrainedModel(booster, features, Calibrator(), "linear"), X)


def test_missing_model_features_are_named(fitted: Fitted) -> None:
    model, X, _ = fitted
    with pytest.raises(ExplanationError, match="renter_share"):
        contributions(model, X.drop(columns=["renter_share"]))


# ---------------------------------------------------------------- drivers


def _value_text(name: str, value: float) -> str:
    """What the dictionary's formatter would print, minus what drivers reword (ratio unit, flags)."""
    feature = BY_NAME[name]
    if feature.unit == "ratio":
        return f"{value:,.2f}"
    return feature.format(value)


def test_drivers_are_the_largest_contributions_in_plain_words(fitted: Fitted, expl: Explanation) -> None:
    _, X, county = fitted
    riskiest = expl.raw.idxmax()
    for geoid in (riskiest, expl.raw.idxmin(), X.index[0]):
        top = drivers(expl, geoid, county, k=5)
        assert len(top) == 5
        sizes = [abs(d.contribution) for d in top]
        assert sizes == sorted(sizes, reverse=True)
        assert sizes[0] == pytest.approx(expl.values.loc[geoid].abs().max())
        assert {d.feature for d in top} == set(expl.values.loc[geoid].abs().nlargest(5).index)
        for d in top:
            assert d.label == BY_NAME[d.feature].label and d.label in d.sentence
            assert "nan" not in d.sentence.lower()
            assert d.sentence.endswith(("raises the risk.", "lowers the risk.", "does not change the risk."))
            assert ("raises" in d.sentence) == (d.contribution > 0)
            assert d.contribution == expl.values.loc[geoid, d.feature]
            if d.value == d.value and BY_NAME[d.feature].unit != "flag":
                assert _value_text(d.feature, d.value) in d.sentence
                assert "(county median " in d.sentence


WORDING = [  # feature, value, county median, contribution, sentence
    ("eviction_filing_rate_36m", 2.9, 1.4, 0.31,
     "Eviction filings over three years: 2.90 per 100 renter households (county median 1.40); raises the risk."),
    ("rent_change_3y", 12.3, 8.1, 0.2,
     "Rent change over 3 years: +12.3% (county median +8.1%); raises the risk."),
    ("renter_share", 0.72, 0.35, -0.1,
     "Renter households: 72% (county median 35%); lowers the risk."),
    ("eviction_filing_rate_change_3y", 0.5, -0.2, 0.05,
     "Change in eviction filings: +0.50 per 100 renter households (county median -0.20); raises the risk."),
    ("eviction_filing_rate_vs_county", 1.4, 0.72, 0.04,
     "Eviction filings against the county: 1.40 times (county median 0.72); raises the risk."),
    ("permit_value_36m", 291.0, 1784.0, -0.03,
     "Permitted construction value, 36 months: $291 per home (county median $1,784); lowers the risk."),
    ("nbr_rent_change_1y", 6.25, 3.9, 0.02,
     "Rent change over 1 year in neighboring tracts: +6.2% on average (county median +3.9%); raises the risk."),
    ("nbr_permits_new_36m", np.nan, 2.8, 0.01,
     ("New-construction permits, 36 months in neighboring tracts: not available for the neighboring tracts; "
      "the model treats it as missing, which raises the risk.")),
    ("cov_permits", 1.0, 0.0, -0.008,
     "Permits data available: yes (most of the county: no); lowers the risk."),
    ("cov_evictions", 1.0, 1.0, 0.006,
     "Evictions data available: yes (as in most of the county); raises the risk."),
    ("rent_index", np.nan, np.nan, 0.0,
     "Rent index: not available for this tract; the model treats it as missing, which does not change the risk."),
]


def test_sentence_wording_matches_the_dictionary() -> None:
    geoid = "53033000100"
    names = [case[0] for case in WORDING]
    index = pd.Index([geoid], name="geoid")
    values = pd.DataFrame([[case[3] for case in WORDING]], index=index, columns=names)
    data = pd.DataFrame([[case[1] for case in WORDING]], index=index, columns=names)
    expl = Explanation(values, -1.5, pd.Series([values.iloc[0].sum() - 1.5], index=index), data)
    check_additivity(expl)
    county = pd.Series({case[0]: case[2] for case in WORDING})
    got = {d.feature: d.sentence for d in drivers(expl, geoid, county, k=len(names))}
    assert got == {case[0]: case[4] for case in WORDING}


def test_a_missing_value_is_said_to_be_missing(fitted: Fitted) -> None:
    model, X, county = fitted
    geoid = X.index[10]
    gone = ["renter_share", "nbr_eviction_filing_rate_36m"]
    expl = contributions(model, _with_missing(X, geoid, gone))
    by_feature = {d.feature: d for d in drivers(expl, geoid, county, k=len(model.features))}
    own, lag = by_feature["renter_share"], by_feature["nbr_eviction_filing_rate_36m"]
    assert "Renter households: not available for this tract; the model treats it as missing" in own.sentence
    assert "not available for the neighboring tracts; the model treats it as missing" in lag.sentence
    assert own.value != own.value  # NaN kept in the dataclass; JSON turns it into null
    assert all("nan" not in d.sentence.lower() for d in by_feature.values())


def test_unknown_tract_raises(expl: Explanation, fitted: Fitted) -> None:
    with pytest.raises(ExplanationError, match="99999999999"):
        drivers(expl, "99999999999", fitted[2])


def test_global_importance_is_mean_absolute_shap_largest_first(expl: Explanation) -> None:
    table = global_importance(expl)
    assert list(table.columns) == ["label", "family", "mean_abs_shap"]
    assert set(table.index) == set(expl.values.columns)
    assert table["mean_abs_shap"].is_monotonic_decreasing
    top = table.index[0]
    assert table.loc[top, "mean_abs_shap"] == pytest.approx(expl.values[top].abs().mean())
    assert table.loc[top, "label"] == BY_NAME[top].label and table.loc[top, "family"] == BY_NAME[top].family


# ---------------------------------------------------------------- plots and JSON


def test_plots_are_written_as_complete_pngs_and_closed(expl: Explanation, tmp_path: Path) -> None:
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "bar.png").write_bytes(b"previous")  # an older plot is replaced, not appended to
    open_before = plt.get_fignums()
    geoid = expl.raw.idxmax()
    written = [waterfall_png(expl, geoid, folder / "waterfall.png"), beeswarm_png(expl, folder / "beeswarm.png"),
               bar_png(expl, folder / "bar.png")]
    for path in written:
        content = path.read_bytes()
        assert len(content) > 1000 and content[:8] == PNG_SIGNATURE, path
    assert sorted(p.name for p in folder.iterdir()) == ["bar.png", "beeswarm.png", "waterfall.png"]
    assert plt.get_fignums() == open_before


def test_tract_explanation_is_json_and_adds_up(fitted: Fitted) -> None:
    model, X, county = fitted
    geoid = X.index[10]
    X = _with_missing(X, geoid, ["renter_share"])
    result = tract_explanation(model, X, geoid, county, k=len(model.features))
    text = json.dumps(result, allow_nan=False)  # NaN would not be JSON
    assert set(result) == {"geoid", "probability", "base_value", "drivers"}
    assert result["geoid"] == geoid
    assert result["probability"] == pytest.approx(float(model.predict(X.loc[[geoid]])[0]))
    total = result["base_value"] + sum(d["contribution"] for d in result["drivers"])
    assert total == pytest.approx(float(model.raw(X.loc[[geoid]])[0]), abs=1e-6)
    missing = next(d for d in result["drivers"] if d["feature"] == "renter_share")
    assert missing["value"] is None and '"value": null' in text
    assert set(missing) == {"feature", "label", "value", "contribution", "sentence"}
    assert len(tract_explanation(model, X, geoid, county)["drivers"]) == 5


def test_the_compact_email_waterfall_is_a_png_and_leaves_no_temporary_file(expl: Explanation,
                                                                           tmp_path: Path) -> None:
    from risk.scoring.explain import compact_waterfall_png

    geoid = str(expl.values.index[0])
    path = compact_waterfall_png(expl, geoid, tmp_path / "w.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["w.png"]


def test_driver_table_gives_every_tract_the_same_drivers_as_one_tract_at_a_time(expl: Explanation,
                                                                               fitted: Fitted) -> None:
    county = fitted[2]
    table = driver_table(expl, county, 5)
    assert len(table) == 5 * len(expl.values)
    for geoid, rows in table.groupby("geoid", sort=False):
        one = drivers(expl, geoid, county, 5)
        assert rows["rank"].tolist() == [1, 2, 3, 4, 5]
        assert rows["feature"].tolist() == [d.feature for d in one]
        assert rows["sentence"].tolist() == [d.sentence for d in one]
        np.testing.assert_array_equal(rows["contribution"].to_numpy(), [d.contribution for d in one])
        np.testing.assert_array_equal(rows["value"].to_numpy(), [d.value for d in one])


def test_a_tract_of_a_region_of_several_counties_is_compared_with_its_region() -> None:
    from risk.scoring.explain import comparison_area

    assert comparison_area(("53033",)) == "county"
    area = comparison_area(("53033", "53053", "53061"))
    assert area == "region"
    geoid, names = "53033000100", ["renter_share", "cov_permits"]
    index = pd.Index([geoid], name="geoid")
    values = pd.DataFrame([[-0.2, -0.1]], index=index, columns=names)
    data = pd.DataFrame([[0.72, 1.0]], index=index, columns=names)
    expl = Explanation(values, -1.5, pd.Series([values.iloc[0].sum() - 1.5], index=index), data)
    got = {d.feature: d.sentence for d in drivers(expl, geoid, pd.Series({"renter_share": 0.35, "cov_permits": 0.0}),
                                                   k=2, area=area)}
    assert got["renter_share"] == "Renter households: 72% (region median 35%); lowers the risk."
    assert "(most of the region: no)" in got["cov_permits"]


def test_a_waterfall_says_how_its_log_odds_become_the_probability_shown() -> None:
    from risk.scoring.explain import scale_note

    assert scale_note(4.11, 0.32) == ("log-odds 4.11, which the calibration turns into the 32% shown "
                                      "(the bars add up on the log-odds scale)")
    assert "even chance" in scale_note(0.0, None)


def test_the_compact_waterfall_is_drawn_with_its_probability(fitted: Fitted, tmp_path: Path) -> None:
    from risk.scoring.explain import compact_waterfall_png

    model, X, _ = fitted
    geoid = X.index[3]
    path = compact_waterfall_png(contributions(model, X.loc[[geoid]]), geoid, tmp_path / "w.png",
                                 probability=float(model.predict(X.loc[[geoid]])[0]))
    assert path.read_bytes()[:4] == b"\x89PNG"
