"""Point-in-time tract features: one row per tract from what was known on the as-of date.

:func:`build_features` starts by cutting every source down to the records
dated, released or published on or before ``as_of`` (:meth:`Sources.known_at`)
and computes everything from that view alone, so a later record cannot change
a feature. A family that does not cover a tract gives NaN there, never 0, and
the ``cov_*`` flags say which families did.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd

from risk.core.settings import FeatureSettings
from risk.features.dictionary import BASE_FEATURES, LAG_FEATURES, feature_names
from risk.features.spatial import neighbours, spatial_lag
from risk.sources import Sources
from risk.sources.demographics import MIN_RELEASE_GAP
from risk.sources.permits import PERMIT_WINDOWS
from risk.sources.registry import dated
from risk.sources.rent import RENT_CHANGE_YEARS

DAYS_PER_YEAR = 365.25
LONGRUN_YEARS = 5
"""A long-run eviction average needs at least this many published years."""
BASELINE_YEARS = 6
"""'Usual' filings for the recent-change feature: as many years as the eviction_surge label's baseline."""


def _rows(demo: pd.DataFrame, measure: str) -> pd.DataFrame:
    """One measure's rows, in the order :func:`build_features` sorted every row once (geoid, release, vintage)."""
    return demo[demo["measure"] == measure]


def _newest(demo: pd.DataFrame, measure: str, index: pd.Index) -> pd.Series:
    """Per tract, the value of the newest release of a measure."""
    return _rows(demo, measure).groupby("geoid")["value"].last().reindex(index).astype("float64")


def _annual_change(demo: pd.DataFrame, measure: str, index: pd.Index) -> pd.Series:
    """Annualised % change from the newest release to the newest one at least two years older.

    Two providers can publish the same estimate on the same day (Eviction Lab
    re-publishes ACS), so the earlier point must be a genuinely older release.
    """
    rows = _rows(demo, measure)
    last = rows.groupby("geoid").last()
    older = rows.join(last["released"].rename("newest"), on="geoid")
    older = older[older["released"] <= older["newest"] - MIN_RELEASE_GAP]
    first = older.groupby("geoid").last()
    years = (last["released"] - first["released"].reindex(last.index)).dt.days / DAYS_PER_YEAR
    ratio = last["value"] / first["value"].reindex(last.index).where(lambda v: v > 0)
    change = 100 * (ratio ** (1 / years) - 1)
    return change.reindex(index).astype("float64")


def _vs_region(values: pd.Series) -> pd.Series:
    """A level over the median tract's in the same release: dollars of different years become comparable."""
    median = values.median()
    return values / median if median and median > 0 else values * np.nan


def _demographic_features(view: Sources, index: pd.Index) -> pd.DataFrame:
    demo = view.demographics
    out = pd.DataFrame(index=index)
    for measure in ("low_income_share", "renter_share", "nonwhite_share", "college_share",
                    "poverty_rate", "rent_burden"):
        values = _newest(demo, measure, index)
        out[measure] = values
        out[f"{measure}_vs_region"] = values - values.median()
    out["acs_median_rent"] = _newest(demo, "median_rent", index)
    out["acs_median_rent_vs_region"] = _vs_region(out["acs_median_rent"])
    out["acs_rent_change_annual"] = _annual_change(demo, "median_rent", index)
    out["acs_median_home_value"] = _newest(demo, "median_home_value", index)
    out["acs_median_home_value_vs_region"] = _vs_region(out["acs_median_home_value"])
    out["acs_home_value_change_annual"] = _annual_change(demo, "median_home_value", index)
    out["renter_households_change_annual"] = _annual_change(demo, "renter_households", index)
    for measure in ("population", "households", "renter_households"):  # what the size floor reads
        out[measure] = _newest(demo, measure, index)
    out["cov_demographics"] = out[["low_income_share", "renter_share", "nonwhite_share"]].notna().any(axis=1)
    return out


def _known_rent(sources: Sources, as_of: pd.Timestamp) -> pd.DataFrame | None:
    """The rent rows known on ``as_of`` that a rent feature can read.

    A tract's level counts only if its newest month is fresh, and its changes look back at most
    five years from that month, so older months never reach a feature. Cutting them before the
    per-tract lookups keeps about six years of months: at national scale, a third of a 20-year table
    of 20 million rows (the backtest's peak memory fell from 6.3 to 5.6 GB at 85,000 tracts).
    """
    rent = sources.rent
    if rent is None:
        return None
    earliest = as_of - sources.max_age["rent"] - pd.DateOffset(years=max(RENT_CHANGE_YEARS), months=1)
    return rent[(rent["available"] <= as_of) & (rent["month"] >= earliest)]


def _rent_features(view: Sources, index: pd.Index, as_of: pd.Timestamp) -> pd.DataFrame:
    names = ["rent_index", "home_value_index", "rent_index_vs_region", "home_value_index_vs_region"]
    names += [f"{s}_change_{k}y" for s in ("rent", "home_value") for k in RENT_CHANGE_YEARS]
    out = pd.DataFrame(np.nan, index=index, columns=names)
    out["cov_rent_index"] = False
    rent = view.rent
    if rent is None or rent.empty:
        return out
    for column, stem in (("zri", "rent"), ("zhvi", "home_value")):
        series = rent.loc[rent[column].notna(), ["geoid", "month", column]]
        if series.empty:
            continue
        # one lookup table keyed by (tract, month): a wide month x tract pivot costs 20M cells at national scale
        values = series.set_index(["geoid", "month"])[column]
        newest = series.loc[series.groupby("geoid", sort=True)["month"].idxmax()].set_index("geoid")
        fresh = (as_of - newest["month"]) <= view.max_age["rent"]
        level = newest[column].where(fresh)
        out[f"{stem}_index"] = level.reindex(index)
        out[f"{stem}_index_vs_region"] = _vs_region(level).reindex(index)
        for k in RENT_CHANGE_YEARS:
            months = ((newest["month"] - pd.DateOffset(years=k)) + pd.offsets.MonthEnd(0)).dt.normalize()
            past = values.reindex(pd.MultiIndex.from_arrays([months.index, months.to_numpy()]))
            out[f"{stem}_change_{k}y"] = (100 * (level / past.to_numpy() - 1)).reindex(index)
        out["cov_rent_index"] |= level.reindex(index).notna()
    return out


def _renters(view: Sources, index: pd.Index) -> pd.Series:
    """Renter households from the newest released census count (never an interpolated year)."""
    return _newest(view.demographics, "renter_households", index)


def _missing_family(index: pd.Index, family: str) -> pd.DataFrame:
    """Every feature of a family missing, and its coverage flag off: the starting point of a family."""
    out = pd.DataFrame(np.nan, index=index, columns=[f.name for f in BASE_FEATURES if f.family == family])
    out[f"cov_{family}"] = False
    return out


def _eviction_features(view: Sources, index: pd.Index, as_of: pd.Timestamp) -> pd.DataFrame:
    out = _missing_family(index, "evictions")
    ev = view.evictions
    if ev is None or ev.empty:
        return out
    renters = _renters(view, index)
    renters = renters.where(renters > 0)
    latest_row = ev.loc[ev["year"].idxmax()]
    if as_of - latest_row["available"] > view.max_age["evictions"]:
        return out  # the series has stopped: stale counts would pass for current ones
    latest = int(latest_row["year"])
    by_year = {k: ev.pivot_table(index="geoid", columns="year", values=k, aggfunc="sum").reindex(index)
               for k in ("filings", "judgments")}

    def window(kind: str, last: int, n: int) -> pd.Series:
        years = list(range(last - n + 1, last + 1))
        counts = by_year[kind].reindex(columns=years)
        return counts.sum(axis=1, min_count=n).where(counts.notna().all(axis=1)) / n

    f12 = window("filings", latest, 1)
    f36 = window("filings", latest, 3)
    f36_before = window("filings", latest - 3, 3)
    out["eviction_filing_rate_12m"] = 100 * f12 / renters
    out["eviction_filing_rate_36m"] = 100 * f36 / renters
    out["eviction_filing_rate_change_3y"] = out["eviction_filing_rate_36m"] - 100 * f36_before / renters
    both = f12.notna() & renters.notna()
    county = 100 * f12[both].sum() / renters[both].sum() if both.any() else np.nan
    out["eviction_filing_rate_vs_county"] = out["eviction_filing_rate_12m"] / county if county else np.nan
    years = by_year["filings"]
    longrun = years.mean(axis=1).where(years.notna().sum(axis=1) >= LONGRUN_YEARS)
    out["eviction_filing_rate_longrun"] = 100 * longrun / renters
    out["eviction_filing_rate_36m_vs_longrun"] = out["eviction_filing_rate_36m"] - out["eviction_filing_rate_longrun"]
    out["eviction_judgment_rate_36m"] = 100 * window("judgments", latest, 3) / renters
    out["cov_evictions"] = out["eviction_filing_rate_12m"].notna()
    ratios = _shrunk_ratios(by_year["filings"], renters, latest)
    out[ratios.columns] = ratios
    return out


def shrunk_ratio(counts: pd.Series, expected: pd.Series) -> pd.Series:
    """Empirical-Bayes (Poisson-gamma) ratio of observed to expected counts.

    A tract with few renters can show a ratio of 0 or 5 by chance; the gamma
    prior, fitted across tracts by moments (Clayton and Kaldor), pulls such
    ratios toward the county's in proportion to how little the tract says.
    """
    ok = counts.notna() & expected.notna() & (expected > 0)
    c, e = counts[ok], expected[ok]
    if c.empty or c.sum() <= 0:
        return pd.Series(np.nan, index=counts.index)
    m = c.sum() / e.sum()
    between = (e * (c / e - m) ** 2).sum() / e.sum() - m / e.mean()
    var = max(between, 1e-3 * m * m)  # no spread beyond Poisson: shrink (almost) all the way
    return ((counts + m * m / var) / (expected + m / var)).where(ok)


def _shrunk_ratios(filings: pd.DataFrame, renters: pd.Series, latest: int) -> pd.DataFrame:
    """Filings against the county's rate over the same years (comparable across years), shrunk, and their change."""
    def ratio(years: list[int]) -> pd.Series:
        counts = filings.reindex(columns=years)
        complete = counts.notna().all(axis=1) & renters.notna()
        total = counts.sum(axis=1).where(complete)
        rate = total[complete].sum() / (renters[complete].sum() * len(years)) if complete.any() else np.nan
        return shrunk_ratio(total, renters * len(years) * rate)

    r12, r36 = ratio([latest]), ratio(list(range(latest - 2, latest + 1)))
    before = ratio(list(range(latest - 5, latest - 2)))
    usual = ratio(list(range(latest - BASELINE_YEARS + 1, latest + 1)))
    return pd.DataFrame({"eviction_filing_ratio_12m": r12, "eviction_filing_ratio_36m": r36,
                         "eviction_filing_ratio_change_1y": 100 * (r12 / usual - 1),
                         "eviction_filing_ratio_change_3y": 100 * (r36 / before - 1)})


def _permit_window(view: Sources, covered: pd.Index, housing: pd.Series, as_of: pd.Timestamp,
                   months: int, max_gap: pd.Timedelta) -> pd.DataFrame:
    """Sums over the window for the covered tracts; NaN for a measure no fresh file covers."""
    start = as_of - pd.DateOffset(months=months)
    permits = view.permits
    assert permits is not None
    files = permits.groupby("file")["issued"].agg(["min", "max"])
    declared = {i.file: i.complete_from for i in view.permit_files if i.complete_from is not None}
    files["min"] = [max(m, declared[f]) if f in declared else m for f, m in files["min"].items()]
    usable = files[(files["min"] <= start) & (files["max"] >= as_of - max_gap)].index
    units_files = {i.file for i in view.permit_files if i.reports_units}
    rows = permits[permits["file"].isin(usable) & (permits["issued"] > start)]
    per_1k = 1000 / housing.reindex(covered).where(lambda h: h > 0)
    out = pd.DataFrame(index=covered)

    def total(frame: pd.DataFrame, column: str | None = None) -> pd.Series:
        agg = frame.groupby("geoid").size() if column is None else frame.groupby("geoid")[column].sum()
        return agg.reindex(covered, fill_value=0).astype("float64")

    any_file = len(usable) > 0
    for kind, name in (("new", "permits_new"), ("demolition", "permits_demolition"),
                       ("addition_alteration", "permits_alteration")):
        out[f"{name}_{months}m"] = total(rows[rows["kind"] == kind]) * per_1k if any_file else np.nan
    unit_rows = rows[rows["file"].isin(units_files)]
    has_units = bool(set(usable) & units_files)
    out[f"units_added_{months}m"] = total(unit_rows, "units_added") * per_1k if has_units else np.nan
    out[f"units_removed_{months}m"] = total(unit_rows, "units_removed") * per_1k if has_units else np.nan
    out[f"permit_value_{months}m"] = total(rows, "value") * per_1k / 1000 if any_file else np.nan
    return out


def _permit_features(view: Sources, index: pd.Index, as_of: pd.Timestamp) -> pd.DataFrame:
    out = _missing_family(index, "permits")
    names = [c for c in out.columns if c != "cov_permits"]
    permits = view.permits
    if permits is None or permits.empty:
        return out
    observed = pd.Index(permits["geoid"].unique())
    covered = index.intersection(pd.Index(sorted(view.permit_coverage)) if view.permit_coverage is not None
                                 else observed)
    housing = _newest(view.demographics, "housing_units", index)
    gap = view.max_age["permits"]
    for months in PERMIT_WINDOWS:
        window = _permit_window(view, covered, housing, as_of, months, gap)
        for column in window.columns:
            if column in out.columns:
                out.loc[covered, column] = window[column]
    out.loc[covered, "cov_permits"] = out.loc[covered, names].notna().any(axis=1)
    return out


def build_features(sources: Sources, as_of: date, settings: FeatureSettings | None = None) -> pd.DataFrame:
    """One row per tract (index ``geoid``) of features known on ``as_of``, in dictionary order."""
    settings = settings or FeatureSettings()
    as_of_ts = pd.Timestamp(as_of)
    # rent is cut by _known_rent, which also drops the months no feature reads, rather than copied whole first
    view = sources.known_at(as_of, [f.name for f in dated() if f.name != "rent"])
    # sorted once for every per-measure lookup (a sort per measure was most of their time at national scale)
    view = replace(view, rent=_known_rent(sources, as_of_ts),
                   demographics=view.demographics.sort_values(["geoid", "released", "vintage"]))
    index = sources.tracts.index.rename("geoid")
    parts = [
        _rent_features(view, index, as_of_ts),
        _eviction_features(view, index, as_of_ts),
        _permit_features(view, index, as_of_ts),
        _demographic_features(view, index),
    ]
    frame = pd.concat(parts, axis=1)
    if settings.spatial_lags:
        key = ("neighbours", settings.contiguity_tolerance_m, id(sources.tracts))
        if key not in sources.cache:  # the same for every origin of a backtest: build the spatial join once
            sources.cache[key] = neighbours(sources.tracts, settings.contiguity_tolerance_m)
        pairs = sources.cache[key]
        lag_sources = [f.name.removeprefix("nbr_") for f in LAG_FEATURES]
        lagged = spatial_lag(frame[lag_sources], pairs)
        lagged.columns = [f.name for f in LAG_FEATURES]
        frame = pd.concat([frame, lagged], axis=1)
    columns = feature_names(settings.spatial_lags)
    for flag in [c for c in columns if c.startswith("cov_")]:
        frame[flag] = frame[flag].astype("float64")
    frame = frame[columns].astype("float64")
    frame.attrs["as_of"] = as_of_ts.date().isoformat()
    return frame
