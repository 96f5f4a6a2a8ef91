"""Demographic vintages: the UDP tract database (or UDP's typology output) and raw Census/ACS tables.

Output is long: one row per (tract, measure, vintage) with the vintage's
release date, so features can take, per measure, the newest vintage published
by the as-of date. A UDP database also gives the raw columns the UDP typology
reads, wide and dated by column (:mod:`risk.sources.udp_columns`), from the same
read and the same checks.

UDP's typology output (``<Metro>_typology_output.csv``, format ``udp_typology_output``) holds every column of
its database (``geometry`` aside) plus the typology's flags, so the database loader reads it unchanged.
UDP writes GEOIDs as numbers, so a California file's have 10 digits: their leading 0 is restored without a
warning (it is the published format, not damage), but a file mixing 10 and 11 digits is still an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from risk.core.settings import DemographicsSource, RegionSettings, Vintage
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
from risk.sources.family import Codec, Context, Family, known_rows
from risk.sources.udp_columns import UdpColumns, udp_columns

UDP_FORMATS = ("udp_database", "udp_typology_output")
"""Formats read by :func:`load_udp_database`: one wide row per tract, columns suffixed by vintage."""
LONG_COLUMNS = ["geoid", "measure", "value", "vintage", "released"]
MIN_RELEASE_GAP = pd.Timedelta(days=730)
"""An annual change compares a tract's newest release with the newest at least this much older: the features'
rule, kept beside the Dask row selection that must keep those releases."""

SHARES = ("renter_share", "nonwhite_share", "college_share", "low_income_share", "poverty_rate", "rent_burden")
COUNTS = ("population", "households", "housing_units", "renter_households", "low_income_households")
MEDIANS = ("median_rent", "median_home_value", "median_income")

_UDP_COLUMNS = {
    "population": "pop", "households": "hh", "housing_units": "hu", "renter_households": "rhu",
    "renter_share": "per_rent", "nonwhite_share": "per_nonwhite", "college_share": "per_col",
    "low_income_share": "per_all_li", "low_income_households": "all_li_count", "median_rent": "mrent", "median_home_value": "mhval",
    "median_income": "hinc",
}


def empty_long() -> pd.DataFrame:
    """An empty demographics table with the right columns."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
        LONG_COLUMNS, ["string", "string", "float64", "string", "datetime64[ns]"])})


def long_rows(geoids: pd.Series, measure: str, values: pd.Series, label: str, released: pd.Timestamp) -> pd.DataFrame:
    """One measure of one vintage in long form (NaN values dropped)."""
    frame = pd.DataFrame({"geoid": geoids.to_numpy(), "measure": measure, "value": values.to_numpy(dtype="float64"),
                          "vintage": label, "released": released})
    return frame[frame["value"].notna()]


def check_measure(table: Table, values: pd.Series, measure: str, column: str, log: ProblemLog,
                  shares_over_one: str = "error") -> pd.Series:
    """Range rules by kind of measure; zero medians become NaN (Census uses 0 for 'not computed')."""
    if measure in SHARES:
        if shares_over_one == "drop" and (over := values > 1.0).any():
            log.add(table.path, f"{int(over.sum())} shares above 1 set to missing (shares_over_one: drop)",
                    column=column, severity="warning")
            values = values.mask(over)
        check_range(table, values, column, log, low=0.0, high=1.0, what="share")
    elif measure in COUNTS:
        check_range(table, values, column, log, low=0.0, what="count")
    elif measure in MEDIANS:
        check_range(table, values, column, log, low=0.0, what="median")
        values = values.mask(values == 0)
    return values


def _geoids(table: Table, region: RegionSettings, known: pd.Index | None,
            log: ProblemLog) -> tuple[pd.Series, np.ndarray]:
    column = "GEOID" if "GEOID" in table.frame.columns else "FIPS"
    geoids = check_geoids(table, column, log, region.county_fips, announce=False)
    keep = keep_in_region(table, geoids, column, known, region.county_fips, region.ignore_geoids, log)
    dup = check_duplicates(table, pd.DataFrame({column: geoids}), column, log, within=keep)
    return geoids, keep & ~dup & geoids.notna().to_numpy()


@dataclass(frozen=True)
class Demographics:
    """What the demographics family loads: the long table, and for a UDP database the typology's raw columns."""

    long: pd.DataFrame
    udp: UdpColumns | None = None


def _udp_vintage(table: Table, v: Vintage, geoids: pd.Series, keep: np.ndarray, log: ProblemLog,
                 number: Callable[[str], pd.Series]) -> list[pd.DataFrame]:
    parts = []
    for measure, stem in _UDP_COLUMNS.items():
        column = f"{stem}_{v.suffix}"
        if column not in table.frame.columns or (measure in MEDIANS and not v.medians_reliable):
            continue
        # only the region's rows are checked: a statewide file's other counties are not the region's problem
        values = number(column).where(keep)
        values = check_measure(table, values, measure, column, log, v.shares_over_one)
        parts.append(long_rows(geoids[keep], measure, values[keep], v.label, pd.Timestamp(v.released)))
    if not parts:
        log.add(table.path, f"no columns with suffix _{v.suffix} for vintage {v.label}", line=1)
    return parts


def load_udp_database(cfg: DemographicsSource, region: RegionSettings, known: pd.Index | None,
                      encoding: str, log: ProblemLog) -> Demographics:
    """The UDP/Census tract database or UDP's typology output: one wide row per tract, columns suffixed by
    vintage."""
    assert cfg.path is not None
    table = read_table(cfg.path, log, encoding=encoding, required=(), any_of=[("GEOID", "FIPS")],
                       dtype={"GEOID": str, "FIPS": str})
    if table is None:
        return Demographics(empty_long())
    geoids, keep = _geoids(table, region, known, log)
    numbers: dict[str, pd.Series] = {}

    def number(column: str) -> pd.Series:
        # a column both the measures and the typology read is checked (and its problems recorded) once
        if column not in numbers:
            numbers[column] = to_number(table, column, log, sentinels=True)
        return numbers[column]

    parts = [p for v in cfg.vintages for p in _udp_vintage(table, v, geoids, keep, log, number)]
    udp = udp_columns(list(table.frame.columns), geoids, number, {v.suffix: v.released for v in cfg.vintages})
    return Demographics(pd.concat(parts, ignore_index=True) if parts else empty_long(), udp)


def _sum(frame: pd.DataFrame, columns: list[str]) -> pd.Series | None:
    present = [c for c in columns if c in frame.columns]
    return frame[present].sum(axis=1, min_count=1) if present else None


def _college(frame: pd.DataFrame, s: str) -> pd.Series | None:
    """Share of adults 25+ with a bachelor's degree or more, from the three schemas UDP pulls."""
    if f"total_25_col_gd_{s}" in frame.columns:  # 1990: education bins, no total column
        bins = [c for c in frame.columns if re.fullmatch(rf"total_25_col_\w+_{s}", c)]
        top = _sum(frame, [f"total_25_col_bd_{s}", f"total_25_col_gd_{s}"])
        total = _sum(frame, bins)
    else:
        degrees = ["bd", "md", "pd", "psd", "phd"]
        top = _sum(frame, [f"{sex}_25_col_{d}_{s}" for sex in ("total", "male", "female") for d in degrees])
        total = frame.get(f"total_25_{s}")
    if top is None or total is None:
        return None
    return (top / total.where(total > 0)).clip(upper=1.0)


def _low_income_share(frame: pd.DataFrame, s: str, income: pd.Series | None) -> pd.Series | None:
    """Households under 80% of the regional median income, interpolated within the income bins.

    The regional median is UDP's, the median of the tract medians (``income``), where those are reliable. A
    crosswalked vintage's tract medians are shrunk by the crosswalk weights (``income`` is None then): its
    median is that of every household of the region, read from the bins summed over its tracts, which the
    crosswalk carries over as households."""
    bins = sorted((int(m.group(1)), c) for c in frame.columns if (m := re.fullmatch(rf"I_(\d+)_{s}", c)))
    if len(bins) < 3:
        return None
    counts = np.nan_to_num(frame[[c for _, c in bins]].to_numpy(dtype="float64"))
    uppers = np.array([u for u, _ in bins], dtype="float64")
    lowers = np.concatenate([[0.0], uppers[:-1]])
    median = (float(income.median()) if income is not None and income.notna().any()
              else _binned_median(counts.sum(axis=0), lowers, uppers))
    if median is None:
        return None
    threshold = 0.8 * median
    below = np.clip((threshold - lowers) / (uppers - lowers), 0.0, 1.0)
    below[-1] = 0.0 if threshold <= lowers[-1] else below[-1]  # open top bin
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (counts * below).sum(axis=1) / np.where(total > 0, total, np.nan)
    return pd.Series(share, index=frame.index)


def _binned_median(households: np.ndarray, lowers: np.ndarray, uppers: np.ndarray) -> float | None:
    """The income at which half the households lie below, linear within its bin; None without households."""
    upto = np.cumsum(households)
    half = float(upto[-1]) / 2
    if half <= 0:
        return None
    i = int(np.searchsorted(upto, half))
    below = float(upto[i] - households[i])
    return float(lowers[i] + (half - below) / households[i] * (uppers[i] - lowers[i]))


def _census_measures(table: Table, s: str, log: ProblemLog, medians_reliable: bool = True
                     ) -> dict[str, tuple[pd.Series, str]]:
    """Measures of a raw table: {measure: (values, column named in problems)}."""
    f = table.frame
    num = {c: to_number(table, c, log, sentinels=True) for c in f.columns if c.endswith(f"_{s}")}
    g = pd.DataFrame(num, index=f.index)
    out: dict[str, tuple[pd.Series, str]] = {}
    for measure, stem in (("population", "pop"), ("households", "hh"), ("renter_households", "rhu"),
                          ("median_rent", "mrent"), ("median_home_value", "mhval"), ("median_income", "hinc")):
        if f"{stem}_{s}" in g and (medians_reliable or measure not in MEDIANS):
            out[measure] = (g[f"{stem}_{s}"], f"{stem}_{s}")
    if f"white_{s}" in g and f"pop_{s}" in g:
        pop = g[f"pop_{s}"]
        out["nonwhite_share"] = (1 - g[f"white_{s}"] / pop.where(pop > 0), f"white_{s}")
    if f"ohu_{s}" in g and f"rhu_{s}" in g:
        occupied = g[f"ohu_{s}"] + g[f"rhu_{s}"]
        out["renter_share"] = (g[f"rhu_{s}"] / occupied.where(occupied > 0), f"rhu_{s}")
        out["housing_units"] = (g[f"hu_{s}"], f"hu_{s}") if f"hu_{s}" in g else (occupied, f"ohu_{s}")
    if (college := _college(g, s)) is not None:
        out["college_share"] = (college, f"total_25_{s}")
    income = out["median_income"][0] if "median_income" in out else None
    if (li := _low_income_share(g, s, income)) is not None:
        out["low_income_share"] = (li, f"I_*_{s}")
        if "households" in out:
            out["low_income_households"] = (li * out["households"][0], f"I_*_{s}")
    return out


def load_census_tables(cfg: DemographicsSource, region: RegionSettings, known: pd.Index | None,
                       encoding: str, log: ProblemLog) -> pd.DataFrame:
    """Raw Census/ACS tables (UDP download format: suffixed variables and a FIPS column)."""
    parts = []
    for spec in cfg.tables:
        table = read_table(spec.path, log, encoding=encoding, required=(), any_of=[("GEOID", "FIPS")],
                           dtype={"GEOID": str, "FIPS": str})
        if table is None:
            continue
        geoids, keep = _geoids(table, region, known, log)
        measures = _census_measures(table, spec.vintage.suffix, log, spec.vintage.medians_reliable)
        if not measures:
            log.add(spec.path, f"no Census variables with suffix _{spec.vintage.suffix}", line=1)
        for measure, (values, column) in measures.items():
            values = check_measure(table, values.where(keep), measure, column, log, spec.vintage.shares_over_one)
            parts.append(long_rows(geoids[keep], measure, values[keep], spec.vintage.label,
                                   pd.Timestamp(spec.vintage.released)))
    return pd.concat(parts, ignore_index=True) if parts else empty_long()


def load_demographics(cfg: DemographicsSource, region: RegionSettings, known: pd.Index | None,
                      encoding: str, log: ProblemLog) -> Demographics:
    """Demographic vintages in long form (and a UDP database's typology columns), from the configured format."""
    if cfg.format in UDP_FORMATS:
        return load_udp_database(cfg, region, known, encoding, log)
    return Demographics(load_census_tables(cfg, region, known, encoding, log))


def _load(c: Context[DemographicsSource]) -> Demographics:
    return load_demographics(c.section, c.region, c.known, c.encoding, c.log)


def _pack(value: Demographics) -> tuple[dict[str, pd.DataFrame], Any]:
    if value.udp is None:
        return {"table": value.long}, None
    udp = value.udp
    return {"table": value.long, "udp": udp.frame}, {
        "vintages": {s: d.isoformat() for s, d in udp.vintages.items()}, "digest": udp.digest}


def _unpack(frames: dict[str, pd.DataFrame], note: Any) -> Demographics:
    if note is None:
        return Demographics(frames["table"])
    vintages = {s: date.fromisoformat(d) for s, d in note["vintages"].items()}
    return Demographics(frames["table"], UdpColumns(frames["udp"], vintages, note["digest"]))


def _rows(part: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """Per tract and measure, every row released on the dates the newest-value and annual-change features read.

    Those are the newest release, the newest with a value, and the same two
    among releases at least :data:`MIN_RELEASE_GAP` older than the newest.
    Keeping all rows of those dates (not one) leaves ties to the local
    engine's own ordering.
    """
    part = known_rows(part, "released", t)
    released, has = part["released"], part["value"].notna()
    groups = [part["geoid"], part["measure"]]

    def newest(s: pd.Series) -> pd.Series:
        return s.groupby(groups).transform("max")

    last = newest(released)
    older = released.where(released <= last - MIN_RELEASE_GAP)
    keep = pd.Series(False, index=part.index)
    for day in (last, newest(released.where(has)), newest(older), newest(older.where(has))):
        keep |= released.eq(day)
    return part[keep]


FAMILY: Family[DemographicsSource] = Family(
    name="demographics",
    load=_load,
    section=lambda settings: settings.sources.demographics,
    files=lambda cfg: [p for p in (cfg.path, *(t.path for t in cfg.tables)) if p],
    attribution="Demographics: U.S. Census Bureau, Decennial Census and American Community Survey, compiled by the "
    "Urban Displacement Project (doi:10.5281/zenodo.4356684).",
    known="released",
    max_age=lambda cfg: cfg.max_age_days,
    coverage="cov_demographics",
    rows=_rows,
    series=False,  # the only source of the demographic features: a stale vintage is reported, never dropped
    always=True,
    codec=Codec(_pack, _unpack),
    into=lambda value: {"demographics": value.long, "udp": value.udp},
)
