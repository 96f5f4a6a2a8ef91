"""Contiguity between tracts, from their geometry."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd


def neighbours(tracts: gpd.GeoDataFrame, tolerance_m: float = 5.0) -> pd.DataFrame:
    """Queen-contiguous pairs (``geoid``, ``neighbour``), both directions, no self pairs.

    Cartographic boundary files are generalised, so shared edges may not meet
    exactly; polygons closer than ``tolerance_m`` metres count as touching. A tract without geometry (a region
    configured without boundaries) has no neighbour, so its spatial lags are missing.
    """
    shaped = tracts.loc[tracts.geometry.notna().to_numpy() & ~tracts.geometry.is_empty.to_numpy(), ["geometry"]]
    if shaped.empty:
        return pd.DataFrame({"geoid": pd.Series(dtype="object"), "neighbour": pd.Series(dtype="object")})
    projected = shaped.to_crs(shaped.estimate_utm_crs())
    pairs = gpd.sjoin(projected.reset_index(names="geoid"), projected.reset_index(names="neighbour"),
                      how="inner", predicate="dwithin", distance=tolerance_m)
    pairs = pairs[pairs["geoid"] != pairs["neighbour"]]
    return pairs[["geoid", "neighbour"]].sort_values(["geoid", "neighbour"], ignore_index=True)


def spatial_lag(values: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Mean of each column over a tract's neighbours, ignoring neighbours with missing values."""
    joined = pairs.join(values, on="neighbour")
    lagged = joined.drop(columns="neighbour").groupby("geoid").mean(numeric_only=True)
    return lagged.reindex(values.index).astype("float64")


def isolated(tracts: gpd.GeoDataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """GEOIDs with no neighbour (islands)."""
    return np.setdiff1d(tracts.index.to_numpy(), pairs["geoid"].unique())
