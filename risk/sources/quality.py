"""Checks that catch broken source data before it reaches a label.

Published files carry traps no row-by-row check can see: a vintage whose low-income threshold disagrees with
the next one (the region's low-income households "double" in a decade), columns swapped or left constant in one
vintage, court records whose coverage starts, stops or changes from one year to the next. Every check here looks
at one region's loaded :class:`~risk.sources.Sources` and returns warnings (a
:class:`~risk.core.errors.Problem` whose message starts with a stable code: ``implausible_vintage_jump``,
``swapped_columns``, ``constant_column``, ``court_coverage_break``) and :class:`Exclusions`: the county-years and
vintages labels must not use (:mod:`risk.outcomes.exclusions` applies them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from risk.core.errors import Problem
from risk.sources._tables import ProblemLog
from risk.sources.demographics import SHARES

if TYPE_CHECKING:
    from risk.sources import Sources

JUMP, SWAP, CONSTANT, BREAK = "implausible_vintage_jump", "swapped_columns", "constant_column", "court_coverage_break"

# Vintage jumps. Thresholds from demography and from the regions in shared/data (UDP databases of 11 metros,
# Eviction Lab files of 6 states). Sound pairs of vintages there change a region's population, households or
# renter households by at most 0.031 a year on the log scale (Atlanta 1990-2000, one of the fastest-growing
# metros of the decade: +36% people, +34% households); 0.035 a year (+42% a decade) leaves room for that and
# flags only a Las-Vegas-like boom. (California's 1990 renter and housing-unit counts, -4% to -45%, come from
# swapped columns: the swap check names them.) The floor covers two releases of the same year.
GROWTH_PER_YEAR = 0.035
GROWTH_FLOOR = 0.10
# Low-income households are those under 80% of the regional median income: by construction about 0.3-0.45 of
# households (0.37-0.41 for a lognormal income spread of 0.7-1.0), whatever the region's growth, so their count
# follows households. Sound vintages: the region's low-income share of households moved by at most 0.18 (log,
# Monterey 2000-2018); the known traps by 0.34 (Riverside) to 0.63 (San Bernardino 2000-2018), 0.54 (Atlanta),
# 0.57 (King 1990-2000: 1990 medians shrunk by the crosswalk gave a too-low threshold).
LOW_INCOME_EXCESS = 0.25
LOW_INCOME_BAND = (0.30, 0.50)
"""A vintage whose low-income share of households lies outside this band is the side of a jump to blame."""
# The median tract's share: the low-income share is relative, so it has no trend to allow for (sound pairs move
# it by at most 0.067, the traps by 0.146 to 0.19); renter shares drift (Cleveland +0.078 in 18 years, US home
# ownership moves about 5 points a decade), so they get 0.05 plus 0.005 a year.
SHARE_LIMITS = {"low_income_share": (0.10, 0.0), "renter_share": (0.05, 0.005)}
COUNTS = ("population", "households", "housing_units", "renter_households", "low_income_households")
# Swaps: a share's tract values correlate above +0.8 between consecutive vintages in every sound region (0.80 to
# 0.98); California's 1990 renter shares, computed from the owner and occupied columns, correlate -0.68 to -0.96.
SWAP_CORRELATION = -0.3
SOUND_CORRELATION = 0.5
CONSTANT_SHARE = 0.95
"""A measure of a vintage is constant when this share of its tracts hold one value (California 1990 non-white
share: 0 in every tract)."""
MIN_TRACTS = 20
GROUPS = (("low_income_households", "low_income_share"), ("renter_share", "renter_households", "housing_units"))
"""Measures computed from the same columns: a vintage excluded for one is excluded for all of its group."""

# Court coverage. Year-to-year changes of a big county's filings: median 0.08 on the log scale; Hamilton and
# Franklin move less than 0.08 in any sound year, King less than 0.22. A change beyond 0.30 (+35% or -26% in one
# year), beyond 4 robust standard deviations of the county's own yearly changes (King 0.44, so its -27% in 2016
# stays in; Pierce 0.36) and beyond 4 standard deviations of the counts' Poisson noise (small counties) is a
# break, unless the state's other counties moved alike that year (a law, a moratorium). Franklin's -33% in 2014,
# Cuyahoga's -45%, Suffolk's +143% in 2012 and South Carolina's partial 2009 are beyond it.
BREAK_MIN = 0.30
BREAK_SIGMAS = 4.0
MISSING_SHARE = 0.5
"""A county-year with filings in fewer than this share of the county's tracts has no court coverage."""
MIN_CHANGES = 6
"""Yearly changes needed to measure a county's own noise; with fewer, BREAK_MIN alone is the threshold."""
STATE_MIN_COUNTIES = 3
STATE_MIN_FILINGS = 100


@dataclass(frozen=True)
class CountyYear:
    """A county-year of eviction filings labels must not read."""

    county: str
    year: int
    reason: str


@dataclass(frozen=True)
class VintageMeasure:
    """A demographic vintage's measure labels must not read."""

    vintage: str
    measure: str
    reason: str


@dataclass(frozen=True)
class Exclusions:
    """What the quality checks found unusable."""

    county_years: tuple[CountyYear, ...] = ()
    vintages: tuple[VintageMeasure, ...] = ()

    def __add__(self, other: Exclusions) -> Exclusions:
        return Exclusions(tuple(dict.fromkeys(self.county_years + other.county_years)),
                          tuple(dict.fromkeys(self.vintages + other.vintages)))

    def years_of(self, county: str) -> dict[int, str]:
        """Excluded years of one county (5-digit FIPS) and why."""
        out: dict[int, str] = {}
        for e in self.county_years:
            if e.county == county:
                out[e.year] = f"{out[e.year]}; {e.reason}" if e.year in out else e.reason
        return out

    def vintage_reason(self, vintage: str, measure: str) -> str | None:
        """Why a vintage's measure is excluded, or None."""
        reasons = [e.reason for e in self.vintages if (e.vintage, e.measure) == (vintage, measure)]
        return "; ".join(dict.fromkeys(reasons)) or None


def check_quality(sources: Sources, region_name: str, counties: pd.DataFrame | None = None
                  ) -> tuple[list[Problem], Exclusions]:
    """Every check on one region's sources; ``counties`` (county, year, filings) gives the state trends."""
    problems, excluded = demographic_checks(sources.demographics, region_name)
    if sources.evictions is not None and not sources.evictions.empty:
        more, more_excluded = court_coverage_breaks(sources.evictions, region_name, counties)
        problems, excluded = problems + more, excluded + more_excluded
    return problems, excluded


def _year(label: str, released: pd.Timestamp) -> int:
    """The year a vintage describes: the last year its label names (``ACS 2014-2018``: 2018)."""
    years = re.findall(r"(?<!\d)(?:19|20)\d\d(?!\d)", label)
    return int(years[-1]) if years else int(released.year)


@dataclass(frozen=True)
class _Measure:
    """One measure's vintages in order (label, year) and its values, tracts by vintage."""

    name: str
    order: tuple[tuple[str, int], ...]
    wide: pd.DataFrame

    def pairs(self) -> Iterator[tuple[int, pd.DataFrame]]:
        """Consecutive vintages (by position) with their common tracts, when there are enough."""
        for i in range(len(self.order) - 1):
            both = self.wide[[self.order[i][0], self.order[i + 1][0]]].dropna()
            if len(both) >= MIN_TRACTS:
                yield i, both


def _measures(d: pd.DataFrame) -> dict[str, _Measure]:
    rows = pd.DataFrame({"geoid": d["geoid"].astype(str), "measure": d["measure"].astype(str),
                         "vintage": d["vintage"].astype(str), "value": d["value"].astype("float64"),
                         "released": d["released"]})
    out = {}
    for name, part in rows.groupby("measure", sort=True):
        released = part.groupby("vintage")["released"].min()
        order = sorted(((v, _year(v, r)) for v, r in released.items()), key=lambda x: (x[1], released[x[0]], x[0]))
        wide = part.pivot_table(index="geoid", columns="vintage", values="value", aggfunc="first")
        out[str(name)] = _Measure(str(name), tuple(order), wide)
    return out


def _group(measure: str) -> tuple[str, ...]:
    return next((g for g in GROUPS if measure in g), (measure,))


def _exclude(vintages: Iterable[str], measures: Iterable[str], reason: str) -> list[VintageMeasure]:
    return [VintageMeasure(v, m, reason) for v in vintages for m in measures]


def demographic_checks(d: pd.DataFrame, region: str) -> tuple[list[Problem], Exclusions]:
    """Implausible jumps between vintages, swapped and constant columns."""
    log = ProblemLog("demographics")
    measures = _measures(d) if not d.empty else {}
    found: list[VintageMeasure] = []
    for m in measures.values():
        found += _constant(m, region, log) + _swapped(m, region, log)
    broken = {(e.vintage, e.measure) for e in found}  # a jump out of a broken vintage is not news
    for m in measures.values():
        found += _jumps(m, measures, broken, region, log)
    return log.items, Exclusions(vintages=tuple(dict.fromkeys(found)))


def _constant(m: _Measure, region: str, log: ProblemLog) -> list[VintageMeasure]:
    out = []
    for vintage, _ in m.order:
        values = m.wide[vintage].dropna()
        if len(values) < MIN_TRACTS:
            continue
        top = values.value_counts()
        if top.iloc[0] >= CONSTANT_SHARE * len(values):
            log.add(region, f"{CONSTANT}: {region}: {m.name} of {vintage} is {top.index[0]:g} in {top.iloc[0]} of "
                    f"{len(values)} tracts: the column was not filled", column=m.name, severity="warning")
            out += _exclude([vintage], _group(m.name), f"{CONSTANT}: {m.name} of {vintage} is constant")
    return out


def _swapped(m: _Measure, region: str, log: ProblemLog) -> list[VintageMeasure]:
    if m.name not in SHARES:
        return []
    corr = {i: both.iloc[:, 0].corr(both.iloc[:, 1]) for i, both in m.pairs()}
    out = []
    for i, r in corr.items():
        if not r < SWAP_CORRELATION:
            continue
        (a, _), (b, _) = m.order[i], m.order[i + 1]
        # the side whose other neighbour agrees with it is sound
        blamed = [a] if corr.get(i + 1, np.nan) > SOUND_CORRELATION else \
            [b] if corr.get(i - 1, np.nan) > SOUND_CORRELATION else [a, b]
        log.add(region, f"{SWAP}: {region}: tract values of {m.name} in {a} and {b} are anti-correlated "
                f"(r = {r:.2f}; consecutive vintages of a share correlate above +0.8): the columns of "
                f"{' and '.join(blamed)} look swapped (a mirror image, share ~ 1 - share)", column=m.name,
                severity="warning")
        out += _exclude(blamed, _group(m.name), f"{SWAP}: {m.name} of {' and '.join(blamed)} looks swapped")
    return out


def _jumps(m: _Measure, measures: dict[str, _Measure], broken: set[tuple[str, str]], region: str,
           log: ProblemLog) -> list[VintageMeasure]:
    if m.name not in COUNTS and m.name not in SHARE_LIMITS:
        return []
    out = []
    for i, both in m.pairs():
        (a, ya), (b, yb) = m.order[i], m.order[i + 1]
        if (a, m.name) in broken or (b, m.name) in broken:
            continue
        years = abs(yb - ya)
        found = _count_jump(m.name, both, years, measures) if m.name in COUNTS else \
            _share_jump(m.name, both, years)
        if found is None:
            continue
        li = m.name in GROUPS[0]
        blamed = _blame_low_income([a, b], measures) if li else [a, b]
        log.add(region, f"{JUMP}: {region}: {m.name} from {a} to {b} ({years} years): {found}; "
                f"{'blamed on ' + ' and '.join(blamed) if li else 'either vintage may be at fault'}",
                column=m.name, severity="warning")
        out += _exclude(blamed, _group(m.name) if li else [m.name],
                        f"{JUMP}: {m.name} from {a} to {b} changed beyond what {years} years allow")
    return out


def _count_jump(name: str, both: pd.DataFrame, years: int, measures: dict[str, _Measure]) -> str | None:
    a, b = both.columns
    change = float(np.log(both[b].sum() / both[a].sum())) if both[a].sum() > 0 and both[b].sum() > 0 else np.inf
    what = f"region total {both[a].sum():,.0f} -> {both[b].sum():,.0f} ({_pct(change)})"
    households = measures.get("households")
    if name == "low_income_households" and households is not None and {a, b} <= set(households.wide.columns):
        hh = households.wide.reindex(both.index)[[a, b]].dropna()
        if len(hh) >= MIN_TRACTS and np.isfinite(change):
            excess = change - float(np.log(hh[b].sum() / hh[a].sum()))
            return None if abs(excess) <= LOW_INCOME_EXCESS else (
                f"{what} while households changed {_pct(change - excess)}: low-income households (under 80% of "
                f"the regional median) follow households within {_pct(LOW_INCOME_EXCESS)}")
    limit = max(GROWTH_FLOOR, GROWTH_PER_YEAR * years)
    return None if abs(change) <= limit else \
        f"{what}, beyond the {_pct(limit)} / {_pct(-limit)} a whole region can change in {years} years"


def _share_jump(name: str, both: pd.DataFrame, years: int) -> str | None:
    a, b = both.columns
    base, per_year = SHARE_LIMITS[name]
    limit = base + per_year * years
    ma, mb = float(both[a].median()), float(both[b].median())
    return None if abs(mb - ma) <= limit else \
        f"the median tract's share moved {ma:.3f} -> {mb:.3f}, beyond {limit:.3f}"


def _low_income_level(vintage: str, measures: dict[str, _Measure]) -> float:
    """The region's low-income share of households in a vintage (the median tract's share without counts)."""
    li, hh = measures.get("low_income_households"), measures.get("households")
    if li is not None and hh is not None and vintage in li.wide and vintage in hh.wide:
        both = pd.concat([li.wide[vintage], hh.wide[vintage]], axis=1).dropna()
        if len(both) >= MIN_TRACTS and both.iloc[:, 1].sum() > 0:
            return float(both.iloc[:, 0].sum() / both.iloc[:, 1].sum())
    share = measures.get("low_income_share")
    return float(share.wide[vintage].median()) if share is not None and vintage in share.wide else np.nan


def _blame_low_income(pair: list[str], measures: dict[str, _Measure]) -> list[str]:
    low, high = LOW_INCOME_BAND
    off = [v for v in pair if not low <= _low_income_level(v, measures) <= high]
    return off or pair


def _pct(log_change: float) -> str:
    return "n/a" if not np.isfinite(log_change) else f"{np.expm1(log_change):+.0%}"


def _county_totals(ev: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Filings by county (rows) and year (columns), and whether the county-year had court coverage."""
    county = ev["geoid"].astype(str).str.zfill(11).str[:5]
    keys = [county.rename("county"), ev["year"].astype(int).rename("year")]
    totals = ev["filings"].groupby(keys).sum(min_count=1).unstack()
    reported = ev["filings"].notna().groupby(keys).sum().unstack()
    tracts = ev["geoid"].groupby(county.rename("county")).nunique()
    years = range(int(ev["year"].min()), int(ev["year"].max()) + 1)
    covered = reported.reindex(columns=years).fillna(0).div(tracts, axis=0) >= MISSING_SHARE
    return totals.reindex(columns=years), covered


def _panel(counties: pd.DataFrame) -> pd.DataFrame:
    """A county panel as county (rows) by year: filings, 0 read as no coverage (the panel's own convention)."""
    c = counties.rename(columns={"GEOID": "county", "geoid": "county", "eviction-filings": "filings"})
    fips = c["county"].astype(str).str.replace(r"\.0$", "", regex=True).str.zfill(5)
    panel = c["filings"].astype("float64").groupby([fips.rename("county"), c["year"].astype(int)]).sum().unstack()
    return panel.where(panel > 0)


def state_changes(panel: pd.DataFrame, county: str) -> pd.Series:
    """Median log change of filings by year over the state's other counties (NaN where too few), each counted
    only between two covered years neither of which may be partial: its first or last covered year."""
    state = panel[(panel.index.str[:2] == county[:2]) & (panel.index != county)]
    first_year, last_year = panel.columns.min(), panel.columns.max()
    firsts = state.apply(lambda r: r.first_valid_index(), axis=1)
    lasts = state.apply(lambda r: r.last_valid_index(), axis=1)
    changes = {}
    for y in panel.columns[1:]:
        prev, now = state.get(y - 1), state[y]
        if prev is None:
            changes[y] = np.nan
            continue
        ok = (prev >= STATE_MIN_FILINGS) & (now >= STATE_MIN_FILINGS)
        ok &= ~((firsts == y - 1) & (firsts > first_year)) & ~((lasts == y) & (lasts < last_year))
        step = np.log(now[ok] / prev[ok])
        changes[y] = float(step.median()) if len(step) >= STATE_MIN_COUNTIES else np.nan
    return pd.Series(changes, dtype="float64")


def _state_between(changes: pd.Series | None, p: int, y: int) -> float:
    if changes is None:
        return np.nan
    steps = changes.reindex(range(p + 1, y + 1))
    return float(steps.sum()) if steps.notna().all() else np.nan


def _threshold(x: pd.Series) -> float:
    """The county's break threshold: BREAK_MIN, or BREAK_SIGMAS robust deviations of its ordinary yearly changes
    (changes beyond the threshold are set aside and the deviation measured again, until none is left out)."""
    steps = np.diff(x.to_numpy())
    limit = BREAK_MIN
    for _ in range(10):
        if len(steps) < MIN_CHANGES:  # too few years to tell a county's noise from its breaks
            return limit
        centre = float(np.median(steps))
        limit = max(BREAK_MIN, BREAK_SIGMAS * 1.4826 * float(np.median(np.abs(steps - centre))))
        kept = steps[np.abs(steps - centre) <= limit]
        if len(kept) == len(steps):
            return limit
        steps = kept
    return limit


def _beyond(change: float, limit: float, a: float, b: float) -> bool:
    """Whether a log change between yearly totals ``a`` and ``b`` is beyond ``limit`` and their counting noise."""
    # a negative total (a broken file, reported by its loader) counts as no filings here
    return abs(change) > max(limit, BREAK_SIGMAS * float(np.sqrt(1 / (max(a, 0) + 1) + 1 / (max(b, 0) + 1))))


def _off_level(t: pd.Series, state: pd.Series | None, limit: float) -> tuple[list[int], list[int], list[str]]:
    """Years off the county's main level, the main level's years, and the breaks that split them.

    A break is a change between two covered years beyond the limit (and beyond the state's change). The longest
    run without breaks (the latest of equals) is the county's main level; another run is off when its median
    differs from the median of the main run's three years nearest to it by more than the limit."""
    x = np.log1p(t)
    segments, notes = [[int(t.index[0])]], []
    for p, y in zip(t.index, t.index[1:]):
        step, moved = float(x[y] - x[p]), _state_between(state, int(p), int(y))
        if _beyond(step, limit, t[p], t[y]) and (np.isnan(moved) or _beyond(step - moved, limit, t[p], t[y])):
            segments.append([])
            notes.append(f"{y} {_pct(step)}" + ("" if np.isnan(moved) else f" (state {_pct(moved)})"))
        segments[-1].append(int(y))
    main = max(segments, key=lambda s: (len(s), s[-1]))
    off = []
    for s in segments:
        near = sorted(main, key=lambda m: (min(abs(m - y) for y in s), m))[:3]
        ref, level = float(np.median(t[near])), float(np.median(t[s]))
        if s is not main and _beyond(np.log1p(level) - np.log1p(ref), limit, ref, level):
            off += s
    return off, main, notes


def court_coverage_breaks(ev: pd.DataFrame, region: str, counties: pd.DataFrame | None = None
                          ) -> tuple[list[Problem], Exclusions]:
    """County-years whose filings are off the county's own level (and the state's trend), or not reported."""
    log = ProblemLog("evictions")
    totals, covered = _county_totals(ev)
    panel = _panel(counties) if counties is not None else None
    found: list[CountyYear] = []
    for county in totals.index:
        found += _gaps(str(county), covered.loc[county], region, log)
        years = covered.loc[county][covered.loc[county]].index
        t = totals.loc[county, years].astype("float64")
        if len(t) < 2:
            continue
        state = state_changes(panel, str(county)) if panel is not None else None
        limit = _threshold(np.log1p(t))
        off, main, notes = _off_level(t, state, limit)
        if off:
            log.add(region, f"{BREAK}: {region}: county {county}: filings in {_span(off)} ({_range(t[off])} a year) "
                    f"are off the county's level in {_span(main)} ({_range(t[main])}) by more than a factor "
                    f"{np.exp(limit):.2f}: court coverage changed, not evictions (breaks: {', '.join(notes)})",
                    column="filings", severity="warning")
            found += [CountyYear(str(county), y, f"{BREAK}: filings off the county's level") for y in off]
    return log.items, Exclusions(county_years=tuple(found))


def _gaps(county: str, covered: pd.Series, region: str, log: ProblemLog) -> list[CountyYear]:
    """Years without court coverage; those between covered years are breaks, warned about."""
    missing = [int(y) for y in covered.index[~covered.to_numpy()]]
    have = covered.index[covered.to_numpy()]
    inside = [y for y in missing if len(have) and have.min() < y < have.max()]
    if inside:
        log.add(region, f"{BREAK}: {region}: county {county}: no filings reported in {_span(inside)} while the "
                "years around have them: no court coverage, not zero evictions", column="filings",
                severity="warning")
    return [CountyYear(county, y, f"{BREAK}: no filings reported (no court coverage)") for y in missing]


def _span(years: Iterable[int]) -> str:
    """Years as runs: 2001-2002, 2008."""
    runs: list[list[int]] = []
    for y in sorted(years):
        if runs and y == runs[-1][-1] + 1:
            runs[-1].append(y)
        else:
            runs.append([y])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def _range(values: pd.Series) -> str:
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:,.0f}" if lo == hi else f"{lo:,.0f}-{hi:,.0f}"
