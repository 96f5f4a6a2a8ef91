"""Zillow rent and home-value indices, tract long format or public ZIP wide format.

Output is monthly and long: ``geoid, month, available, zhvi, zri``; a month's
value is usable from ``available`` (month end plus the publication lag).
ACS median gross rent, the always-available fallback, comes from the
demographic vintages instead.
"""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pandas as pd

from risk.core import clock
from risk.core.settings import RegionSettings, RentSource
from risk.sources._tables import (
    ProblemLog,
    check_duplicates,
    check_geoids,
    check_range,
    keep_in_region,
    read_table,
    to_date,
    to_number,
)
from risk.sources.family import Context, Family, known_rows

RENT_COLUMNS = ["geoid", "month", "available", "zhvi", "zri"]
RENT_CHANGE_YEARS = (1, 3, 5)
"""The years the rent and home-value change features look back from a tract's newest month: the features'
rule, kept beside the Dask row selection that must keep those months."""
RENT_LAG_MONTHS = (0, *(12 * k for k in RENT_CHANGE_YEARS))
"""Rent months a tract's features read: its newest, and the months of its changes."""
_DATE_COLUMN = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


def _month_end(dates: pd.Series) -> pd.Series:
    return (dates + pd.offsets.MonthEnd(0)).dt.normalize()


def load_zillow_tract(cfg: RentSource, region: RegionSettings, known: pd.Index | None, encoding: str,
                      log: ProblemLog, today: date | None = None) -> pd.DataFrame | None:
    """Tract long format: ``GEO2010, date.home (or date), ZHVI, ZRI``."""
    assert cfg.path is not None
    table = read_table(cfg.path, log, encoding=encoding, required=(), dtype={"GEO2010": str, "GEOID": str},
                       any_of=[("GEO2010", "GEOID"), ("date.home", "date"), ("ZHVI", "ZRI")])
    if table is None:
        return None
    f = table.frame
    gcol = "GEO2010" if "GEO2010" in f.columns else "GEOID"
    dcol = "date.home" if "date.home" in f.columns else "date"
    geoids = check_geoids(table, gcol, log)
    month = _month_end(to_date(table, dcol, log, today=today))
    values = {}
    for column in ("ZHVI", "ZRI"):
        if column in f.columns:
            values[column.lower()] = to_number(table, column, log)
            check_range(table, values[column.lower()], column, log, low=1.0, what="index value")
        else:
            values[column.lower()] = pd.Series(np.nan, index=f.index)
    keep = keep_in_region(table, geoids, gcol, known, region.county_fips, region.ignore_geoids, log)
    dup = check_duplicates(table, pd.DataFrame({gcol: geoids, dcol: month}), gcol, log)
    keep &= ~dup & geoids.notna().to_numpy() & month.notna().to_numpy()
    return _frame(geoids[keep], month[keep], values["zhvi"][keep], values["zri"][keep], cfg.available_after_days)


def _frame(geoids: pd.Series, month: pd.Series, zhvi: pd.Series, zri: pd.Series, lag: int) -> pd.DataFrame:
    out = pd.DataFrame({"geoid": geoids.to_numpy(), "month": month.to_numpy(),
                        "zhvi": zhvi.to_numpy(dtype="float64"), "zri": zri.to_numpy(dtype="float64")})
    out["available"] = out["month"] + pd.Timedelta(days=lag)
    out = out[out[["zhvi", "zri"]].notna().any(axis=1)]
    return out[RENT_COLUMNS].sort_values(["geoid", "month"], ignore_index=True)


def _wide_zip(path, encoding: str, log: ProblemLog, today: date | None) -> pd.DataFrame | None:
    """A Zillow public wide file (``RegionName`` = ZIP, one column per month) as long ZIP-month values."""
    table = read_table(path, log, encoding=encoding, required=("RegionName",), dtype={"RegionName": str})
    if table is None:
        return None
    date_columns = [c for c in table.frame.columns if _DATE_COLUMN.match(c)]
    if not date_columns:
        log.add(path, "no month columns (YYYY-MM-DD) in the header", line=1)
        return None
    limit = pd.Timestamp(today or clock.today())
    log.dated(max(pd.Timestamp(c) for c in date_columns))
    for c in date_columns:
        if pd.Timestamp(c) > limit:
            log.add(path, f"month column {c} is in the future", line=1, column=c)
    zips = table.frame["RegionName"].astype("string").str.strip().str.replace(r"\.0$", "", regex=True).str.zfill(5)
    bad = ~zips.str.fullmatch(r"\d{5}").fillna(False)
    log.rows(table, bad.to_numpy(), "RegionName", lambda i: f"'{zips.iloc[i]}' is not a 5-digit ZIP code")
    check_duplicates(table, pd.DataFrame({"RegionName": zips}), "RegionName", log)
    parts = []
    for c in date_columns:
        v = to_number(table, c, log)
        check_range(table, v, c, log, low=1.0, what="index value")
        parts.append(pd.DataFrame({"zip": zips.to_numpy(), "month": pd.Timestamp(c), "value": v.to_numpy()}))
    long = pd.concat(parts, ignore_index=True)
    long["month"] = _month_end(long["month"])
    return long[long["value"].notna() & long["zip"].notna()]


def _crosswalk(path, encoding: str, region: RegionSettings, known: pd.Index | None,
               log: ProblemLog) -> pd.DataFrame | None:
    """HUD USPS ZIP-TRACT crosswalk: ``ZIP, TRACT, RES_RATIO``."""
    table = read_table(path, log, encoding=encoding, required=("ZIP", "TRACT", "RES_RATIO"),
                       dtype={"ZIP": str, "TRACT": str})
    if table is None:
        return None
    geoids = check_geoids(table, "TRACT", log)
    ratio = to_number(table, "RES_RATIO", log)
    check_range(table, ratio, "RES_RATIO", log, low=0.0, high=1.0, what="ratio")
    keep = keep_in_region(table, geoids, "TRACT", known, region.county_fips, region.ignore_geoids, log)
    zips = table.frame["ZIP"].astype("string").str.strip().str.zfill(5)
    return pd.DataFrame({"zip": zips[keep].to_numpy(), "geoid": geoids[keep].to_numpy(),
                         "weight": ratio[keep].to_numpy()})


def load_zillow_zip(cfg: RentSource, region: RegionSettings, known: pd.Index | None, encoding: str,
                    log: ProblemLog, today: date | None = None) -> pd.DataFrame | None:
    """ZIP wide files mapped to tracts by residential-address share, renormalised over ZIPs with data."""
    assert cfg.path is not None and cfg.crosswalk is not None
    xwalk = _crosswalk(cfg.crosswalk, encoding, region, known, log)
    series = {"zhvi": _wide_zip(cfg.path, encoding, log, today)}
    if cfg.rent_path is not None:
        series["zri"] = _wide_zip(cfg.rent_path, encoding, log, today)
    if xwalk is None or any(s is None for s in series.values()):
        return None
    tract = []
    for name, s in series.items():
        merged = s.merge(xwalk, on="zip")
        merged["wv"] = merged["value"] * merged["weight"]
        agg = merged.groupby(["geoid", "month"], as_index=False)[["wv", "weight"]].sum()
        agg[name] = agg["wv"] / agg["weight"].where(agg["weight"] > 0)
        tract.append(agg[["geoid", "month", name]].set_index(["geoid", "month"]))
    joined = pd.concat(tract, axis=1).reset_index()
    if "zri" not in joined:
        joined["zri"] = np.nan
    if joined.empty:
        log.add(cfg.path, "no ZIP in the file maps to a tract of the region through the crosswalk")
        return None
    return _frame(joined["geoid"], joined["month"], joined["zhvi"], joined["zri"], cfg.available_after_days)


def load_rent(cfg: RentSource, region: RegionSettings, known: pd.Index | None, encoding: str,
              log: ProblemLog, today: date | None = None) -> pd.DataFrame | None:
    """Monthly tract indices from the configured format, or None for ACS-only."""
    if cfg.format == "zillow_tract":
        return load_zillow_tract(cfg, region, known, encoding, log, today)
    if cfg.format == "zillow_zip":
        return load_zillow_zip(cfg, region, known, encoding, log, today)
    return None


def _load(c: Context[RentSource]) -> pd.DataFrame | None:
    return load_rent(c.section, c.region, c.known, c.encoding, c.log, c.today)


def _rows(part: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """Per tract and index, its newest month with a value and the same month 1, 3 and 5 years before."""
    part = known_rows(part, "available", t)
    month = part["month"].dt.year * 12 + part["month"].dt.month
    keep = pd.Series(False, index=part.index)
    for column in ("zri", "zhvi"):
        has = part[column].notna()
        lag = month.where(has).groupby(part["geoid"]).transform("max") - month
        keep |= has & lag.isin(RENT_LAG_MONTHS)
    return part[keep]


FAMILY: Family[RentSource] = Family(
    name="rent",
    load=_load,
    section=lambda settings: settings.sources.rent,
    files=lambda cfg: [p for p in (cfg.path, cfg.rent_path, cfg.crosswalk) if p],
    attribution="Rent and home values: Zillow Research (Zillow Rent Index and Home Value Index), tract extract.",
    known="available",
    max_age=lambda cfg: cfg.max_age_days,
    coverage="cov_rent_index",
    rows=_rows,
    period="month",
    # e-mails have never carried this credit (only the model page did); Zillow's terms may ask for it there too
    credit=False,
)
