"""Eviction Lab tract file: yearly filings and judgments, plus its demographic columns.

Two traps shape this loader. The yearly renter-household counts between
censuses are interpolated toward the *next* census, so only the anchor years
(real census counts) are kept, each usable from its release date. The
demographic columns are step functions of Census/ACS releases, so each year's
values are dated by the release they come from, not by the year.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from risk.core import clock
from risk.core.settings import EvictionsSource, RegionSettings
from risk.sources._tables import (
    ProblemLog,
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

EVICTION_COLUMNS = ["geoid", "year", "filings", "judgments", "renters", "available"]
"""``renters`` is Eviction Lab's yearly (interpolated) count: exposure for outcome labels only,
never a feature denominator (it leans on the next census)."""


@dataclass(frozen=True)
class Evictions:
    """Yearly counts and the demographic vintages carried by the file."""

    counts: pd.DataFrame
    demographics: pd.DataFrame


def load_evictions(cfg: EvictionsSource, region: RegionSettings, known: pd.Index,
                   encoding: str, log: ProblemLog, today: date | None = None) -> Evictions | None:
    """Parse and check an Eviction Lab tract CSV."""
    table = read_table(cfg.path, log, encoding=encoding, required=REQUIRED, dtype={"GEOID": str})
    if table is None:
        return None
    geoids = check_geoids(table, "GEOID", log)
    year = to_number(table, "year", log)
    this_year = (today or clock.today()).year
    if 1678 <= year.max() < 2262:  # a year past this one is in the future from its 1 January (NaN: no year)
        log.dated(pd.Timestamp(year=int(np.floor(year.max())), month=1, day=1))
    check_range(table, year, "year", log, low=1980, high=this_year, what="year")
    year_is_int = (year.isna() | (year == year.round())).to_numpy()
    log.rows(table, ~year_is_int, "year", lambda i: f"year {year.iloc[i]:g} is not a whole number")
    filings = to_number(table, "eviction-filings", log)
    judgments = to_number(table, "evictions", log)
    renters = to_number(table, "renter-occupied-households", log)
    for values, column in ((filings, "eviction-filings"), (judgments, "evictions"), (renters, "renter-occupied-households")):
        check_range(table, values, column, log, low=0.0, what="count")
    too_many = (filings > cfg.max_filings_per_renter_household * renters.where(renters > 0)).to_numpy()
    log.rows(table, too_many, "eviction-filings", lambda i: (
        f"{filings.iloc[i]:g} filings for {renters.iloc[i]:g} renter households is more than "
        f"{cfg.max_filings_per_renter_household:g} per household"))
    if "eviction-filing-rate" in table.frame.columns:
        rate = to_number(table, "eviction-filing-rate", log)
        check_range(table, rate, "eviction-filing-rate", log, low=0.0,
                    high=100 * cfg.max_filings_per_renter_household, what="rate per 100 renter households")
    keep = keep_in_region(table, geoids, "GEOID", known, region.county_fips, region.ignore_geoids, log)
    dup = check_duplicates(table, pd.DataFrame({"GEOID": geoids, "year": year}), "GEOID", log)
    keep &= ~dup & geoids.notna().to_numpy() & year.notna().to_numpy() & year_is_int
    if "low-flag" in table.frame.columns:
        flagged = int((pd.to_numeric(table.frame["low-flag"], errors="coerce") == 1).sum())
        if flagged:
            log.add(cfg.path, f"{flagged} of {len(table.frame)} rows carry Eviction Lab's low-flag: "
                    "counts are believed lower than reality", column="low-flag", severity="warning")
    y = year[keep].astype("int64")
    year_end = pd.to_datetime(y.astype(str) + "-12-31")
    counts = pd.DataFrame({
        "geoid": geoids[keep].to_numpy(), "year": y.to_numpy(), "filings": filings[keep].to_numpy(),
        "judgments": judgments[keep].to_numpy(), "renters": renters[keep].to_numpy(),
        "available": (year_end + pd.Timedelta(days=cfg.available_after_days)).to_numpy(),
    })
    demo = _demographics(cfg, table, geoids, y, keep, renters, log)
    return Evictions(counts=counts.sort_values(["geoid", "year"], ignore_index=True), demographics=demo)


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
    return {} if value is None else {"evictions": value.counts, "demographics": value.demographics}


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
    codec=Codec(lambda v: ({} if v is None else {"counts": v.counts, "demographics": v.demographics}, None),
                lambda f, _: Evictions(f["counts"], f["demographics"]) if f else None),
    into=_into,  # every known year is kept for the Dask engine (rows=None): the long-run average reads them all
)
