"""Rebuild the bundled King County sample in data/sample/king from ../shared/data.

Keeps King County rows and the columns the loaders read, gzip-compressed.
Never touches the Zillow extract: its licence does not allow redistribution.

    python scripts/build_sample.py [--shared ../shared/data/seattle]
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "sample" / "king"
KING = "53033"

# Census values only: counts, medians and the shares UDP computed from them, per vintage.
_UDP_STEMS = ("pop", "white", "hh", "hu", "ohu", "rhu", "mrent", "mhval", "hinc", "per_rent", "per_nonwhite",
              "per_col", "per_all_li", "all_li_count", "inc80", "inc120", "total_25", "real_mrent", "real_mhval",
              "real_hinc", "per_limove", "mov_tot_w_income")
# UDP's housing-affordability code (from Census rent and value distributions); the Zillow-derived
# per_ch_zillow_12_18 is deliberately left out
_UDP_EXTRA = ("lmh_flag_encoded",)
_LEGACY_COLUMNS = ["Application/Permit Number", "Permit Type", "Address", "Category", "Action Type", "Work Type",
                   "Value", "Application Date", "Issue Date", "Final Date", "Status", "Latitude", "Longitude"]
_SDCI_COLUMNS = ["PermitNum", "PermitClass", "PermitClassMapped", "PermitTypeMapped", "PermitTypeDesc",
                 "HousingUnits", "HousingUnitsRemoved", "HousingUnitsAdded", "EstProjectCost", "AppliedDate",
                 "IssuedDate", "CompletedDate", "StatusCurrent", "OriginalAddress1", "OriginalZip", "Latitude",
                 "Longitude", "DwellingUnitType", "HousingCategory"]


def _write_gz(frame: pd.DataFrame, name: str) -> None:
    with gzip.GzipFile(OUT / name, "wb", mtime=0) as fh:  # mtime 0: same input, same bytes
        fh.write(frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data" / "seattle")
    src = parser.parse_args().shared
    OUT.mkdir(parents=True, exist_ok=True)

    db = pd.read_csv(src / "census_udp_database_1990_2018.csv", dtype={"GEOID": str, "FIPS": str}, low_memory=False)
    db = db[db["GEOID"].str.zfill(11).str.startswith(KING)]
    pattern = re.compile(rf"^({'|'.join(_UDP_STEMS)})_(90|00|12|18)(_se)?$")
    keep = ["GEOID"] + [c for c in db.columns if pattern.match(c)] + list(_UDP_EXTRA)
    _write_gz(db[keep], "census_udp_king.csv.gz")

    ev = pd.read_csv(src / "evictions_evictionlab_king_tracts_2000_2016.csv", dtype={"GEOID": str})
    _write_gz(ev, "evictions_evictionlab_king.csv.gz")

    legacy = pd.read_csv(src / "permits_seattle_commercial_2010_2015.csv", dtype=str)
    _write_gz(legacy[_LEGACY_COLUMNS], "permits_seattle_commercial_2010_2015.csv.gz")
    sdci = pd.read_csv(src / "permits_seattle_multifamily_2013_2025.csv", dtype=str)
    _write_gz(sdci[_SDCI_COLUMNS], "permits_seattle_multifamily_2013_2025.csv.gz")

    shutil.copyfile(src / "king_tracts_2010.geojson", OUT / "king_tracts_2010.geojson")
    _seattle_tracts(OUT / "king_tracts_2010.geojson", [legacy, sdci])
    _areas(OUT / "king_tracts_2010.geojson", OUT / "seattle_permit_tracts.csv")


def _seattle_tracts(boundaries: Path, permit_frames: list[pd.DataFrame]) -> None:
    """The City of Seattle's tracts: those where its permit office issued any permit (its jurisdiction)."""
    import geopandas as gpd

    tracts = gpd.read_file(boundaries)[["GEOID", "geometry"]]
    points = pd.concat([f[["Latitude", "Longitude"]] for f in permit_frames]).astype(float).dropna()
    gdf = gpd.GeoDataFrame(geometry=gpd.points_from_xy(points["Longitude"], points["Latitude"]), crs=tracts.crs)
    hit = gpd.sjoin(gdf, tracts, predicate="within")["GEOID"].value_counts()
    # a tract with one or two stray points is a geocoding edge, not the city's jurisdiction
    city = sorted(hit[hit >= 3].index)
    pd.DataFrame({"GEOID": city}).to_csv(OUT / "seattle_permit_tracts.csv", index=False)


def _areas(boundaries: Path, city_tracts: Path) -> None:
    """Named areas for subscriptions: the City of Seattle (its tracts) and the rest of the county."""
    import geopandas as gpd

    tracts = gpd.read_file(boundaries)
    city = pd.read_csv(city_tracts, dtype=str)["GEOID"]
    inside = tracts["GEOID"].isin(city)
    areas = gpd.GeoDataFrame({"name": ["Seattle", "King County outside Seattle"]},
                             geometry=[tracts[inside].union_all(), tracts[~inside].union_all()], crs=tracts.crs)
    areas["geometry"] = areas.geometry.simplify(0.0005)
    areas.to_file(OUT / "areas.geojson", driver="GeoJSON", COORDINATE_PRECISION=5)


if __name__ == "__main__":
    main()
