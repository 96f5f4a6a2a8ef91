"""SHAP explanations of tract scores: per-tract drivers in plain language, global importance and plots.

Contributions come from LightGBM's own TreeSHAP (``pred_contrib=True``) on the
raw log-odds scale, so they add up exactly to the raw score; every call checks
that they do. Sentences take their words and units from the feature
dictionary (:mod:`risk.features.dictionary`). Plots use ``shap.plots`` on matplotlib's
Agg backend and are written atomically.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import lightgbm as lgb
import matplotlib
import numpy as np
import pandas as pd

from risk.core.errors import ExplanationError
from risk.core.files import atomic_path
from risk.features.dictionary import BY_NAME, Feature
from risk.model.gbm import TrainedModel

# the weekly job runs headless: never try to open a window, whatever the environment says
matplotlib.use("Agg")

ADDITIVITY_TOL = 1e-6
"""Largest allowed gap, on the log-odds scale, between contributions + base value and the raw score."""
PLOT_DPI = 120


@dataclass(frozen=True, eq=False)  # eq=False: comparing DataFrames with == is elementwise, not a bool
class Explanation:
    """SHAP values of a set of tracts (index geoid, one column per model feature) on the raw log-odds scale."""

    values: pd.DataFrame
    base_value: float
    raw: pd.Series
    data: pd.DataFrame


@dataclass(frozen=True)
class Driver:
    """One feature's part in a tract's score, with a plain-language sentence."""

    feature: str
    label: str
    value: float
    contribution: float
    sentence: str


# ---------------------------------------------------------------- contributions


def contributions(model: TrainedModel, X: pd.DataFrame) -> Explanation:
    """TreeSHAP contributions of every tract in ``X``; raises :class:`ExplanationError` if they do not add up."""
    missing = [f for f in model.features if f not in X.columns]
    if missing:
        raise ExplanationError(f"the feature table lacks {len(missing)} model feature(s): {', '.join(missing)}")
    if X.empty:
        raise ExplanationError("no tracts to explain")
    if not X.index.is_unique:
        raise ExplanationError("the feature table has duplicate geoids; explain one as-of date at a time")
    data = X[model.features].astype("float64")
    try:
        contrib = model.contributions(data)
    except lgb.basic.LightGBMError as e:
        # LightGBM has no TreeSHAP for linear trees (a model file trained with linear_tree=True); say so plainly
        raise ExplanationError(f"the model cannot be explained with TreeSHAP: {e}") from e
    contrib = np.asarray(contrib, dtype="float64")
    if contrib.shape != (len(data), len(model.features) + 1):
        raise ExplanationError(f"unexpected contribution shape {contrib.shape} for {data.shape} features "
                               "(only binary models are supported)")
    index = data.index.rename("geoid")
    expl = Explanation(
        values=pd.DataFrame(contrib[:, :-1], index=index, columns=model.features),
        # LightGBM repeats the expected value in the last column of every row; the check below would catch a row
        # where it differed
        base_value=float(contrib[0, -1]),
        raw=pd.Series(np.asarray(model.raw(data), dtype="float64"), index=index, name="raw"),
        data=data.set_axis(index),
    )
    check_additivity(expl)
    return expl


def check_additivity(expl: Explanation, tol: float = ADDITIVITY_TOL) -> None:
    """Raise :class:`ExplanationError` unless contributions + base value equal the raw score for every tract."""
    # skipna=False: pandas would otherwise drop a NaN contribution from the sum and let the tract pass
    gap = (expl.values.sum(axis=1, skipna=False) + expl.base_value - expl.raw.reindex(expl.values.index)).abs()
    bad = gap[~(gap <= tol)]  # a NaN gap is a failure too
    if not bad.empty:
        worst = bad.fillna(np.inf).idxmax()
        raise ExplanationError(f"SHAP contributions do not add up to the raw score for {len(bad)} tract(s); "
                               f"worst {worst}: off by {bad[worst]:.3g} (tolerance {tol:g})")


# ---------------------------------------------------------------- drivers and sentences


def _feature(name: str) -> Feature:
    """The dictionary entry, or a plain stand-in for a column the dictionary does not know."""
    return BY_NAME.get(name) or Feature(name, name.replace("_", " ").capitalize(), "", "other", "mixed", "")


def _is_missing(value: float | None) -> bool:
    return value is None or not math.isfinite(value)


def _format(feature: Feature, value: float) -> str:
    """``Feature.format`` plus two fixes: ratios read as 'times', differences always carry a sign."""
    if feature.unit == "ratio":
        return f"{value:,.2f} times"
    text = feature.format(value)
    # differences in counts-per-100 units are not signed by Feature.format; '+' makes clear it is a change
    if ("change" in feature.name or feature.name.endswith("_vs_longrun")) and text[:1] not in "+-":
        text = ("+" if value >= 0 else "") + text
    return text


def _format_median(feature: Feature, value: float) -> str:
    """The county median without a long unit the sentence has just spelled out ('1.40', not '1.40 per 100 ...')."""
    text = _format(feature, value)
    suffixes = [f" {feature.unit}", " points", " times"]
    if feature.unit.startswith("$ "):
        suffixes.append(feature.unit[1:])  # '$1,784 per home' -> '$1,784'
    for suffix in suffixes:
        text = text.removesuffix(suffix)
    return text


def _effect(contribution: float) -> str:
    if contribution > 0:
        return "raises the risk"
    if contribution < 0:
        return "lowers the risk"
    return "does not change the risk"


def comparison_area(county_fips: tuple[str, ...]) -> str:
    """What a tract is compared with, in words: its county when the region is one county, else its region."""
    return "county" if len(county_fips) == 1 else "region"


def _flag_sentence(feature: Feature, value: float, median: float, effect: str, area: str = "county") -> str:
    """Coverage flags: yes/no against what most of the area has (a median of 0/1 reads badly)."""
    text = f"{feature.label}: {feature.format(value)}"
    if not _is_missing(median):
        if median == 0.5:
            text += f" (about half of the {area}: yes)"
        elif (value >= 0.5) == (median > 0.5):
            text += f" (as in most of the {area})"
        else:
            text += f" (most of the {area}: {'yes' if median > 0.5 else 'no'})"
    return f"{text}; {effect}."


def _sentence(name: str, value: float, median: float, contribution: float, area: str = "county") -> str:
    """One plain-language sentence: label, value in its unit, the median of the tract's ``area`` (county or
    region), and which way it moves the risk."""
    feature = _feature(name)
    effect = _effect(contribution)
    lag = name.startswith("nbr_")
    if _is_missing(value):
        where = "the neighboring tracts" if lag else "this tract"
        return f"{feature.label}: not available for {where}; the model treats it as missing, which {effect}."
    if feature.unit == "flag":
        return _flag_sentence(feature, value, median, effect, area)
    text = f"{feature.label}: {_format(feature, value)}"
    if lag:
        text += " on average"  # a spatial lag is the mean over the contiguous tracts
    if not _is_missing(median):
        text += f" ({area} median {_format_median(feature, median)})"
    return f"{text}; {effect}."


def drivers(expl: Explanation, geoid: str, county: pd.Series, k: int = 5, area: str = "county") -> list[Driver]:
    """The ``k`` features that move a tract's score most (largest |contribution| first), each with a sentence.

    ``county`` holds the median of each feature over the tract's county or region (``area``, as the sentences
    name it), indexed by feature name; a feature without one gets no comparison.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if geoid not in expl.values.index:
        raise ExplanationError(f"tract {geoid} is not in the explanation")
    row = expl.values.loc[geoid]
    data = expl.data.loc[geoid]
    # stable sort: ties keep dictionary order, so the same tract always reads the same
    order = np.argsort(-row.abs().to_numpy(), kind="stable")[:k]
    out = []
    for i in order:
        name = str(row.index[i])
        value, contribution = float(data[name]), float(row.iloc[i])
        median = float(county.get(name, np.nan))
        out.append(Driver(name, _feature(name).label, value, contribution,
                          _sentence(name, value, median, contribution, area)))
    return out


def driver_table(expl: Explanation, county: pd.Series, k: int = 5, area: str = "county") -> pd.DataFrame:
    """:func:`drivers` for every tract at once, as rows (geoid, rank, feature, value, contribution, sentence).

    The top ``k`` of each row come from one stable argsort over the whole matrix: at national scale a
    per-tract lookup costs a minute, this a second or two, and the rows are the same.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    values = expl.values.to_numpy(dtype="float64")
    data = expl.data[expl.values.columns].to_numpy(dtype="float64")
    k = min(k, values.shape[1])
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]
    rows = np.repeat(np.arange(len(values)), k)
    cols = order.ravel()
    names = expl.values.columns.to_numpy()[cols]
    value, contribution = data[rows, cols], values[rows, cols]
    medians = county.reindex(expl.values.columns).to_numpy(dtype="float64")[cols]
    return pd.DataFrame({
        "geoid": expl.values.index.to_numpy()[rows], "rank": np.tile(np.arange(1, k + 1), len(values)),
        "feature": names, "value": value, "contribution": contribution,
        "sentence": [_sentence(str(n), float(v), float(m), float(c), area)
                     for n, v, m, c in zip(names, value, medians, contribution)],
    })


def global_importance(expl: Explanation) -> pd.DataFrame:
    """Mean |SHAP| per feature (index feature) with its label and family, largest first."""
    features = [_feature(name) for name in expl.values.columns]
    table = pd.DataFrame({
        "label": [f.label for f in features],
        "family": [f.family for f in features],
        "mean_abs_shap": expl.values.abs().mean(axis=0).to_numpy(),
    }, index=pd.Index(expl.values.columns, name="feature"))
    return table.sort_values("mean_abs_shap", ascending=False, kind="stable")


# ---------------------------------------------------------------- JSON


def _json_number(value: float) -> float | None:
    """A finite float, or None: NaN and infinities are not JSON."""
    return float(value) if not _is_missing(float(value)) else None


def tract_explanation(model: TrainedModel, X: pd.DataFrame, geoid: str, county: pd.Series,
                      k: int = 5, area: str = "county") -> dict[str, Any]:
    """The JSON contract of one tract's explanation (the caller adds the tier)."""
    if geoid not in X.index:
        raise ExplanationError(f"tract {geoid} is not in the feature table")
    # SHAP values of a row do not depend on the other rows: explaining only this tract is enough
    expl = contributions(model, X.loc[[geoid]])
    return {
        "geoid": str(geoid),
        "probability": _json_number(model.predict(expl.data)[0]),
        "base_value": _json_number(expl.base_value),
        "drivers": [
            {"feature": d.feature, "label": d.label, "value": _json_number(d.value),
             "contribution": _json_number(d.contribution), "sentence": d.sentence}
            for d in drivers(expl, geoid, county, k, area)
        ],
    }


# ---------------------------------------------------------------- plots


def _pyplot_and_shap() -> tuple[ModuleType, ModuleType]:
    """Import matplotlib.pyplot and shap only when a plot is drawn: shap alone takes seconds to import."""
    import matplotlib.pyplot as plt
    import shap

    return plt, shap


def _labels(expl: Explanation) -> list[str]:
    return [_feature(name).label for name in expl.values.columns]


def _shap_explanation(expl: Explanation) -> Any:
    """All tracts as a ``shap.Explanation`` with dictionary labels as feature names."""
    _, shap = _pyplot_and_shap()
    return shap.Explanation(values=expl.values.to_numpy(), base_values=np.full(len(expl.values), expl.base_value),
                            data=expl.data.to_numpy(), feature_names=_labels(expl))


def _save(path: Path | str, draw: Callable[[], None], dpi: int = 0, tight: bool = True) -> Path:
    """Draw on a fresh figure, save it as PNG through a temporary file in the same folder, always close it."""
    plt, _ = _pyplot_and_shap()
    target = Path(path)
    before = set(plt.get_fignums())
    plt.figure()  # shap.plots draw on the current figure: never on one a caller left open
    try:
        draw()
        with atomic_path(target) as tmp:
            # the temporary name ends in .tmp, so the format must be named
            plt.gcf().savefig(tmp, format="png", dpi=dpi or PLOT_DPI, bbox_inches="tight" if tight else None)
    finally:
        for number in set(plt.get_fignums()) - before:  # ours only: a caller's open figures stay open
            plt.close(number)
    return target


def scale_note(raw: float, probability: float | None) -> str:
    """One line reconciling a waterfall's log-odds with the probability the reader was shown."""
    if probability is None or _is_missing(probability):
        return f"log-odds {raw:.2f} (0 is an even chance; each +1 multiplies the odds by 2.7)"
    return (f"log-odds {raw:.2f}, which the calibration turns into the {100 * probability:.0f}% shown "
            "(the bars add up on the log-odds scale)")


def waterfall_png(expl: Explanation, geoid: str, path: Path | str, max_display: int = 10, dpi: int = 0,
                  probability: float | None = None) -> Path:
    """One tract's waterfall (base value to raw score, log-odds) with dictionary labels and values in their units;
    with the tract's calibrated ``probability``, a caption reconciles the two scales."""
    plt, shap = _pyplot_and_shap()
    if geoid not in expl.values.index:
        raise ExplanationError(f"tract {geoid} is not in the explanation")
    data = expl.data.loc[geoid]
    # shap would print a missing value as 'nan' and a share as 0.412: give it the words the sentences use
    shown = np.array(["missing" if _is_missing(float(v)) else _format(_feature(str(n)), float(v))
                      for n, v in data.items()], dtype=object)
    single = shap.Explanation(values=expl.values.loc[geoid].to_numpy(), base_values=expl.base_value,
                              data=data.to_numpy(), display_data=shown, feature_names=_labels(expl))

    def draw() -> None:
        shap.plots.waterfall(single, max_display=max_display, show=False)
        plt.gcf().suptitle(f"Tract {geoid}: what moves its score (log-odds)", y=1.02)
        raw = expl.base_value + float(expl.values.loc[geoid].sum())
        plt.gcf().text(0.5, -0.02, scale_note(raw, probability), ha="center", va="top", fontsize=9)

    return _save(path, draw, dpi)


def beeswarm_png(expl: Explanation, path: Path | str, max_display: int = 12) -> Path:
    """Every tract's contributions of the most important features, colored by feature value."""
    plt, shap = _pyplot_and_shap()
    values = _shap_explanation(expl)

    def draw() -> None:
        # beeswarm jitters points with the global numpy RNG: seed it so a report is reproducible, then restore it
        state = np.random.get_state()
        np.random.seed(0)
        try:
            shap.plots.beeswarm(values, max_display=max_display, show=False)
        finally:
            np.random.set_state(state)
        plt.gca().set_xlabel("Contribution to the score (log-odds)")

    return _save(path, draw)


def bar_png(expl: Explanation, path: Path | str, max_display: int = 12) -> Path:
    """Mean |SHAP| per feature over all tracts."""
    plt, shap = _pyplot_and_shap()
    values = _shap_explanation(expl)

    def draw() -> None:
        shap.plots.bar(values, max_display=max_display, show=False)
        plt.gca().set_xlabel("Mean |contribution| to the score (log-odds)")

    return _save(path, draw)


def compact_waterfall_png(expl: Explanation, geoid: str, path: Path | str, max_display: int = 7,
                          probability: float | None = None) -> Path:
    """A small waterfall for e-mail: the same SHAP values as :func:`waterfall_png`, drawn directly with
    matplotlib (shap's layout code takes half a second a picture, too slow for a weekly batch)."""
    plt, _ = _pyplot_and_shap()
    if geoid not in expl.values.index:
        raise ExplanationError(f"tract {geoid} is not in the explanation")
    values = expl.values.loc[geoid]
    order = values.abs().sort_values(ascending=False).index
    top, rest = list(order[:max_display]), list(order[max_display:])
    steps = [(textwrap.fill(f"{_feature(n).label} = {_display(n, float(expl.data.loc[geoid, n]))}", 42),
              float(values[n])) for n in top]
    if rest:
        steps.append((f"{len(rest)} other features", float(values[rest].sum())))
    steps.reverse()  # drawn bottom-up: the largest contribution ends on top

    def draw() -> None:
        fig = plt.gcf()
        fig.set_size_inches(7.5, 0.5 * len(steps) + 1.2)
        ax = fig.add_subplot(111)
        start = expl.base_value + sum(v for _, v in steps)
        left = start
        for i, (label, v) in enumerate(steps):
            left -= v
            ax.barh(i, v, left=left, color="#d7301f" if v > 0 else "#2c7fb8", height=0.6)
            # the value sits beyond the bar's right end, clear of the labels on the left
            ax.text(max(left, left + v), i, f" {v:+.2f}", va="center", ha="left", fontsize=8)
        ax.set_yticks(range(len(steps)), [label for label, _ in steps], fontsize=8)
        ax.axvline(expl.base_value, color="#888888", linestyle=":", linewidth=1)
        ax.set_xlabel(f"average tract {expl.base_value:.2f}; this tract {scale_note(start, probability)}", fontsize=8)
        ax.set_title(f"Tract {geoid}: what raises (red) and lowers (blue) its score", fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
        ax.margins(x=0.15)

    return _save(path, draw, dpi=72)


def _display(name: str, value: float) -> str:
    return "missing" if _is_missing(value) else _format(_feature(name), value)
