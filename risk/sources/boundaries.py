"""Tract boundaries from GeoJSON or GeoPackage: they define which tracts exist."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
from pyogrio.errors import DataSourceError, DataLayerError

from risk.settings import BoundariesSource, RegionSettings
from risk.sources._tables import ProblemLog, normalise_geoids

CRS = "EPSG:4326"


def load_boundaries(cfg: BoundariesSource, region: RegionSettings, log: ProblemLog) -> gpd.GeoDataFrame | None:
    """Tracts of the region as a GeoDataFrame indexed by GEOID (columns ``name``, ``geometry``)."""
    path = cfg.path
    try:
        frame = gpd.read_file(path, layer=cfg.layer, engine="pyogrio")
    except (DataSourceError, DataLayerError, ValueError, OSError) as e:
        reason = str(e).splitlines()[0].split(";")[0].replace(f"'{path}' ", "")
        log.add(path, f"cannot read as GeoJSON/GeoPackage: {reason}")
        return None
    if frame.empty:
        log.add(path, "no features in the file")
        return None
    if cfg.geoid_column not in frame.columns:
        log.add(path, f"required column is missing (columns: {', '.join(map(str, frame.columns))})",
                column=cfg.geoid_column)
        return None
    geoids, bad = normalise_geoids(frame[cfg.geoid_column])
    for i in np.flatnonzero(bad)[:5]:
        log.add(path, f"'{frame[cfg.geoid_column].iloc[i]}' is not an 11-digit tract GEOID",
                line=int(i) + 1, column=cfg.geoid_column)
    if frame.crs is None:
        log.add(path, f"no coordinate reference system; assuming {CRS}", severity="warning")
        frame = frame.set_crs(CRS)
    frame = frame.to_crs(CRS)
    name = frame[cfg.name_column].astype("string") if cfg.name_column in frame.columns else geoids
    out = gpd.GeoDataFrame({"geoid": geoids, "name": name}, geometry=frame.geometry.values, crs=CRS)
    empty = out.geometry.isna() | out.geometry.is_empty
    for i in np.flatnonzero(empty.to_numpy())[:5]:
        log.add(path, "feature has no geometry", line=int(i) + 1, column="geometry")
    invalid = ~empty & ~out.geometry.is_valid
    if invalid.any():
        log.add(path, f"{int(invalid.sum())} invalid geometries were repaired (make_valid)", severity="warning")
        out.loc[invalid, "geometry"] = out.geometry[invalid].make_valid()
    dup = out["geoid"].duplicated(keep="first") & out["geoid"].notna()
    for i in np.flatnonzero(dup.to_numpy())[:5]:
        log.add(path, f"GEOID {out['geoid'].iloc[i]} appears more than once", line=int(i) + 1,
                column=cfg.geoid_column)
    keep = out["geoid"].notna() & ~empty & ~dup & out["geoid"].str[:5].isin(region.county_fips)
    out = out[keep.to_numpy()]
    if out.empty:
        log.add(path, f"no tracts in the region's counties {list(region.county_fips)}")
        return None
    return out.set_index("geoid").sort_index()

