"""Tract scores: probability, percentile rank, tier and change since the previous run."""

from __future__ import annotations

import numpy as np
import pandas as pd

from risk.core.settings import TierSettings
from risk.model.gbm import TrainedModel

TIERS = ("high", "elevated", "watch", "low")


def tier_of(percentile: pd.Series, cfg: TierSettings) -> pd.Series:
    """Tier from the percentile rank (0-1] using the configured thresholds."""
    return pd.Series(np.select([percentile >= cfg.high, percentile >= cfg.elevated, percentile >= cfg.watch],
                               ["high", "elevated", "watch"], "low"), index=percentile.index, dtype="string")


def unranked_reasons(features: pd.DataFrame, cfg: TierSettings) -> pd.Series:
    """Why each tract is not ranked (missing where it is): too few people, households or renter households, or
    so many people per household that most live in group quarters. A tract without a census count is ranked:
    nothing says it is small."""
    reasons = pd.Series(pd.NA, index=features.index, dtype="string")
    if not {"population", "households", "renter_households"} <= set(features.columns):
        return reasons
    people, homes, renters = (features[c].astype("float64") for c in ("population", "households", "renter_households"))
    small = (people < cfg.min_population) | (homes < cfg.min_households) | (renters < cfg.min_renter_households)
    words = ("too small to score: " + people.map(_count, na_action="ignore").fillna("?") + " people, "
             + homes.map(_count, na_action="ignore").fillna("?") + " households, "
             + renters.map(_count, na_action="ignore").fillna("?") + " renter households")
    reasons[small.to_numpy()] = words[small]
    crowded = ~small & (homes > 0) & (people / homes > cfg.group_quarters_ratio)
    reasons[crowded.to_numpy()] = ("mostly group quarters (dormitories, prisons or barracks): "
                                   + people.map(_count) + " people in " + homes.map(_count) + " households")[crowded]
    return reasons


def _count(value: float) -> str:
    return f"{value:,.0f}"


def score_tracts(model: TrainedModel, features: pd.DataFrame, previous: pd.DataFrame, cfg: TierSettings
                 ) -> pd.DataFrame:
    """Score every tract; changes are against ``previous`` (empty on the first run). A tract that is not ranked
    (:func:`unranked_reasons`) keeps its probability but no percentile rank: it is ``low`` with percentile 0, its
    reason in ``unranked``, and no rank of another tract counts it."""
    probability = pd.Series(model.predict(features), index=features.index, name="probability")
    unranked = unranked_reasons(features, cfg)
    ranked = unranked.isna()
    percentile = probability[ranked].rank(method="average", pct=True).reindex(features.index).fillna(0.0)
    table = pd.DataFrame({"probability": probability, "percentile": percentile,
                          "tier": tier_of(percentile, cfg)}, index=features.index)
    if previous.empty:
        table["probability_change"] = np.nan
        table["percentile_change"] = np.nan
    else:
        table["probability_change"] = probability - previous["probability"].reindex(features.index)
        table["percentile_change"] = 100 * (percentile - previous["percentile"].reindex(features.index))
        if "unranked" in previous:  # a rank against no rank is not a change
            was_unranked = previous["unranked"].reindex(features.index).notna().to_numpy()
            table.loc[was_unranked | ~ranked.to_numpy(), "percentile_change"] = np.nan
        else:
            table.loc[~ranked.to_numpy(), "percentile_change"] = np.nan
    table["unranked"] = unranked
    table.index.name = "geoid"
    return table
