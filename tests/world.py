"""A small, real-format world for tests: six square tracts near Seattle and one file per source.

Every file is written in the published format the loaders read (Eviction Lab
CSV, UDP database columns, Zillow tract/ZIP, Seattle Socrata permits,
GeoJSON), with numbers that are easy to check by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import yaml
from shapely.geometry import box

from risk.core.settings import Settings, load_settings
from risk.sources.synth import write_world

GEOIDS = [f"53033{n:06d}" for n in (100, 200, 300, 400, 500, 600)]
CITY = GEOIDS[:3]
"""Tracts inside the (pretend) city whose permit office publishes permits."""
OUTSIDE = "53061040100"
"""A tract of another county, present in the demographic file and dropped."""
_W, _H = 0.02, 0.02
_X0, _Y0 = -122.40, 47.55


def cell(i: int) -> tuple[float, float, float, float]:
    """Bounds of tract i in a 3-by-2 grid (0..2 bottom row, 3..5 top row)."""
    col, row = i % 3, i // 3
    return (_X0 + col * _W, _Y0 + row * _H, _X0 + (col + 1) * _W, _Y0 + (row + 1) * _H)


def centre(i: int) -> tuple[float, float]:
    """(lat, lon) of the middle of tract i."""
    x0, y0, x1, y1 = cell(i)
    return (y0 + y1) / 2, (x0 + x1) / 2


@dataclass
class World:
    """Paths of the files of one test world."""

    root: Path
    config: Path
    boundaries: Path
    udp: Path
    evictions: Path
    zillow_tract: Path
    zillow_zip: Path
    crosswalk: Path
    permits_legacy: Path
    permits_sdci: Path
    coverage: Path


def _boundaries(path: Path) -> None:
    gdf = gpd.GeoDataFrame(
        {"GEOID": GEOIDS, "NAME": [str(n) for n in range(1, 7)]},
        geometry=[box(*cell(i)) for i in range(6)], crs="EPSG:4326")
    gdf.to_file(path, driver="GeoJSON")


def _udp(path: Path) -> None:
    rows = []
    for i, g in enumerate([*GEOIDS, OUTSIDE]):
        rows.append({
            "GEOID": int(g),  # the published file stores GEOIDs as integers
            "pop_00": 3000 + 100 * i, "hh_00": 1200 + 50 * i, "hu_00": 1300 + 50 * i, "rhu_00": 500 + 40 * i,
            "per_rent_00": 0.40 + 0.05 * i, "per_nonwhite_00": 0.20 + 0.04 * i, "per_col_00": 0.30 + 0.02 * i,
            "per_all_li_00": 0.30 + 0.03 * i, "mrent_00": 600 + 10 * i, "mhval_00": 150000 + 1000 * i,
            "hinc_00": 40000 + 500 * i,
            "mrent_12": 900 + 20 * i if i != 2 else -666666666, "mhval_12": 300000 + 5000 * i,
            "pop_18": 3500 + 100 * i, "hh_18": 1400 + 50 * i, "hu_18": 1500 + 50 * i, "rhu_18": 650 + 40 * i,
            "per_rent_18": 0.45 + 0.05 * i, "per_nonwhite_18": 0.25 + 0.04 * i, "per_col_18": 0.40 + 0.02 * i,
            "per_all_li_18": 0.28 + 0.03 * i, "mrent_18": 1200 + 30 * i, "mhval_18": 450000 + 9000 * i,
            "hinc_18": 70000 + 800 * i,
        })
    pd.DataFrame(rows).to_csv(path, index=False)


def _evictions(path: Path) -> None:
    rows = []
    for i, g in enumerate(GEOIDS):
        for year in range(2000, 2017):
            renters = 500 + 40 * i + 10 * (year - 2000)  # interpolated between censuses, like the real file
            filings = 10 + i + (year % 3)
            demo_year = 2000 if year < 2005 else 2005 if year < 2010 else 2010 if year == 2010 else 2011
            rows.append({
                "GEOID": g, "year": year, "name": str(i + 1), "parent-location": "King County, Washington",
                "population": 3000 + 100 * i, "poverty-rate": 10.0 + i + (demo_year - 2000) / 10,
                "renter-occupied-households": float(renters), "pct-renter-occupied": 40.0 + 5 * i,
                "median-gross-rent": 700.0 + 10 * i + (demo_year - 2000) * 20,
                "median-household-income": 45000.0 + 500 * i, "median-property-value": 200000.0 + 1000 * i,
                "rent-burden": 28.0 + i, "pct-white": 70.0 - 3 * i, "pct-af-am": 10.0, "pct-hispanic": 8.0,
                "pct-am-ind": 1.0, "pct-asian": 9.0, "pct-nh-pi": 0.5, "pct-multiple": 1.0, "pct-other": 0.5,
                "eviction-filings": float(filings), "evictions": float(filings // 2),
                "eviction-rate": round(100 * (filings // 2) / renters, 2),
                "eviction-filing-rate": round(100 * filings / renters, 2),
                "low-flag": 1, "imputed": 0, "subbed": 0,
            })
    pd.DataFrame(rows).to_csv(path, index=False)


def _months(start: str, end: str) -> pd.DatetimeIndex:
    return pd.date_range(start, end, freq="ME")


def _zillow_tract(path: Path) -> None:
    rows = []
    for i, g in enumerate(GEOIDS):
        for k, m in enumerate(_months("2005-01-31", "2016-06-30")):
            zri = 1000 + 10 * i + 5 * k if m >= pd.Timestamp("2010-09-30") else np.nan
            rows.append({"ZHVI": 200000 + 1000 * i + 500 * k, "date.home": f"{m:%Y-%m-%d}", "GEO2010": g, "ZRI": zri})
    pd.DataFrame(rows).to_csv(path, index=False, na_rep="NA")


def _zillow_zip(path: Path, crosswalk: Path) -> None:
    months = _months("2010-01-31", "2016-06-30")
    zips = ["98101", "98102"]
    data = {"RegionID": [1, 2], "SizeRank": [1, 2], "RegionName": [int(z) for z in zips], "RegionType": "zip",
            "StateName": "WA", "State": "WA", "City": "Seattle", "Metro": "Seattle", "CountyName": "King County"}
    frame = pd.DataFrame(data)
    for k, m in enumerate(months):
        frame[f"{m:%Y-%m-%d}"] = [300000 + 1000 * k, 500000 + 2000 * k]
    frame.to_csv(path, index=False)
    # tract 1 lies in both ZIPs (weights .75/.25); the others in one ZIP each
    rows = [("98101", GEOIDS[0], 0.75), ("98102", GEOIDS[0], 0.25)]
    rows += [("98101" if i < 3 else "98102", g, 1.0) for i, g in enumerate(GEOIDS) if i > 0]
    pd.DataFrame(rows, columns=["ZIP", "TRACT", "RES_RATIO"]).assign(
        BUS_RATIO=0.0, OTH_RATIO=0.0, TOT_RATIO=1.0).to_csv(crosswalk, index=False)


def _permits(legacy: Path, sdci: Path, coverage: Path) -> None:
    legacy_rows, n = [], 0
    for i in range(3):
        lat, lon = centre(i)
        for d in pd.date_range("2010-12-06", "2015-12-04", freq="45D"):
            n += 1
            action = ["NEW", "ADD/ALT", "DEMOLITION", "ALTER"][n % 4]
            legacy_rows.append({
                "Application/Permit Number": str(6000000 + n), "Permit Type": "Demolition" if action == "DEMOLITION"
                else "Construction", "Address": f"{n} MAIN ST", "Category": "COMMERCIAL", "Action Type": action,
                "Work Type": "Plan Review", "Value": 10000 * (i + 1), "Application Date": f"{d:%m/%d/%y}",
                "Issue Date": f"{d:%-m/%-d/%y}", "Final Date": "", "Status": "Permit Closed",
                "Latitude": lat, "Longitude": lon})
    pd.DataFrame(legacy_rows).to_csv(legacy, index=False)
    sdci_rows = []
    for i in range(3):
        lat, lon = centre(i)
        for d in pd.date_range("2013-01-15", "2025-10-01", freq="60D"):
            n += 1
            sdci_rows.append({
                "PermitNum": f"{6100000 + n}-CN", "PermitClass": "Multifamily", "PermitClassMapped": "Residential",
                "PermitTypeMapped": "Building", "PermitTypeDesc": "New" if n % 3 else "Addition/Alteration",
                "HousingUnits": 4, "HousingUnitsRemoved": 1 if n % 5 == 0 else 0, "HousingUnitsAdded": 4,
                "EstProjectCost": f"{250000 * (i + 1):,}", "AppliedDate": f"{d - pd.Timedelta(days=90):%Y-%m-%d}",
                "IssuedDate": f"{d:%Y-%m-%d}", "CompletedDate": "", "StatusCurrent": "Completed",
                "OriginalAddress1": f"{n} PINE ST", "OriginalZip": "98101", "Latitude": lat, "Longitude": lon,
                "DwellingUnitType": "Townhouse", "HousingCategory": "Middle Housing"})
    pd.DataFrame(sdci_rows).to_csv(sdci, index=False)
    pd.DataFrame({"GEOID": CITY}).to_csv(coverage, index=False)


CONFIG = """\
region:
  name: Test County
  county_fips: ["53033"]
paths:
  database: state/risk.sqlite
  models: models
  reports: reports
  features: state/features
sources:
  boundaries: {{path: tracts.geojson}}
  demographics:
    format: udp_database
    path: udp.csv
    vintages:
      - {{suffix: "00", label: "Census 2000", released: 2002-08-01, medians_reliable: false}}
      - {{suffix: "12", label: "ACS 2008-2012", released: 2013-12-17}}
      - {{suffix: "18", label: "ACS 2014-2018", released: 2019-12-19}}
  evictions:
    path: evictions.csv
    available_after_days: 60
    vintages:
      - {{first_year: 2000, last_year: 2004, label: "Census 2000", released: 2002-08-01}}
      - {{first_year: 2005, last_year: 2009, label: "ACS 2005-2009", released: 2010-12-14}}
      - {{first_year: 2010, last_year: 2010, label: "Census 2010", released: 2013-12-17}}
      - {{first_year: 2011, last_year: 2016, label: "ACS 2011-2015", released: 2016-12-08}}
    renter_anchors:
      - {{year: 2000, released: 2001-08-01}}
      - {{year: 2010, released: 2011-06-30}}
  rent:
{rent}
  permits:
    files:
      - {{path: permits_legacy.csv, schema: auto}}
      - {{path: permits_sdci.csv, schema: auto}}
    coverage_tracts: coverage.csv
"""

RENT = {
    "zillow_tract": "    format: zillow_tract\n    path: zillow_tract.csv",
    "zillow_zip": "    format: zillow_zip\n    path: zillow_zip.csv\n    crosswalk: crosswalk.csv",
    "none": "    format: none",
}


def make_world(root: Path, rent: str = "zillow_tract") -> World:
    """Write every file and a config.yaml under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    w = World(root=root, config=root / "config.yaml", boundaries=root / "tracts.geojson", udp=root / "udp.csv",
              evictions=root / "evictions.csv", zillow_tract=root / "zillow_tract.csv",
              zillow_zip=root / "zillow_zip.csv", crosswalk=root / "crosswalk.csv",
              permits_legacy=root / "permits_legacy.csv", permits_sdci=root / "permits_sdci.csv",
              coverage=root / "coverage.csv")
    _boundaries(w.boundaries)
    _udp(w.udp)
    _evictions(w.evictions)
    _zillow_tract(w.zillow_tract)
    _zillow_zip(w.zillow_zip, w.crosswalk)
    _permits(w.permits_legacy, w.permits_sdci, w.coverage)
    w.config.write_text(CONFIG.format(rent=RENT[rent]), encoding="utf-8")
    return w


def two_region_world(folder: Path, seed: int, edit: Callable[[dict[str, Any]], None],
                     recipients: list[dict[str, Any]]) -> Settings:
    """A synthetic world of 400 tracts in two one-county regions (`risk synth --regions 2`, 14 years from 2003),
    its config changed by ``edit``, with quick backtest settings and these recipients."""
    files = write_world(folder, 400, 14, seed=seed, start_year=2003, regions=2)
    config = yaml.safe_load(files["config"].read_text())
    edit(config)
    config["model"].update({"bootstrap": 50, "null_simulations": 5})
    config["alerts"] = {"recipients": recipients}
    files["config"].write_text(yaml.safe_dump(config, sort_keys=False))
    return load_settings(files["config"])
