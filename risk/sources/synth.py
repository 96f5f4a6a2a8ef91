"""Synthetic worlds: every source in its published format, with a planted displacement process.

:func:`write_world` (`risk synth`) writes a UDP-style Census database with one
column suffix per vintage (``udp.csv``), an Eviction Lab tract CSV
(``evictions.csv``), a Zillow tract CSV (``zillow_tract.csv``), a Seattle SDCI
Socrata permit export (``permits_sdci.csv``) with the permit office's tracts
(``coverage.csv``), tract boundaries as a grid of squares (``tracts.geojson``
or ``tracts.gpkg``), a ready-to-run ``config.yaml`` and a ``README.md``.
Tracts lie in California counties (state FIPS 06), so the UDP file, which
stores GEOIDs as integers like the published one, loses their leading zero.
The same arguments give the same bytes.

## The planted process

Every tract i has in every year t a latent pressure

    P[i,t] = z(rent growth[i,t]) + z(new permits[i,t]) + z(low-income share[i]) + NOISE * noise

where z is the z-score across tracts within the year; *rent growth* is the
log change of the tract's Zillow rent index from January of t to January of
t+1, as written in the file; *new permits* is log(1 + new-construction permits
issued in the twelve months to the as-of date of origin t (t+1 plus the
publication lag), per 1,000 housing units); the *low-income share* is the
tract's share of households under 80% of the regional median income (each
vintage publishes it with sampling noise). Eviction filings in year s are
gamma-Poisson (size NB_SIZE) with mean

    renters[i,s] * rate[i] * county[s] * exp(BETA * min(CAP, mean over k = 1..3 of max(P[i,s-k] - THRESHOLD, 0)))

so pressure above the threshold raises filings over the three following
years, the window of the ``eviction_surge`` outcome at origin t. The planted
drivers, as features of ``risk/features/dictionary.py``:

- rent growth: ``rent_change_1y``;
- new-construction permits: ``permits_new_12m``;
- low-income share: ``low_income_share_vs_region``.

Home values, the renter, nonwhite and college shares, poverty, rent burden,
alteration and demolition permits, and the UDP ``rail`` and
``presence_ph_LIHTC`` columns are drawn independently of the pressure; tract
and renter counts matter only through how many filings, and so how much
statistical power, a tract has. A model that learns the process should rank
the three drivers first in its global SHAP importance.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from risk.core.errors import SynthError
from risk.core.files import atomic_path
from risk.core.settings import DEFAULT_SAMPLE_FRACTION, LowIncomeLossSettings

DRIVERS = ("rent_change_1y", "permits_new_12m", "low_income_share_vs_region")
"""The planted drivers' features."""
IRRELEVANT = (
    "home_value_change_1y", "home_value_change_3y", "home_value_index_vs_region", "acs_median_home_value_vs_region",
    "nonwhite_share_vs_region", "college_share_vs_region", "poverty_rate_vs_region", "rent_burden_vs_region",
    "permits_demolition_12m", "permits_demolition_36m", "permits_alteration_12m")
"""Features of inputs drawn independently of the planted process."""

THRESHOLD = 1.5
"""Pressure (standard deviation about 1.8) above which filings rise: a fifth of tract-years cross it."""
BETA, CAP = 1.2, 1.0
"""Filings rise at most exp(1.2) = 3.3-fold: waves the outcome's test can tell from noise, not collapses that
would make every count look overdispersed (which fails the label's null check)."""
NOISE = 0.5
LAG_YEARS = 3
BURN_IN = 3
"""Years simulated before the first written one, so early filings already carry earlier pressure."""
PUBLICATION_LAG_DAYS = 60
"""Eviction counts are usable 60 days after the year ends (the config says so): the origin's as-of date."""
NB_SIZE = 40.0
TRACTS_PER_COUNTY = 1500
CELL_DEG = 0.01
WEST, SOUTH = -121.5, 35.0
STATE_FIPS, STATE = "06", "California"
COUNTIES = (
    "Alameda,Alpine,Amador,Butte,Calaveras,Colusa,Contra Costa,Del Norte,El Dorado,Fresno,Glenn,Humboldt,Imperial,"
    "Inyo,Kern,Kings,Lake,Lassen,Los Angeles,Madera,Marin,Mariposa,Mendocino,Merced,Modoc,Mono,Monterey,Napa,"
    "Nevada,Orange,Placer,Plumas,Riverside,Sacramento,San Benito,San Bernardino,San Diego,San Francisco,San Joaquin,"
    "San Luis Obispo,San Mateo,Santa Barbara,Santa Clara,Santa Cruz,Shasta,Sierra,Siskiyou,Solano,Sonoma,"
    "Stanislaus,Sutter,Tehama,Trinity,Tulare,Tuolumne,Ventura,Yolo,Yuba").split(",")
"""California's 58 counties in FIPS order (001, 003, ..., 115)."""
MIN_YEARS = 9
"""Six baseline years and a three-year window make the first ``eviction_surge`` origin."""


@dataclass(frozen=True)
class _Vintage:
    year: int
    label: str
    released: date


def _vintages(first: int, last: int) -> list[_Vintage]:
    """A decennial census in the first year, then a 5-year ACS every six years, each released by the last year."""
    out = [_Vintage(first, f"Census {first}", date(first + 2, 8, 1))]
    return out + [_Vintage(y, f"ACS {y - 4}-{y}", date(y + 1, 12, 10)) for y in range(first + 6, last, 6)]


def _as_of(year: int) -> np.datetime64:
    return np.datetime64(date(year, 12, 31) + timedelta(days=PUBLICATION_LAG_DAYS))


def _z(x: np.ndarray) -> np.ndarray:
    """z-score of each column across tracts: only a tract's standing within its year matters."""
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _ar1(rng: np.random.Generator, n: int, t: int, rho: float, sd: float) -> np.ndarray:
    """AR(1) paths (n x t) with stationary standard deviation ``sd``: markets have momentum."""
    out = rng.normal(0.0, sd * math.sqrt(1 - rho * rho), (n, t))
    out[:, 0] = rng.normal(0.0, sd, n)
    for k in range(1, t):
        out[:, k] += rho * out[:, k - 1]
    return out


class _Simulation:
    """Every array of one world; year index k = 0..T-1 is year first - BURN_IN + k."""

    def __init__(self, n: int, years: int, first: int, seed: int, regions: int = 1) -> None:
        self.regions = regions
        # one stream per part, so that changing one part leaves the others' numbers alone
        rng = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
        self.n, self.first, self.last, self.T = n, first, first + years - 1, years + BURN_IN
        self.years = np.arange(first - BURN_IN, first + years)
        self.vintages = _vintages(first, self.last)
        self._tracts(rng[0])
        self._market(rng[1])
        self._permits(rng[2])
        self.pressure = (_z(self.rent_growth) + _z(np.log1p(self.new_permits)) + _z(self.low_income[:, None])
                         + NOISE * rng[3].normal(0, 1, (n, self.T)))
        self._evictions(rng[4])
        self.published = self._published(rng[5])

    def _tracts(self, rng: np.random.Generator) -> None:
        n = self.n
        counties = min(len(COUNTIES), max(math.ceil(n / TRACTS_PER_COUNTY), self.regions))
        self.county = np.arange(n) * counties // n  # contiguous bands of grid rows
        k = np.arange(n) - np.searchsorted(self.county, np.arange(counties))[self.county]
        self.county_fips = np.array([f"{STATE_FIPS}{2 * c + 1:03d}" for c in range(counties)])
        self.geoid = np.char.add(self.county_fips[self.county], np.char.zfill((100 * (k + 1)).astype(str), 6))
        self.name = (k + 1).astype(str)
        cols = math.ceil(math.sqrt(n))
        edges = np.arange(cols + 2) * CELL_DEG  # from integer positions: neighbours share identical corners
        col, row = np.arange(n) % cols, np.arange(n) // cols
        self.x0, self.x1, self.y0, self.y1 = (WEST + edges[col], WEST + edges[col + 1], SOUTH + edges[row],
                                              SOUTH + edges[row + 1])
        self.pop = np.clip(rng.lognormal(math.log(4200), 0.3, n), 800, 15000)
        self.hh = self.pop / rng.uniform(2.2, 3.0, n)
        self.hu = self.hh / (1 - rng.uniform(0.03, 0.10, n))
        self.renter, self.low_income = rng.beta(4.2, 5.8, n), rng.beta(4.0, 6.0, n)
        self.nonwhite, self.college = rng.beta(2.5, 3.5, n), rng.beta(3.0, 5.0, n)
        self.poverty, self.burden = rng.beta(2.0, 14.0, n), np.clip(rng.normal(0.31, 0.04, n), 0.15, 0.6)
        self.race = rng.dirichlet([4, 5, 0.3, 4, 0.3, 1, 0.4], n)  # af-am, hispanic, am-ind, asian, nh-pi, multi, other
        self.rate, self.judged = rng.lognormal(math.log(2.5), 0.5, n), rng.beta(9, 11, n)  # filings per 100 renters
        # income follows the low-income share; it is no model feature, so it cannot stand in for the driver
        self.income = 65000 * np.exp(-1.5 * (self.low_income - 0.4)) * rng.lognormal(0, 0.08, n)
        self.growth = rng.normal(0.006, 0.01, (2, n))  # households, renters
        self.zri0, self.zhvi0 = rng.lognormal(math.log(1100), 0.25, n), rng.lognormal(math.log(260000), 0.35, n)
        self.flags = (rng.random((2, n)) < [[0.05], [0.1]]).astype(np.int8)  # UDP's rail and LIHTC columns

    def _market(self, rng: np.random.Generator) -> None:
        """Monthly rent and home-value indices: AR(1) tract growth around a regional trend, month noise."""
        n, T = self.n, self.T
        for key, level, trend, step in (("zri", self.zri0, 0.03, 1.0), ("zhvi", self.zhvi0, 0.04, 100.0)):
            growth = trend + rng.normal(0, 0.01, T) + _ar1(rng, n, T, 0.5, 0.04)
            jan = np.log(level)[:, None] + np.concatenate([np.zeros((n, 1)), growth.cumsum(axis=1)], axis=1)
            months = (jan[:, :-1, None] + growth[:, :, None] * np.arange(12) / 12).reshape(n, 12 * T)
            months = np.concatenate([months, jan[:, -1:]], axis=1).astype(np.float32)  # float32: 85,000 x 276 x 2
            months += 0.004 * rng.standard_normal(months.shape, dtype=np.float32)
            setattr(self, key, np.round(np.exp(months) / step) * step)
        self.rent_growth = np.diff(np.log(self.zri[:, ::12].astype(np.float64)), axis=1)  # as written

    def _permits(self, rng: np.random.Generator) -> None:
        """Permits of pressure year k are issued in (as-of date of year k-1, as-of date of year k]."""
        n, T = self.n, self.T
        per_k = self.hu[:, None] / 1000
        counts = [rng.poisson(lam) for lam in (per_k * 0.5 * np.exp(_ar1(rng, n, T, 0.6, 0.7) - 0.245),
                                               per_k * 0.6 * rng.lognormal(-0.125, 0.5, (n, T)),
                                               np.broadcast_to(per_k * 0.08, (n, T)))]  # new, alteration, demolition
        self.new_permits = 1000 * counts[0] / self.hu[:, None]
        starts = np.array([_as_of(y - 1) for y in self.years])
        days = (np.array([_as_of(y) for y in self.years]) - starts).astype(int)
        cells = [np.repeat(np.arange(n * T), c.ravel()) for c in counts]
        kind = np.concatenate([np.full(len(c), code, np.int8) for code, c in enumerate(cells)])
        cell = np.concatenate(cells)
        issued = starts[cell % T] + 1 + (rng.random(len(cell)) * days[cell % T]).astype("timedelta64[D]")
        keep = (issued >= np.datetime64(f"{self.first}-01-01")) & (issued <= np.datetime64(f"{self.last}-12-31"))
        order = np.lexsort((cell[keep], issued[keep]))
        kind, tract, issued = kind[keep][order], cell[keep][order] // T, issued[keep][order]
        m = len(kind)
        units = np.where(kind == 0, 1 + np.floor(rng.lognormal(0.7, 1.1, m)), (kind == 1) & (rng.random(m) < 0.1))
        removed = np.where(kind == 2, rng.integers(1, 4, m), (kind == 0) & (rng.random(m) < 0.3))
        value = np.where(kind == 0, units * 250000, np.where(kind == 1, 50000, 20000)) * rng.lognormal(0, 0.5, m)
        self.permits = {"kind": kind, "tract": tract, "issued": issued, "units": units.astype(np.int32),
                        "removed": removed.astype(np.int32), "value": np.round(value, -2).astype(np.int64),
                        "applied": issued - rng.integers(30, 300, m).astype("timedelta64[D]"),
                        "lat": self.y0[tract] + CELL_DEG * rng.uniform(0.05, 0.95, m),  # inside, off the edges
                        "lon": self.x0[tract] + CELL_DEG * rng.uniform(0.05, 0.95, m)}

    def _evictions(self, rng: np.random.Generator) -> None:
        excess = np.maximum(self.pressure - THRESHOLD, 0)
        lagged = np.zeros_like(excess)
        for k in range(1, LAG_YEARS + 1):
            lagged[:, k:] += excess[:, :-k] / LAG_YEARS
        trend = np.exp(self.growth[1][:, None] * (self.years - self.first))
        self.renters = self.hh[:, None] * self.renter[:, None] * trend
        county = np.exp(np.cumsum(rng.normal(0, 0.05, self.T)))
        mu = self.renters * self.rate[:, None] / 100 * county * np.exp(BETA * np.minimum(lagged, CAP))
        self.filings = rng.poisson(mu * rng.gamma(NB_SIZE, 1 / NB_SIZE, mu.shape))
        self.judgments = rng.binomial(self.filings, self.judged[:, None])

    def _published(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Per UDP column stem, tract x vintage values as each release publishes them (with sampling noise)."""
        at = np.array([v.year - self.first for v in self.vintages])
        k, shape = at + BURN_IN, (self.n, len(at))
        noise = np.where(at == 0, 0.01, 0.03)  # decennial long form against 5-year ACS

        def count(x: np.ndarray) -> np.ndarray:
            return np.round(x * rng.lognormal(0, noise, shape))

        def share(x: np.ndarray, drift: float = 0.0) -> np.ndarray:
            return np.clip(x[:, None] + drift * at + rng.normal(0, noise, shape), 0.005, 0.995).round(4)

        grown = np.exp(self.growth[0][:, None] * at)
        hh, li = count(self.hh[:, None] * grown), share(self.low_income)
        out = {"pop": count(self.pop[:, None] * grown), "hh": hh, "hu": count(self.hu[:, None] * grown),
               "rhu": np.minimum(count(self.renters[:, k]), hh)}
        out |= {"per_rent": (out["rhu"] / hh).round(4), "per_nonwhite": share(self.nonwhite, 0.003),
                "per_col": share(self.college, 0.004), "per_all_li": li, "all_li_count": np.round(li * hh),
                "mrent": count(0.85 * self.zri[:, 12 * k + 6]),  # July of the vintage's year
                "mhval": np.round(count(0.9 * self.zhvi[:, 12 * k + 6]), -2),
                "hinc": count(self.income[:, None] * 1.025 ** at)}
        for col in ("mrent", "mhval"):
            out[col][rng.random(shape) < 0.002] = -666666666  # the Census sentinel that leaks into UDP's file
        return out | {"poverty": share(self.poverty), "burden": share(self.burden)}


def _write_csv(path: Path, columns: dict[str, object], quote: bool = False) -> None:
    """A CSV through Arrow (tens of millions of rows in seconds), its header unquoted like the published files'."""
    table = pa.table({k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in columns.items()})
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write((",".join(columns) + "\n").encode())
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed" if quote else "none")
        pacsv.write_csv(table, fh, options)


def _ints(x: np.ndarray) -> pa.Array:
    """Whole numbers as integers; Census sentinels become blanks, as Eviction Lab leaves them."""
    return pa.array(x.astype(np.int64), mask=x < 0)


def _strings(values: list[str] | np.ndarray, index: np.ndarray) -> pa.DictionaryArray:
    """values[index] without making millions of Python strings."""
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(list(values)))


def _write_geojson(sim: _Simulation, path: Path) -> None:
    """Squares as a GeoJSON FeatureCollection, written directly: several times faster than through GDAL."""
    ring = "[[[{0:.7f}, {1:.7f}], [{2:.7f}, {1:.7f}], [{2:.7f}, {3:.7f}], [{0:.7f}, {3:.7f}], [{0:.7f}, {1:.7f}]]]"
    features = ",\n".join(
        f'{{"type": "Feature", "properties": {{"STATEFP": "{g[:2]}", "COUNTYFP": "{g[2:5]}", "TRACTCE": "{g[5:]}", '
        f'"GEOID": "{g}", "NAME": "{name}"}}, "geometry": {{"type": "Polygon", "coordinates": '
        f'{ring.format(x0, y0, x1, y1)}}}}}' for g, name, x0, y0, x1, y1 in zip(
            sim.geoid.tolist(), sim.name.tolist(), sim.x0.tolist(), sim.y0.tolist(), sim.x1.tolist(), sim.y1.tolist()))
    crs = '"crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}'
    with atomic_path(path) as tmp:
        tmp.write_text(f'{{"type": "FeatureCollection", "name": "tracts", {crs}, "features": [\n{features}\n]}}\n')


def _write_gpkg(sim: _Simulation, path: Path) -> None:
    import geopandas as gpd
    import pyogrio
    import shapely

    g = sim.geoid.tolist()
    frame = gpd.GeoDataFrame(
        {"STATEFP": STATE_FIPS, "COUNTYFP": [x[2:5] for x in g], "TRACTCE": [x[5:] for x in g], "GEOID": g,
         "NAME": sim.name}, geometry=shapely.box(sim.x0, sim.y0, sim.x1, sim.y1), crs="EPSG:4326")
    # a GeoPackage records when it was written: pin that, so the same seed gives the same bytes
    before = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": f"{sim.last}-12-31T00:00:00Z"})
    with atomic_path(path) as tmp:
        scratch = tmp.with_name(tmp.name + ".gpkg")  # GDAL wants the extension
        try:
            frame.to_file(scratch, driver="GPKG", engine="pyogrio", layer="tracts")
            os.replace(scratch, tmp)
        finally:
            pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": before})
            scratch.unlink(missing_ok=True)


def _write_udp(sim: _Simulation, path: Path) -> None:
    columns: dict[str, object] = {"GEOID": sim.geoid.astype(np.int64), "FIPS": sim.geoid.astype(np.int64)}
    for j, v in enumerate(sim.vintages):
        for stem, x in sim.published.items():
            if stem not in ("poverty", "burden"):  # Eviction Lab's columns only
                values = x[:, j] if stem.startswith("per_") else x[:, j].astype(np.int64)
                columns[f"{stem}_{v.year % 100:02d}"] = values
    columns["rail"], columns["presence_ph_LIHTC"] = sim.flags  # read by no loader, as in the published database
    _write_csv(path, columns)


def _write_evictions(sim: _Simulation, path: Path) -> None:
    n, years, pub = sim.n, np.arange(sim.first, sim.last + 1), sim.published
    tract, year = np.repeat(np.arange(n), len(years)), np.tile(years, n)
    vin = np.searchsorted([v.year for v in sim.vintages], year, side="right") - 1  # newest release at or before
    filings, judged = sim.filings[:, BURN_IN:].ravel(), sim.judgments[:, BURN_IN:].ravel()
    renters = np.round(sim.renters[:, BURN_IN:].ravel())
    race = np.round(100 * pub["per_nonwhite"][tract, vin][:, None] * sim.race[tract], 2)

    def pct(stem: str) -> np.ndarray:
        return np.round(100 * pub[stem][tract, vin], 2)

    counties = [f"{COUNTIES[int(f[2:]) // 2]} County, {STATE}" for f in sim.county_fips]
    columns: dict[str, object] = {
        "GEOID": _strings(sim.geoid, tract), "year": year, "name": _strings(sim.name, tract),
        "parent-location": _strings(counties, sim.county[tract]), "population": _ints(pub["pop"][tract, vin]),
        "poverty-rate": pct("poverty"), "renter-occupied-households": _ints(renters),
        "pct-renter-occupied": pct("per_rent"), "median-gross-rent": _ints(pub["mrent"][tract, vin]),
        "median-household-income": _ints(pub["hinc"][tract, vin]),
        "median-property-value": _ints(pub["mhval"][tract, vin]), "rent-burden": pct("burden"),
        "pct-white": np.round(100 - race.sum(axis=1), 2)}
    for j, group in enumerate(("af-am", "hispanic", "am-ind", "asian", "nh-pi", "multiple", "other")):
        columns[f"pct-{group}"] = race[:, j]
    zero = np.zeros(len(year), np.int8)
    columns |= {"eviction-filings": filings, "evictions": judged, "eviction-rate": np.round(100 * judged / renters, 2),
                "eviction-filing-rate": np.round(100 * filings / renters, 2), "low-flag": zero, "imputed": zero,
                "subbed": zero}
    _write_csv(path, columns, quote=True)  # "Alameda County, California" needs its quotes


def _write_zillow(sim: _Simulation, path: Path) -> None:
    months = np.arange(np.datetime64(f"{sim.first}-02"), np.datetime64(f"{sim.last + 1}-02"), dtype="datetime64[M]")
    written = slice(12 * BURN_IN, 12 * sim.T)
    _write_csv(path, {"ZHVI": sim.zhvi[:, written].astype(np.int32).ravel(),
                      "date.home": np.tile(months.astype("datetime64[D]") - 1, sim.n),  # month ends
                      "GEO2010": _strings(sim.geoid, np.repeat(np.arange(sim.n), len(months))),
                      "ZRI": sim.zri[:, written].astype(np.int32).ravel()})


def _write_permits(sim: _Simulation, path: Path, coverage: Path) -> None:
    p, m = sim.permits, len(sim.permits["kind"])
    ids = pc.binary_join_element_wise(pc.cast(pa.array(np.arange(6_000_000, 6_000_000 + m)), pa.string()), "CN", "-")
    _write_csv(path, {
        "PermitNum": ids,
        "PermitClass": _strings(["Multifamily", "Single Family/Duplex", "Commercial"], p["tract"] % 3),
        "PermitTypeMapped": _strings(["Building", "Demolition"], p["kind"] == 2),
        "PermitTypeDesc": _strings(["New", "Addition/Alteration", "Demolition"], p["kind"]),
        "HousingUnits": p["units"], "HousingUnitsRemoved": p["removed"], "HousingUnitsAdded": p["units"],
        "EstProjectCost": p["value"], "AppliedDate": p["applied"], "IssuedDate": p["issued"],
        "StatusCurrent": _strings(["Completed", "Issued"], p["issued"] > np.datetime64(f"{sim.last - 1}-06-30")),
        "OriginalZip": _strings([f"9{i:04d}" for i in range(len(sim.county_fips))], sim.county[p["tract"]]),
        "Latitude": np.round(p["lat"], 7), "Longitude": np.round(p["lon"], 7)})
    _write_csv(coverage, {"GEOID": sim.geoid})  # the whole region publishes permits


def _sources(sim: _Simulation, geometry: str, pad: str, shared: bool) -> str:
    """The ``sources`` block, every line indented by ``pad``; ``shared``: one set of files for several regions."""
    ends = [v.year for v in sim.vintages[1:]] + [sim.last + 1]
    vintages = "".join(f'\n      - {{suffix: "{v.year % 100:02d}", label: "{v.label}", released: {v.released}}}'
                       for v in sim.vintages)
    steps = "".join(f'\n      - {{first_year: {v.year}, last_year: {end - 1}, label: "{v.label}", '
                    f'released: {v.released}}}' for v, end in zip(sim.vintages, ends))
    anchors = "".join(f"\n      - {{year: {y}, released: {y + 1}-08-01}}" for y in (sim.first, sim.first + 10)
                      if y <= sim.last)
    outside = ("\n  max_outside_share: 1.0   # one permit file for every region: most permits lie in the others"
               if shared else "")
    block = f"""\
sources:
  boundaries: {{path: tracts.{geometry}}}
  demographics:
    format: udp_database
    path: udp.csv
    vintages:{vintages}
  evictions:
    path: evictions.csv
    available_after_days: {PUBLICATION_LAG_DAYS}
    required: true            # the outcome's own measure: runs default to the last date it is fresh
    vintages:                 # each year's demographic columns repeat the newest release at or before it{steps}
    renter_anchors:           # decennial renter counts{anchors}
  rent:
    format: zillow_tract
    path: zillow_tract.csv
  permits:
    files:
      - {{path: permits_sdci.csv, schema: seattle_sdci}}
    coverage_tracts: coverage.csv{outside.replace(chr(10), chr(10) + "  ")}"""
    return "\n".join(pad + line for line in block.splitlines()) + "\n"


def _quoted(values: Iterable[str]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def _config(sim: _Simulation, geometry: str) -> str:
    head = "# A synthetic world written by `risk synth`; README.md beside this file describes the planted process.\n"
    if sim.regions == 1:
        places = (f"region:\n  name: Synthetic region ({sim.n} tracts, {STATE})\n"
                  f"  county_fips: [{_quoted(sim.county_fips)}]\n"
                  + _sources(sim, geometry, "", False))
    else:
        places = "regions:                    # each region keeps its own counties' rows of the shared files\n"
        for k, counties in enumerate(np.array_split(sim.county_fips, sim.regions), start=1):
            places += (f"  - name: Synthetic region {k}\n"
                       f"    county_fips: [{_quoted(counties)}]\n"
                       + _sources(sim, geometry, "    ", True))
    # each vintage's sampling fraction, as the label has always assumed (the default's, else ACS's 1 in 12)
    defaults = LowIncomeLossSettings().sample_fractions
    fractions = ", ".join(f'"{v.year % 100:02d}": {defaults.get(f"{v.year % 100:02d}", DEFAULT_SAMPLE_FRACTION)!r}'
                          for v in sim.vintages)
    return head + places + f"""\
model:
  outcome: eviction_surge
  eviction_surge:
    first_origin: {sim.first + 5}   # six baseline years from the first written year
  low_income_loss:
    sample_fractions: {{{fractions}}}
"""


def _readme(sim: _Simulation, seed: int, files: dict[str, Path]) -> str:
    process = textwrap.dedent((__doc__ or "").partition("## The planted process\n")[2])
    return (f"# Synthetic world: {sim.n} tracts, {sim.first}-{sim.last}, seed {seed}\n\n"
            f"Written by `risk synth --tracts {sim.n} --years {sim.last - sim.first + 1} --seed {seed} --start-year "
            f"{sim.first}` (`risk/sources/synth.py`) in the published formats the loaders read; `config.yaml` uses every file. "
            f"Nothing here is real: the tracts are squares on a grid. The series end in {sim.last}: run the weekly "
            f"job inside them (`risk --config config.yaml run --as-of {sim.last + 1}-03-01`; its first run "
            "backtests, which needs at least 14 years).\n\n"
            + "".join(f"- `{p.name}`\n" for p in files.values())
            + f"\n## The planted process\n{process.rstrip()}\n\nParameters: THRESHOLD = {THRESHOLD}, "
            f"BETA = {BETA}, CAP = {CAP}, NOISE = {NOISE}, NB_SIZE = {NB_SIZE:g}.\n")


def write_world(out: Path, tracts: int, years: int, seed: int = 0, start_year: int = 2000,
                geometry: str = "geojson", regions: int = 1) -> dict[str, Path]:
    """Write the source files, ``config.yaml`` and ``README.md`` of a synthetic world into ``out``; returns their
    paths by role (``config``, ``readme``, ``boundaries``, ``demographics``, ``evictions``, ``rent``, ...)."""
    last = start_year + years - 1
    if years < MIN_YEARS:
        raise SynthError(f"--years must be at least {MIN_YEARS}: six baseline years and a three-year window")
    if not 4 <= tracts <= len(COUNTIES) * 9999:
        raise SynthError(f"--tracts must be between 4 and {len(COUNTIES) * 9999}")
    if last >= date.today().year:
        raise SynthError(f"the last year, {last}, has not ended yet: choose an earlier --start-year")
    if geometry not in ("geojson", "gpkg"):
        raise SynthError(f"--geometry must be geojson or gpkg, not {geometry}")
    if not 1 <= regions <= min(len(COUNTIES), tracts):
        raise SynthError(f"--regions must be between 1 and {min(len(COUNTIES), tracts)}")
    sim = _Simulation(tracts, years, start_year, seed, regions)
    out = Path(out)
    files = {name: out / f for name, f in (("boundaries", f"tracts.{geometry}"), ("demographics", "udp.csv"),
                                           ("evictions", "evictions.csv"), ("rent", "zillow_tract.csv"),
                                           ("permits", "permits_sdci.csv"), ("coverage", "coverage.csv"))}
    # Arrow formats CSV without holding the GIL: the biggest file (Zillow) is written while the others are built
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(_write_zillow, sim, files["rent"]),
                pool.submit(_write_geojson if geometry == "geojson" else _write_gpkg, sim, files["boundaries"]),
                pool.submit(_write_udp, sim, files["demographics"]),
                pool.submit(_write_evictions, sim, files["evictions"]),
                pool.submit(_write_permits, sim, files["permits"], files["coverage"])]
        for job in jobs:
            job.result()
    written = {"config": out / "config.yaml", "readme": out / "README.md"}
    for path, text in ((written["config"], _config(sim, geometry)), (written["readme"], _readme(sim, seed, files))):
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    umask = os.umask(0)  # the only way to read it; no other thread of ours runs now
    os.umask(umask)
    for path in (written | files).values():
        os.chmod(path, 0o666 & ~umask)  # data to share, not the private mode of atomic_path's temporary files
    return written | files
