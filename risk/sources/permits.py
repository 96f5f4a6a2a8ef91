"""Socrata building-permit exports, classified and geocoded to tracts.

Two City of Seattle schemas are understood: the legacy "Building Permits"
export (``Application/Permit Number``, ``Action Type``, ``Value``...) and the
SDCI dataset ``76t5-zqzr`` (``PermitNum``, ``PermitTypeDesc``,
``HousingUnitsAdded``, ``EstProjectCost``...). Each file also says which
measures it can report: a legacy file knows nothing of housing units, so
unit features stay NaN for the years only it covers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from risk.core.settings import PermitFile, PermitsSource
from risk.sources._tables import (
    ProblemLog,
    Table,
    check_duplicates,
    check_range,
    display_path,
    normalise_geoids,
    read_table,
    to_date,
    to_number,
)
from risk.sources.family import Codec, Context, Family, known_rows

PERMIT_COLUMNS = ["permit_id", "geoid", "issued", "kind", "units_added", "units_removed", "value", "file"]
KINDS = ("new", "demolition", "addition_alteration", "other")
PERMIT_WINDOWS = (12, 36)
"""Months of the permit features' windows: the features' rule, kept beside the Dask row selection that must
keep the longest one."""


@dataclass(frozen=True)
class _Schema:
    name: str
    id: str
    issued: str
    value: str
    units_added: str | None
    units_removed: str | None
    latitude: str = "Latitude"
    longitude: str = "Longitude"


_LEGACY = _Schema("seattle_legacy", "Application/Permit Number", "Issue Date", "Value", None, None)
_SDCI = _Schema("seattle_sdci", "PermitNum", "IssuedDate", "EstProjectCost", "HousingUnitsAdded", "HousingUnitsRemoved")
_SCHEMAS = {s.name: s for s in (_LEGACY, _SDCI)}


@dataclass(frozen=True)
class PermitFileInfo:
    """What one file can tell: its measures (units need a units column)."""

    file: str
    schema: str
    reports_units: bool
    complete_from: pd.Timestamp | None = None


def _detect(spec: PermitFile, table_columns: list[str]) -> _Schema | None:
    if spec.schema_ != "auto":
        return _SCHEMAS[spec.schema_]
    for schema in (_SDCI, _LEGACY):
        if schema.id in table_columns:
            return schema
    return None


def _kind(frame: pd.DataFrame, schema: _Schema) -> pd.Series:
    if schema is _LEGACY:
        action = frame.get("Action Type", pd.Series("", index=frame.index)).astype("string").str.upper().str.strip()
        ptype = frame.get("Permit Type", pd.Series("", index=frame.index)).astype("string").str.upper().str.strip()
        conditions = [ptype.eq("DEMOLITION") | action.eq("DEMOLITION"), action.eq("NEW"), action.isin(["ADD/ALT", "ALTER"])]
    else:
        desc = frame.get("PermitTypeDesc", pd.Series("", index=frame.index)).astype("string").str.lower().str.strip()
        conditions = [desc.eq("demolition"), desc.eq("new"), desc.eq("addition/alteration")]
    kind = np.select([c.fillna(False).to_numpy(dtype=bool) for c in conditions],
                     ["demolition", "new", "addition_alteration"], "other")
    return pd.Series(kind, index=frame.index, dtype="string")


def _coordinates(table: Table, schema: _Schema, log: ProblemLog) -> tuple[pd.Series, pd.Series]:
    lat = to_number(table, schema.latitude, log)
    lon = to_number(table, schema.longitude, log)
    check_range(table, lat, schema.latitude, log, low=-90, high=90, what="latitude")
    check_range(table, lon, schema.longitude, log, low=-180, high=180, what="longitude")
    missing = int((lat.isna() | lon.isna()).sum())
    if missing:
        log.add(table.path, f"{missing} permits have no coordinates and cannot be placed in a tract",
                column=schema.latitude, severity="warning")
    return lat, lon


def _load_file(spec: PermitFile, encoding: str, log: ProblemLog,
               today: date | None) -> tuple[pd.DataFrame, PermitFileInfo] | None:
    probe = read_table(spec.path, log, encoding=encoding, required=())
    if probe is None:
        return None
    schema = _detect(spec, list(probe.frame.columns))
    if schema is None:
        log.add(spec.path, f"unknown permit schema: expected a '{_SDCI.id}' or '{_LEGACY.id}' column "
                "(set the file's `schema` in config.yaml)", line=1)
        return None
    required = [c for c in (schema.id, schema.issued, schema.value, schema.units_added, schema.units_removed,
                            schema.latitude, schema.longitude) if c]
    missing = [c for c in required if c not in probe.frame.columns]
    for c in missing:
        log.add(spec.path, f"required column for the {schema.name} schema is missing", line=1, column=c)
    if missing:
        return None
    table, f = probe, probe.frame
    issued = to_date(table, schema.issued, log, today=today)
    value = to_number(table, schema.value, log, thousands=True)
    check_range(table, value, schema.value, log, low=0.0, what="value")
    units = {}
    for key, column in (("units_added", schema.units_added), ("units_removed", schema.units_removed)):
        units[key] = to_number(table, column, log) if column else pd.Series(np.nan, index=f.index)
        if column:
            check_range(table, units[key], column, log, low=0.0, what="housing units")
    ids = f[schema.id].astype("string").str.strip()
    log.rows(table, ids.isna().to_numpy(), schema.id, lambda i: "permit number is empty")
    dup = check_duplicates(table, pd.DataFrame({schema.id: ids}), schema.id, log)
    lat, lon = _coordinates(table, schema, log)
    frame = pd.DataFrame({
        "permit_id": ids, "issued": issued, "kind": _kind(f, schema),
        "units_added": units["units_added"], "units_removed": units["units_removed"], "value": value,
        "lat": lat, "lon": lon, "file": str(spec.path),
    })
    frame = frame[~dup & ids.notna().to_numpy() & issued.notna().to_numpy()
                  & frame["lat"].between(-90, 90).to_numpy() & frame["lon"].between(-180, 180).to_numpy()]
    complete = pd.Timestamp(spec.complete_from) if spec.complete_from else None
    return frame, PermitFileInfo(str(spec.path), schema.name, schema.units_added is not None, complete)


def geocode(frame: pd.DataFrame, tracts: gpd.GeoDataFrame) -> pd.Series:
    """Tract GEOID of each point (point in polygon), NaN outside every tract."""
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(frame["lon"], frame["lat"]), index=frame.index,
                              crs="EPSG:4326")
    joined = gpd.sjoin(points, tracts[["geometry"]].reset_index(), how="left", predicate="within")
    joined = joined[~joined.index.duplicated(keep="first")]
    return joined["geoid"].reindex(frame.index).astype("string")


def _check_placed(frame: pd.DataFrame, tracts: gpd.GeoDataFrame, file: str, limit: float, log: ProblemLog) -> None:
    """An error when a file places most of its located permits outside every tract: its coordinates, not the
    city, are wrong (it would otherwise pass and silently zero the permit features)."""
    located = frame.dropna(subset=["lat", "lon"])
    if located.empty:
        return
    outside = float(located["geoid"].isna().mean())
    if outside <= limit:
        return
    swapped = located.rename(columns={"lat": "lon", "lon": "lat"})
    inside_if_swapped = float(geocode(swapped, tracts).notna().mean()) if swapped["lat"].between(-90, 90).all() \
        else 0.0
    hint = (f"; with latitude and longitude exchanged {inside_if_swapped:.0%} would lie inside: the two columns "
            "look swapped" if inside_if_swapped > 1 - limit else "; is this the region's file?")
    log.add(file, f"{outside:.0%} of {len(located):,} located permits lie outside every tract of the region "
            f"(sources.permits.max_outside_share is {limit:.0%}){hint}")


@dataclass(frozen=True)
class Permits:
    """Geocoded permits, what each file reports, and the jurisdiction's tracts if configured."""

    records: pd.DataFrame
    files: tuple[PermitFileInfo, ...]
    coverage: frozenset[str] | None


def _coverage(cfg: PermitsSource, tracts: gpd.GeoDataFrame, encoding: str, log: ProblemLog) -> frozenset[str] | None:
    if cfg.coverage_tracts is None:
        return None
    table = read_table(cfg.coverage_tracts, log, encoding=encoding, required=("GEOID",), dtype={"GEOID": str})
    if table is None:
        return None
    geoids, bad = normalise_geoids(table.frame["GEOID"])
    log.rows(table, bad, "GEOID", lambda i: f"'{table.value('GEOID', i)}' is not an 11-digit tract GEOID")
    # a list shared by several regions names other counties' tracts too: only this region's must be known
    counties = set(tracts.index.str[:5])
    unknown = geoids.notna() & geoids.str[:5].isin(counties) & ~geoids.isin(tracts.index)
    log.rows(table, unknown.to_numpy(), "GEOID", lambda i: f"GEOID {geoids.iloc[i]} is not in the boundaries")
    return frozenset(geoids.dropna())


def load_permits(cfg: PermitsSource, tracts: gpd.GeoDataFrame, encoding: str, log: ProblemLog,
                 today: date | None = None) -> Permits | None:
    """Every configured export, classified and geocoded; points outside the region are dropped."""
    parts, infos = [], []
    for spec in cfg.files:
        loaded = _load_file(spec, encoding, log, today)
        if loaded is not None:
            parts.append(loaded[0])
            infos.append(loaded[1])
    coverage = _coverage(cfg, tracts, encoding, log)
    if not parts:
        return None
    frame = pd.concat(parts, ignore_index=True)
    frame["geoid"] = geocode(frame, tracts)
    for info in infos:
        _check_placed(frame[frame["file"] == info.file], tracts, info.file, cfg.max_outside_share, log)
    outside = int(frame["geoid"].isna().sum() - (frame["lat"].isna() | frame["lon"].isna()).sum())
    if outside > 0:
        log.add(", ".join(display_path(i.file) for i in infos), f"{outside} permits lie outside every tract of the region "
                "and are dropped", severity="warning")
    frame = frame[frame["geoid"].notna()]
    return Permits(records=frame[PERMIT_COLUMNS].reset_index(drop=True), files=tuple(infos), coverage=coverage)


def _load(c: Context[PermitsSource]) -> Permits | None:
    if c.tracts is None or not c.tracts.geometry.notna().any():
        c.log.add(c.section.files[0].path if c.section.files else "sources.permits",
                  "permits are placed in tracts by their coordinates, and this region has no tract boundaries "
                  "(sources.boundaries): configure boundaries or leave permits out")
        return None
    return load_permits(c.section, c.tracts, c.encoding, c.log, c.today)


def _into(value: Permits | None) -> dict[str, object]:
    return {} if value is None else {"permits": value.records, "permit_files": value.files,
                                     "permit_coverage": value.coverage}


def _pack(v: Permits | None) -> tuple[dict[str, pd.DataFrame], Any]:
    if v is None:
        return {}, None
    files = [{**dataclasses.asdict(f), "complete_from": f.complete_from.isoformat() if f.complete_from else None}
             for f in v.files]
    return {"records": v.records}, {"files": files, "coverage": None if v.coverage is None else sorted(v.coverage)}


def _file_info(item: dict[str, Any]) -> PermitFileInfo:
    complete = item["complete_from"]
    return PermitFileInfo(item["file"], item["schema"], item["reports_units"],
                          pd.Timestamp(complete) if complete else None)


def _unpack(frames: dict[str, pd.DataFrame], note: Any) -> Permits | None:
    if not frames:
        return None
    coverage = None if note["coverage"] is None else frozenset(note["coverage"])
    return Permits(frames["records"], tuple(_file_info(f) for f in note["files"]), coverage)


def _rows(part: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """Permits of the longest window, plus each file's first and last and each tract's first record.

    Rows outside the window are never counted; they only date a file (is it
    complete at the window's start, still fresh?) and show that a tract has
    permits at all. Any partition's extremes include the global ones.
    """
    start = t - pd.DateOffset(months=max(PERMIT_WINDOWS))
    part = known_rows(part, "issued", t)
    issued = part["issued"]
    by_file = issued.groupby(part["file"])
    keep = (issued > start) | ~part["geoid"].duplicated()
    keep |= issued.eq(by_file.transform("min")) | issued.eq(by_file.transform("max"))
    return part[keep]


FAMILY: Family[PermitsSource] = Family(
    name="permits",
    load=_load,
    section=lambda settings: settings.sources.permits,
    files=lambda cfg: [f.path for f in cfg.files],
    side_files=lambda cfg: [cfg.coverage_tracts] if cfg.coverage_tracts else [],
    attribution="Building permits: City of Seattle open data (data.seattle.gov).",
    known="issued",
    max_age=lambda cfg: cfg.max_gap_days,
    coverage="cov_permits",
    codec=Codec(_pack, _unpack),
    rows=_rows,
    into=_into,
    placed=True,
)
