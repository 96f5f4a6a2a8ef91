"""Baselines the model must beat, scored on exactly the same tracts and origins.

- ``mean_reversion``: long-run level against the recent one (the strongest naive ranking for change outcomes);
- ``persistence``: the tract's recent value of the outcome's own measure;
- ``udp_typology``: the Urban Displacement Project typology computed point-in-time, as a ranking;
- ``logistic``: logistic regression on the same features (``risk.model.gbm.fit_logistic``, which is also the prior
  LightGBM boosts from).

Rank baselines become probabilities by Platt scaling on the training origins,
so that their Brier scores are comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from risk.model.gbm import Calibrator
from risk.outcomes.base import Origin, Outcome
from risk.sources import Sources

RANK_BASELINES = ("mean_reversion", "persistence", "udp_typology", "low_income_share")
BASELINES = ("logistic", *RANK_BASELINES)

RankFn = Callable[[Sources, Origin], "pd.Series | None"]


def predict_logistic(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """Probabilities from :func:`risk.model.gbm.fit_logistic`."""
    return model.predict_proba(X[model.feature_names_in_used])[:, 1]  # type: ignore[attr-defined]


def rank_functions(outcome: Outcome) -> dict[str, RankFn]:
    """The rank baselines of an outcome; each returns None where the outcome cannot support it."""
    from risk.outcomes.typology.vintages import typology_scores

    return {
        "mean_reversion": outcome.mean_reversion,
        "persistence": outcome.persistence,
        "udp_typology": lambda sources, origin: typology_scores(sources, origin.as_of),
        "low_income_share": lambda sources, origin: low_income_share(sources, origin.as_of),
    }


def low_income_share(sources: Sources, as_of: date) -> pd.Series | None:
    """The tract's low-income household share in the newest vintage published by ``as_of`` (a higher share ranks
    higher): the level planners read off a map, and the UDP's own screen for vulnerable tracts."""
    d = sources.demographics
    rows = d[(d["measure"] == "low_income_share") & (d["released"] <= pd.Timestamp(as_of))]
    if rows.empty:
        return None
    newest = rows[rows["released"] == rows["released"].max()]
    return newest.drop_duplicates("geoid", keep="last").set_index("geoid")["value"].astype("float64")


def calibrate_rank(train_scores: pd.Series, train_y: pd.Series) -> Calibrator | None:
    """Platt scaling of a rank score on training rows; None when the score is absent there."""
    both = train_scores.notna() & train_y.notna()
    if both.sum() < 10 or train_y[both].nunique() < 2:
        return None
    return Calibrator.fit(train_scores[both].to_numpy(dtype="float64"), train_y[both].to_numpy(dtype=int))
