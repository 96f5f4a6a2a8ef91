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


def score_tracts(model: TrainedModel, features: pd.DataFrame, previous: pd.DataFrame, cfg: TierSettings
                 ) -> pd.DataFrame:
    """Score every tract; changes are against ``previous`` (empty on the first run)."""
    probability = pd.Series(model.predict(features), index=features.index, name="probability")
    percentile = probability.rank(method="average", pct=True)
    table = pd.DataFrame({"probability": probability, "percentile": percentile,
                          "tier": tier_of(percentile, cfg)}, index=features.index)
    if previous.empty:
        table["probability_change"] = np.nan
        table["percentile_change"] = np.nan
    else:
        table["probability_change"] = probability - previous["probability"].reindex(features.index)
        table["percentile_change"] = 100 * (percentile - previous["percentile"].reindex(features.index))
    table.index.name = "geoid"
    return table
