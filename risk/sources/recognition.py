"""Recognising a city's files by their header: which family and format each is, and what it says about the region.

`risk init` reads a folder with this and drafts a configuration. Only the header and the first rows are read:
a statewide file is not parsed here (`risk validate` does that, with every check).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from risk.sources._tables import normalise_geoids

GEO_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp")
"""Files geopandas reads as tract boundaries."""
TABLE_SUFFIXES = (".csv", ".csv.gz", ".txt")
SAMPLE_ROWS = 2000
"""Rows read to find a file's GEOIDs (their counties) and a WKT column."""
_VINTAGE = re.compile(r"^(?:pop|hh|rhu|ohu|hu|white|mhval|mrent|hinc|per_all_li|all_li_count|per_nonwhite)_(\d\d)$")
_INCOME_BIN = re.compile(r"^I_\d+_\d\d$")
_WKT = re.compile(r"^\s*(?:MULTI)?POLYGON\s*\(", re.IGNORECASE)
_MONTH = re.compile(r"^\d{4}-\d\d(?:-\d\d)?$")
_GEOID_COLUMNS = ("GEOID", "geoid", "GEOID10", "GEOID20", "FIPS", "fips", "GEO2010", "TRACT")


@dataclass(frozen=True)
class Recognised:
    """One file and what it is: its family, its format and what the configuration needs to read it."""

    path: Path
    family: str
    """``boundaries``, ``demographics``, ``evictions``, ``rent``, ``crosswalk`` (HUD ZIP to tract) or ``permits``."""
    format: str
    """The format's name as the settings spell it (``udp_database``, ``zillow_tract`` ...), or the file's kind."""
    counties: frozenset[str] = frozenset()
    """The 5-digit counties of the tract GEOIDs in its first rows."""
    suffixes: tuple[str, ...] = ()
    """The vintage suffixes of a demographic file's columns (``90``, ``00``, ``18`` ...)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Columns the configuration names: ``geoid``, ``name``, ``geometry``."""


def recognise_folder(folder: Path) -> tuple[list[Recognised], list[Path]]:
    """Every file of ``folder`` (not its subfolders): those recognised, and those that are not."""
    found, unknown = [], []
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.suffix.lower() in (".shx", ".dbf", ".prj", ".cpg", ".yaml", ".yml", ".md", ".xml"):
            continue  # a shapefile's parts, this project's own files, notes
        item = recognise(path)
        (found if item is not None else unknown).append(item or path)
    return found, unknown  # type: ignore[return-value]


def recognise(path: Path) -> Recognised | None:
    """What the file is, from its header; None when it is none of the formats the product reads."""
    name = path.name.lower()
    if name.endswith(GEO_SUFFIXES):
        return _geo(path)
    if name.endswith(TABLE_SUFFIXES):
        try:
            sample = pd.read_csv(path, dtype=str, nrows=SAMPLE_ROWS, keep_default_na=False)
        except (ValueError, UnicodeDecodeError, OSError, pd.errors.ParserError):
            return None
        return _table(path, sample)
    return None


def _geo(path: Path) -> Recognised | None:
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        fields = [str(f) for f in pyogrio.read_info(path)["fields"]]
        frame = pyogrio.read_dataframe(path, read_geometry=False, max_features=SAMPLE_ROWS)
    except (DataSourceError, DataLayerError, ValueError, OSError):
        return None
    geoid = next((c for c in _GEOID_COLUMNS if c in fields), None)
    if geoid is None:
        return None
    columns = {"geoid": geoid, **({"name": "NAME"} if "NAME" in fields else {})}
    return Recognised(path, "boundaries", path.suffix.lower().lstrip("."), _counties(frame[geoid]), (), columns)


def _table(path: Path, sample: pd.DataFrame) -> Recognised | None:
    cols = set(sample.columns)
    if {"GEOID", "year", "eviction-filings"} <= cols:
        return Recognised(path, "evictions", "evictionlab", _counties(sample["GEOID"]))
    if {"GEO2010", "date.home"} <= cols:
        return Recognised(path, "rent", "zillow_tract", _counties(sample["GEO2010"]))
    if {"ZIP", "TRACT", "RES_RATIO"} <= cols:
        return Recognised(path, "crosswalk", "hud_zip_tract", _counties(sample["TRACT"]))
    if "RegionName" in cols and any(_MONTH.match(str(c)) for c in cols):
        return Recognised(path, "rent", "zillow_zip")
    if "PermitNum" in cols or "Application/Permit Number" in cols:
        return Recognised(path, "permits", "seattle_sdci" if "PermitNum" in cols else "seattle_legacy")
    suffixes = tuple(sorted({m.group(1) for c in cols if (m := _VINTAGE.match(str(c)))}, key=_year))
    geoid = next((c for c in _GEOID_COLUMNS if c in cols), None)
    wkt = next((c for c in sample.columns if sample[c].head(20).str.match(_WKT).any()), None)
    if wkt is not None and geoid is not None:
        return Recognised(path, "boundaries", "wkt", _counties(sample[geoid]), (),
                          {"geoid": geoid, "geometry": str(wkt), **({"name": "NAME"} if "NAME" in cols else {})})
    if suffixes and geoid is not None:
        if "typ_cat" in cols or "typology" in cols:
            kind = "udp_typology_output"
        elif any(_INCOME_BIN.match(str(c)) for c in cols):
            kind = "census_tables"
        else:
            kind = "udp_database"
        return Recognised(path, "demographics", kind, _counties(sample[geoid]), suffixes, {"geoid": geoid})
    return None


def _counties(values: pd.Series) -> frozenset[str]:
    geoids, _ = normalise_geoids(values.astype("string"))
    return frozenset(str(g)[:5] for g in geoids.dropna())


def _year(suffix: str) -> int:
    """``90`` is 1990 and ``18`` is 2018: suffixes sort by the year they stand for."""
    return 1900 + int(suffix) if int(suffix) >= 50 else 2000 + int(suffix)


@dataclass(frozen=True)
class KnownVintage:
    """A Census/ACS release a column suffix stands for, as a vintage entry of the settings needs it."""

    suffix: str
    label: str
    released: str
    next_release: str | None = None
    medians_reliable: bool = True
    shares_over_one: str | None = None


_ACS_RELEASED = {2009: "2010-12-14", 2010: "2011-12-08", 2011: "2012-12-06", 2012: "2013-12-17", 2013: "2014-12-04",
                 2014: "2015-12-03", 2015: "2016-12-08", 2016: "2017-12-07", 2017: "2018-12-06", 2018: "2019-12-19",
                 2019: "2020-12-10", 2020: "2022-03-17", 2021: "2022-12-08", 2022: "2023-12-07", 2023: "2024-12-12"}
"""Publication dates of the ACS 5-year estimates, by their last year (U.S. Census Bureau release schedules)."""


def known_vintage(suffix: str, newest: bool = False) -> KnownVintage | None:
    """The release a suffix stands for: ``90`` and ``00`` the decennial censuses (UDP crosswalks them to 2010
    tracts, so their medians are not used), ``09`` to ``23`` the ACS 5-year estimates ending that year. The
    newest vintage gets its successor's release date, so that it is not called stale while it is the newest."""
    year = _year(suffix)
    if year == 1990:
        return KnownVintage(suffix, "Census 1990", "1992-08-01", None, False, "drop")
    if year == 2000:
        return KnownVintage(suffix, "Census 2000", "2002-08-01", None, False)
    if year not in _ACS_RELEASED:
        return None
    following = _ACS_RELEASED.get(year + 1, f"{int(_ACS_RELEASED[year][:4]) + 1}-12-15")
    return KnownVintage(suffix, f"ACS {year - 4}-{year}", _ACS_RELEASED[year], following if newest else None)
