"""Tract boundaries from GeoJSON, GeoPackage, shapefile or a WKT column: they define which tracts exist.

Without boundaries the tracts are those the other sources name (:func:`tracts_without_boundaries`).

A statewide file (a Census cartographic-boundary shapefile, ``cb_2018_53_tract_500k.shp``) is cut to the
region's counties; a shapefile's ``.shx`` and ``.dbf`` must lie beside it, and its ``.prj`` gives the CRS.

Coordinates are checked against the CRS the file declares before anything
projects them: projected values read as degrees (or degrees as metres) would
otherwise pass here and fail later with a traceback far from the cause.
"""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from pyproj.exceptions import ProjError

from risk.core.settings import BoundariesSource, RegionSettings
from risk.sources._bounded import ReadLimits, Refused, check_size
from risk.sources._tables import ProblemLog, normalise_geoids
from risk.sources.family import Codec, Context, Family

CRS = "EPSG:4326"

_US_AREAS = ((-180.0, 17.0, -64.0, 72.0), (172.0, 51.0, 180.0, 53.5), (144.0, 13.0, 146.5, 21.0),
             (-171.5, -15.0, -168.0, -10.5))
"""Where census tracts can lie, as (west, south, east, north) in degrees: the states, DC, Puerto Rico and the
Virgin Islands; the Aleutians west of the antimeridian; Guam and the Northern Marianas; American Samoa."""

_AREA_MARGIN = 1.0
"""Degrees a projected file's extent may stray beyond its CRS's area of use (zones are used past their edges)."""

Bounds = tuple[float, float, float, float]

_SHAPEFILE_PARTS = (".shx", ".dbf")
"""Files a shapefile needs beside its ``.shp``: the shape index and the attributes (the ``.prj`` is optional: without
it the CRS is judged from the coordinates, as for any file without one)."""


def load_boundaries(cfg: BoundariesSource, region: RegionSettings, log: ProblemLog,
                    encoding: str = "utf-8") -> gpd.GeoDataFrame | None:
    """Tracts of the region as a GeoDataFrame indexed by GEOID (columns ``name``, ``geometry``)."""
    path = cfg.path
    try:
        _check_files(path, log.limits)
        frame = (_read_wkt(cfg, encoding, log) if cfg.geometry_column is not None
                 else gpd.read_file(path, layer=cfg.layer, engine="pyogrio"))
    except Refused as e:
        log.add(path, e.message)
        return None
    except (DataSourceError, DataLayerError, ValueError, OSError) as e:
        reason = str(e).splitlines()[0].split(";")[0].replace(f"'{path}' ", "")
        log.add(path, f"cannot read as GeoJSON, GeoPackage or shapefile: {reason}")
        return None
    if frame is None:
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
    frame = _in_degrees(frame, path, log)
    if frame is None:
        return None
    name = (frame[cfg.name_column].astype("string") if cfg.name_column in frame.columns
            else geoids.map(tract_number, na_action="ignore").astype("string"))
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
    keep = (out["geoid"].notna() & ~empty & ~dup & out["geoid"].str[:5].isin(region.county_fips)
            & ~out["geoid"].isin(region.ignore_geoids))
    out = out[keep.to_numpy()]
    if out.empty:
        log.add(path, f"no tracts in the region's counties {list(region.county_fips)}")
        return None
    return out.set_index("geoid").sort_index()


def tract_number(geoid: str) -> str:
    """The tract's number as the Census writes it: ``53033980021`` is tract 9800.21, ``53033005600`` tract 56."""
    code = geoid[5:]
    whole, part = code[:4].lstrip("0") or "0", code[4:]
    return whole if part == "00" else f"{whole}.{part}"


def tracts_without_boundaries(geoids: pd.Index) -> gpd.GeoDataFrame:
    """The tracts the sources name, for a region configured without boundaries: named by their number, with no
    geometry (spatial features and the map leave them out)."""
    index = pd.Index(sorted(set(geoids)), name="geoid", dtype="object")
    names = pd.Series([tract_number(g) for g in index], index=index, dtype="string")
    return gpd.GeoDataFrame({"name": names}, geometry=gpd.GeoSeries([None] * len(index), index=index, crs=CRS),
                            crs=CRS)


def _read_wkt(cfg: BoundariesSource, encoding: str, log: ProblemLog) -> gpd.GeoDataFrame | None:
    """A table whose ``geometry_column`` holds WKT polygons, as a GeoDataFrame in its declared CRS."""
    column = str(cfg.geometry_column)
    try:
        frame = pd.read_csv(cfg.path, dtype=str, encoding=encoding, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        log.add(cfg.path, f"cannot read as CSV: {str(e).splitlines()[0]}")
        return None
    if column not in frame.columns:
        log.add(cfg.path, f"required column is missing (columns: {', '.join(map(str, frame.columns))})",
                column=column)
        return None
    text = frame[column].str.strip()
    shapes = shapely.from_wkt(text.where(text != "").to_numpy(dtype=object), on_invalid="ignore")
    for i in np.flatnonzero((text != "").to_numpy() & pd.isna(shapes))[:5]:  # an empty cell is reported later
        log.add(cfg.path, f"not WKT geometry: '{text.iloc[i][:60]}'", line=int(i) + 2, column=column)
    return gpd.GeoDataFrame(frame.drop(columns=column), geometry=gpd.GeoSeries(shapes, index=frame.index),
                            crs=cfg.crs)


def _check_files(path: Path, limits: ReadLimits) -> None:
    """Refuse a file over the size limit, or a shapefile whose companion files are missing or over it."""
    check_size(path, limits)
    if path.suffix.lower() != ".shp":
        return
    for suffix in _SHAPEFILE_PARTS:
        part = next((p for p in (path.with_suffix(suffix), path.with_suffix(suffix.upper())) if p.exists()), None)
        if part is None:
            raise Refused(f"a shapefile is several files side by side, and {path.stem}{suffix} is missing: copy "
                          f"the .shp, .shx, .dbf and .prj of {path.stem} together")
        try:
            check_size(part, limits)
        except Refused as e:
            raise Refused(f"{part.name}: {e.message}") from e


def _in_degrees(frame: gpd.GeoDataFrame, path: Path, log: ProblemLog) -> gpd.GeoDataFrame | None:
    """The features in EPSG:4326, or None once the reason their coordinates cannot be trusted is recorded."""
    bounds = _bounds(frame)
    if not all(map(math.isfinite, bounds)):
        return frame.set_crs(CRS) if frame.crs is None else frame.to_crs(CRS)  # no geometry: reported later
    if frame.crs is None:
        if not _lonlat(bounds):
            log.add(path, f"no coordinate reference system, and the coordinates ({_extent(bounds)}) are not "
                    "longitude/latitude: the file looks projected; declare its CRS (for example "
                    "ogr2ogr -a_srs EPSG:<code> out.gpkg in.geojson)")
            return None
        log.add(path, f"no coordinate reference system; the coordinates ({_extent(bounds)}) look like "
                f"longitude/latitude, so {CRS} is assumed", severity="warning")
        return _in_region(frame.set_crs(CRS), bounds, f"assumed {CRS}", path, log)
    problem = _implausible(frame.crs, bounds)
    if problem is not None:
        log.add(path, f"declares {_name(frame.crs)}, but {problem}; declare the CRS the coordinates are in")
        return None
    return _in_region(frame.to_crs(CRS), bounds, f"declared {_name(frame.crs)}", path, log)


def _implausible(crs: ProjCRS, bounds: Bounds) -> str | None:
    """Why coordinates with these bounds cannot be in ``crs``, or None when they can."""
    if crs.is_geographic:
        if _lonlat(bounds):
            return None
        return (f"the coordinates ({_extent(bounds)}) are outside longitude -180..180 / latitude -90..90 "
                "(they look projected)")
    degrees = _to_degrees(crs, bounds)
    if degrees is None or not _lonlat(degrees):
        return f"the coordinates ({_extent(bounds)}) do not convert to longitude/latitude in it"
    area = crs.area_of_use
    if area is None:
        return None
    allowed = (area.west - _AREA_MARGIN, area.south - _AREA_MARGIN, area.east + _AREA_MARGIN,
               area.north + _AREA_MARGIN)
    if area.west > area.east or _overlap(degrees, allowed):  # an area across the antimeridian: not judged
        return None
    where = area.name if len(area.name) <= 80 else area.name[:77] + "..."
    return (f"the coordinates ({_extent(bounds)}) lie at {_extent(degrees, True)}, outside its area of use "
            f"({where}: {_extent((area.west, area.south, area.east, area.north), True)})")


def _in_region(frame: gpd.GeoDataFrame, bounds: Bounds, crs: str, path: Path,
               log: ProblemLog) -> gpd.GeoDataFrame | None:
    """The frame (in degrees), unless it lies nowhere near the United States, where tracts are."""
    degrees = _bounds(frame)
    if all(map(math.isfinite, degrees)) and any(_overlap(degrees, area) for area in _US_AREAS):
        return frame
    log.add(path, f"the coordinates ({_extent(bounds)}, {crs}) lie at {_extent(degrees, True)}, "
            "nowhere near the United States, where census tracts are: the file's CRS is probably not the one "
            "its coordinates are in")
    return None


def _bounds(frame: gpd.GeoDataFrame) -> Bounds:
    west, south, east, north = (float(v) for v in frame.total_bounds)
    return west, south, east, north


def _to_degrees(crs: ProjCRS, bounds: Bounds) -> Bounds | None:
    try:
        out = Transformer.from_crs(crs, CRS, always_xy=True).transform_bounds(*bounds, densify_pts=21)
    except ProjError:
        return None
    return out if all(map(math.isfinite, out)) else None


def _lonlat(b: Bounds) -> bool:
    return -180 <= b[0] <= b[2] <= 180 and -90 <= b[1] <= b[3] <= 90


def _overlap(a: Bounds, b: Bounds) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _extent(b: Bounds, degrees: bool = False) -> str:
    if degrees:
        return f"longitude {b[0]:.4g} to {b[2]:.4g}, latitude {b[1]:.4g} to {b[3]:.4g}"
    return f"x {b[0]:,.6g} to {b[2]:,.6g}, y {b[1]:,.6g} to {b[3]:,.6g}"


def _name(crs: ProjCRS) -> str:
    """``EPSG:2926 (NAD83(HARN) / Washington North (ftUS))``, or the CRS's name when it has no code."""
    authority = crs.to_authority()
    return f"{authority[0]}:{authority[1]} ({crs.name})" if authority else crs.name


def _load(c: Context[BoundariesSource]) -> gpd.GeoDataFrame | None:
    return load_boundaries(c.section, c.region, c.log, c.encoding)


def _pack(tracts: gpd.GeoDataFrame | None) -> tuple[dict[str, pd.DataFrame], object]:
    if tracts is None:
        return {}, None
    shapes = pd.Series(shapely.to_wkb(tracts.geometry.values), index=tracts.index, dtype="object")
    return {"tracts": pd.DataFrame(tracts.drop(columns=tracts.geometry.name)).assign(geometry=shapes)}, None


def _unpack(frames: dict[str, pd.DataFrame], _: object) -> gpd.GeoDataFrame | None:
    if "tracts" not in frames:
        return None
    frame = frames["tracts"]
    shapes = gpd.GeoSeries(shapely.from_wkb(frame["geometry"].to_numpy()), index=frame.index, crs=CRS)
    return gpd.GeoDataFrame(frame.drop(columns="geometry"), geometry=shapes, crs=CRS)


FAMILY: Family[BoundariesSource] = Family(
    name="boundaries",
    load=_load,
    section=lambda settings: settings.sources.boundaries,  # None: the tracts come from the other sources
    files=lambda cfg: [cfg.path],
    attribution="Tract boundaries: U.S. Census Bureau cartographic boundary files (public domain).",
    # kept as WKB while the file is unchanged: a statewide file is parsed once, not by every region every week
    codec=Codec(_pack, _unpack),
    series=False,
    always=True,
    credit=False,  # public domain: nothing to credit in an e-mail
)
