"""Eviction Lab tract file: yearly filings and judgments, plus its demographic columns.

Two traps shape this loader. The yearly renter-household counts between
censuses are interpolated toward the *next* census, so only the anchor years
(real census counts) are kept, each usable from its release date. The
demographic columns are step functions of Census/ACS releases, so each year's
values are dated by the release they come from, not by the year.

Columns are found by name, in any order. Two damaged variants seen in the wild are repaired with one warning
each: GEOIDs whose leading 0 was lost (``geoid_leading_zero_restored``, :func:`risk.sources._tables.check_geoids`)
and a file re-saved through a parser that split the quoted parent-location at its comma
(``shifted_fields_repaired``, :func:`unshift`); what cannot be repaired safely is an error
(``geoid_leading_zero_ambiguous``, ``shifted_fields_ambiguous``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd

from risk.core import clock
from risk.core.settings import EvictionsSource, RegionSettings
from risk.sources._tables import (
    ProblemLog,
    Table,
    check_duplicates,
    check_geoids,
    check_range,
    keep_in_region,
    read_table,
    to_number,
)
from risk.sources.demographics import check_measure, empty_long, long_rows
from risk.sources.family import Codec, Context, Family

REQUIRED = ("GEOID", "year", "eviction-filings", "evictions", "renter-occupied-households")

# Eviction Lab column -> (measure, scale to a 0-1 share or a level)
_DEMOGRAPHIC_COLUMNS = {
    "pct-renter-occupied": ("renter_share", 0.01),
    "poverty-rate": ("poverty_rate", 0.01),
    "rent-burden": ("rent_burden", 0.01),
    "median-gross-rent": ("median_rent", 1.0),
    "median-household-income": ("median_income", 1.0),
    "median-property-value": ("median_home_value", 1.0),
}

SHIFTED_REPAIRED = "shifted_fields_repaired"
"""Warning: a parent-location split in two fields was joined again and the later columns moved back."""
SHIFTED_AMBIGUOUS = "shifted_fields_ambiguous"
"""Error: rows of a file with a split parent-location that cannot be moved back with certainty."""
_PARENT = "parent-location"
_COUNTY_HALF = r'"[^",]+'
"""The first half of a split ``"Cuyahoga County, Ohio"``: ``"Cuyahoga County``."""
_STATE_HALF = r' [A-Za-z][A-Za-z .]*"'
"""The second half: `` Ohio"``."""

EVICTION_COLUMNS = ["geoid", "year", "filings", "judgments", "renters", "available"]
"""``renters`` is Eviction Lab's yearly (interpolated) count: exposure for outcome labels only,
never a feature denominator (it leans on the next census)."""


@dataclass(frozen=True)
class Evictions:
    """Yearly counts and the demographic vintages carried by the file."""

    counts: pd.DataFrame
    demographics: pd.DataFrame
    counties: pd.DataFrame | None = None
    """The county names the file's parent-location gives (``county``, ``name``), for readable tract names."""


def load_evictions(cfg: EvictionsSource, region: RegionSettings, known: pd.Index | None,
                   encoding: str, log: ProblemLog, today: date | None = None) -> Evictions | None:
    """Parse and check an Eviction Lab tract CSV."""
    table = read_table(cfg.path, log, encoding=encoding, required=REQUIRED, dtype={"GEOID": str})
    if table is None or (table := unshift(table, log)) is None:
        return None
    geoids = check_geoids(table, "GEOID", log, region.county_fips)
    # the values are checked only where the product will read them: a statewide file's other counties and the
    # tracts in ignore_geoids are not the region's problem
    keep = keep_in_region(table, geoids, "GEOID", known, region.county_fips, region.ignore_geoids, log)
    year = to_number(table, "year", log)
    this_year = (today or clock.today()).year
    if 1678 <= year.max() < 2262:  # a year past this one is in the future from its 1 January (NaN: no year)
        log.dated(pd.Timestamp(year=int(np.floor(year.max())), month=1, day=1))
    check_range(table, year.where(keep), "year", log, low=1980, high=this_year, what="year")
    year_is_int = (year.isna() | (year == year.round())).to_numpy()
    log.rows(table, ~year_is_int & keep, "year", lambda i: f"year {year.iloc[i]:g} is not a whole number")
    filings = to_number(table, "eviction-filings", log)
    judgments = to_number(table, "evictions", log)
    renters = to_number(table, "renter-occupied-households", log)
    for values, column in ((filings, "eviction-filings"), (judgments, "evictions"), (renters, "renter-occupied-households")):
        check_range(table, values.where(keep), column, log, low=0.0, what="count")
    too_many = keep & (filings > cfg.max_filings_per_renter_household * renters.where(renters > 0)).to_numpy()
    log.rows(table, too_many, "eviction-filings", lambda i: (
        f"{filings.iloc[i]:g} filings for {renters.iloc[i]:g} renter households is more than "
        f"{cfg.max_filings_per_renter_household:g} per household"))
    if "eviction-filing-rate" in table.frame.columns:
        rate = to_number(table, "eviction-filing-rate", log)
        check_range(table, rate.where(keep), "eviction-filing-rate", log, low=0.0,
                    high=100 * cfg.max_filings_per_renter_household, what="rate per 100 renter households")
    dup = check_duplicates(table, pd.DataFrame({"GEOID": geoids, "year": year}), "GEOID", log, within=keep)
    keep &= ~dup & geoids.notna().to_numpy() & year.notna().to_numpy() & year_is_int
    if "low-flag" in table.frame.columns:  # counted over the region's rows, not a statewide file's
        flagged = int(((pd.to_numeric(table.frame["low-flag"], errors="coerce") == 1).to_numpy() & keep).sum())
        if flagged:
            log.add(cfg.path, f"{flagged} of the region's {int(keep.sum())} rows carry Eviction Lab's low-flag: "
                    "counts are believed lower than reality", column="low-flag", severity="warning")
    y = year[keep].astype("int64")
    year_end = pd.to_datetime(y.astype(str) + "-12-31")
    counts = pd.DataFrame({
        "geoid": geoids[keep].to_numpy(), "year": y.to_numpy(), "filings": filings[keep].to_numpy(),
        "judgments": judgments[keep].to_numpy(), "renters": renters[keep].to_numpy(),
        "available": (year_end + pd.Timedelta(days=cfg.available_after_days)).to_numpy(),
    })
    demo = _demographics(cfg, table, geoids, y, keep, renters, log)
    return Evictions(counts=counts.sort_values(["geoid", "year"], ignore_index=True), demographics=demo,
                     counties=_county_names(table, geoids, keep))


def _county_names(table: Table, geoids: pd.Series, keep: np.ndarray) -> pd.DataFrame | None:
    """Each county's name from parent-location ("Adams County, Washington": "Adams County"), the most common
    one where rows differ."""
    if _PARENT not in table.frame.columns:
        return None
    names = table.frame[_PARENT].astype("string").str.split(",").str[0].str.strip()
    pairs = pd.DataFrame({"county": geoids.str[:5].to_numpy(), "name": names.to_numpy()})[keep].dropna()
    pairs = pairs[pairs["name"] != ""]
    if pairs.empty:
        return None
    top = pairs.groupby(["county", "name"]).size().reset_index(name="n").sort_values(["county", "n"])
    return top.drop_duplicates("county", keep="last")[["county", "name"]].reset_index(drop=True)


def unshift(table: Table, log: ProblemLog) -> Table | None:
    """The table with a split parent-location joined again, unchanged when none is split, or None once the rows
    that cannot be repaired are recorded.

    A re-saved file (Eviction Lab's Ohio tracts, for one) has an unnamed index column first, and its quoted
    ``"Cuyahoga County, Ohio"`` split at the comma: each row holds one field more than the named columns, every
    column after parent-location holds its left neighbour's value, and the last (``subbed``) is lost.
    """
    columns = list(table.frame.columns)
    if _PARENT not in columns[:-1]:
        return table
    at = columns.index(_PARENT)
    if pd.api.types.is_numeric_dtype(table.frame[columns[at + 1]]):
        return table  # the column after it holds numbers (population, as published): nothing is split
    left = table.frame[_PARENT].astype("string")
    right = table.frame[columns[at + 1]].astype("string")
    county = left.str.fullmatch(_COUNTY_HALF).fillna(False).to_numpy(dtype=bool)
    state = right.str.fullmatch(_STATE_HALF).fillna(False).to_numpy(dtype=bool)
    if not (county | state).any():
        return table
    if not _unnamed(columns[0]) or not (county & state).all():
        _ambiguous(table, left, right, (county, state), _unnamed(columns[0]), log)
        return None
    log.add(table.path, f"{SHIFTED_REPAIRED}: in all {len(county)} rows the parent-location was split in two "
            f"fields at its comma (such as '{left.iloc[0]}' and '{right.iloc[0]}'), moving every later column one "
            f"place right; the fields were joined, the later columns moved back, the unnamed first column dropped, "
            f"and '{columns[-1]}', pushed out of the row, is missing", column=_PARENT, severity="warning")
    return replace(table, frame=_joined(table.frame, at, left, right))


def _unnamed(column: str) -> bool:
    """A header field left empty (pandas names it ``Unnamed: 0``): an index column written with the rows."""
    return column == "" or column.startswith("Unnamed: ")


def _ambiguous(table: Table, left: pd.Series, right: pd.Series, halves: tuple[np.ndarray, np.ndarray],
               indexed: bool, log: ProblemLog) -> None:
    """Record the rows of a file with a split parent-location that cannot be repaired with certainty: rows whose
    two fields are not both halves, or, without an index column, every row showing a half."""
    county, state = halves
    if indexed:
        rows, why = ~(county & state), "do not look like the two halves of a split \"County, State\""
    else:
        rows, why = county | state, ("look split, but the header has no unnamed index column, so the row holds no "
                                     "more fields than the header names and which column was lost is unknown")
    log.rows(table, rows, _PARENT, lambda i: (
        f"{SHIFTED_AMBIGUOUS}: the file's parent-location is split in two fields; this row's "
        f"'{left.iloc[i]}' and '{right.iloc[i]}' {why}; re-export the file from Eviction Lab"))


def _joined(frame: pd.DataFrame, at: int, left: pd.Series, right: pd.Series) -> pd.DataFrame:
    """The frame of a shifted file put back: index column dropped, halves joined, later columns moved left."""
    columns = list(frame.columns)
    parent = (left.str[1:] + "," + right.str[:-1]).rename(_PARENT)
    later = frame[columns[at + 2:]].set_axis(columns[at + 1:-1], axis=1)
    lost = pd.Series(np.nan, index=frame.index, name=columns[-1])
    return pd.concat([frame[columns[1:at]], parent, later, lost], axis=1)


def _demographics(cfg: EvictionsSource, table, geoids: pd.Series, year: pd.Series, keep: np.ndarray,
                  renters: pd.Series, log: ProblemLog) -> pd.DataFrame:
    parts = []
    for anchor in cfg.renter_anchors:
        rows = keep.copy()
        rows[keep] = (year == anchor.year).to_numpy()
        parts.append(long_rows(geoids[rows], "renter_households", renters[rows],
                               f"Eviction Lab {anchor.year} renter count", pd.Timestamp(anchor.released)))
    measures = {}
    for column, (measure, scale) in _DEMOGRAPHIC_COLUMNS.items():
        if column in table.frame.columns:
            values = to_number(table, column, log, sentinels=True) * scale
            measures[measure] = check_measure(table, values, measure, column, log)
    if "pct-white" in table.frame.columns:
        white = to_number(table, "pct-white", log, sentinels=True) * 0.01
        check_range(table, white, "pct-white", log, low=0.0, high=1.0, what="share")
        measures["nonwhite_share"] = 1 - white
    for v in cfg.vintages:
        rows = keep.copy()
        # one year of the range is enough: the columns are constant within a release
        rows[keep] = (year == v.last_year).to_numpy()
        for measure, values in measures.items():
            parts.append(long_rows(geoids[rows], measure, values[rows], f"{v.label} (Eviction Lab)",
                                   pd.Timestamp(v.released)))
    return pd.concat(parts, ignore_index=True) if parts else empty_long()


def _load(c: Context[EvictionsSource]) -> Evictions | None:
    return load_evictions(c.section, c.region, c.known, c.encoding, c.log, c.today)


def _into(value: Evictions | None) -> dict[str, object]:
    """The yearly counts are the evictions table; the file's demographic columns join the demographics."""
    if value is None:
        return {}
    names = {} if value.counties is None else {"county_names": value.counties}
    return {"evictions": value.counts, "demographics": value.demographics, **names}


FAMILY: Family[EvictionsSource] = Family(
    name="evictions",
    load=_load,
    section=lambda settings: settings.sources.evictions,
    files=lambda cfg: [cfg.path],
    attribution="Evictions: This research uses data from The Eviction Lab at Princeton University, a project "
    "directed by Matthew Desmond and designed by Ashley Gromis, Lavar Edmonds, James Hendrickson, Katie "
    "Krywokulski, Lillian Leung, and Adam Porton. The Eviction Lab is funded by the JPB, Gates, and Ford "
    "Foundations as well as the Chan Zuckerberg Initiative. More information is found at evictionlab.org.",
    known="available",
    max_age=lambda cfg: cfg.max_age_days,
    coverage="cov_evictions",
    codec=Codec(lambda v: ({} if v is None else {"counts": v.counts, "demographics": v.demographics,
                                                 **({} if v.counties is None else {"counties": v.counties})}, None),
                lambda f, _: Evictions(f["counts"], f["demographics"], f.get("counties")) if f else None),
    into=_into,  # every known year is kept for the Dask engine (rows=None): the long-run average reads them all
)
