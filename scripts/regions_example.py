"""Write examples/regions.yaml: every region of ../shared/data with the sources it has.

The county lists and the tracts to ignore (water tracts in a source file but not in the boundaries) are
derived from the files themselves, so the example can be rebuilt when the data change:
``python scripts/regions_example.py``. The product never reads ../shared/data unless a config names it.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REL = "../../shared/data"  # from examples/
EV, UDP, BND = "evictions", "udp", "boundaries"

UDP_VINTAGES = [
    {"suffix": "90", "label": "Census 1990", "released": "1992-08-01", "medians_reliable": False,
     "shares_over_one": "drop"},
    {"suffix": "00", "label": "Census 2000", "released": "2002-08-01", "medians_reliable": False},
    {"suffix": "18", "label": "ACS 2014-2018", "released": "2019-12-19"},
]
EVICTION_VINTAGES = [
    {"first_year": 2000, "last_year": 2004, "label": "Census 2000", "released": "2002-08-01"},
    {"first_year": 2005, "last_year": 2009, "label": "ACS 2005-2009", "released": "2010-12-14"},
    {"first_year": 2010, "last_year": 2010, "label": "Census 2010 / ACS 2008-2012", "released": "2013-12-17"},
    {"first_year": 2011, "last_year": 2016, "label": "ACS 2011-2015", "released": "2016-12-08"},
]
ANCHORS = [{"year": 2000, "released": "2001-08-01"}, {"year": 2010, "released": "2011-06-30"}]
BROKEN = {"25003935200": "conflicting rows per year in the Massachusetts file",
          "25003935300": "conflicting rows per year in the Massachusetts file",
          "45063980100": "special-use tract 9801 with 0-1 renter households and 5-18 filings a year"}


def _geoids(path: Path, column: str = "GEOID") -> set[str]:
    if path.suffix in (".shp", ".geojson", ".gpkg"):
        values = gpd.read_file(path, columns=[column], ignore_geometry=True)[column].astype(str)
    else:
        values = pd.read_csv(path, dtype=str, usecols=lambda c: c in ("GEOID", "FIPS"), index_col=False).iloc[:, 0]
    # numbers written as floats ("25009201100.0") or without California's leading zero
    return set(values.dropna().str.replace(r"\.0$", "", regex=True).str.zfill(11))


def _evictions(path: str) -> dict[str, object]:
    return {"path": f"{REL}/{path}", "available_after_days": 60, "max_age_days": 730,
            "vintages": EVICTION_VINTAGES, "renter_anchors": ANCHORS}


def _udp(path: str) -> dict[str, object]:
    return {"format": "udp_typology_output", "path": f"{REL}/{path}", "vintages": UDP_VINTAGES}


def _region(name: str, counties: list[str], boundaries: str | None, geoid_column: str = "GEOID",
            name_column: str | None = "NAME", **sources: object) -> dict[str, object]:
    """One region; without ``boundaries`` its tracts are those its sources name, so only broken tracts are
    ignored (with boundaries, also the water tracts a source file has and the boundaries lack)."""
    broken = {g for g in BROKEN if g[:5] in counties}
    if boundaries is None:
        return {"name": name, "county_fips": counties, "ignore_geoids": sorted(broken), "sources": sources}
    bnd = SHARED / boundaries
    known = {g for g in _geoids(bnd, geoid_column) if g[:5] in counties}
    found: set[str] = set()
    for spec in sources.values():
        paths = [t["path"] for t in spec["tables"]] if "tables" in spec else [spec["path"]]  # type: ignore[operator,index]
        for path in paths:
            found |= {g for g in _geoids(SHARED / str(path).removeprefix(f"{REL}/")) if g[:5] in counties}
    ignore = sorted((found - known) | broken)
    return {"name": name, "county_fips": counties, "ignore_geoids": ignore,
            "sources": {"boundaries": {"path": f"{REL}/{boundaries}", "geoid_column": geoid_column,
                                       "name_column": name_column}, **sources}}


def _census(folder: str, xwalk: str) -> dict[str, object]:
    """UDP's raw Census downloads: 1990 and 2000 crosswalked to 2010 tracts (medians shrunk by the weights), and
    the ACS 2014-2018 table on 2010 tracts; low-income counts are recomputed from the income bins."""
    return {"format": "census_tables", "tables": [
        {"path": f"{REL}/{UDP}/{folder}/xwalk_{folder}census_90_10{xwalk}.csv", "vintage": {
            "suffix": "90", "label": "Census 1990", "released": "1992-08-01", "medians_reliable": False}},
        {"path": f"{REL}/{UDP}/{folder}/xwalk_{folder}census_00_10{xwalk}.csv", "vintage": {
            "suffix": "00", "label": "Census 2000", "released": "2002-08-01", "medians_reliable": False}},
        {"path": f"{REL}/{UDP}/{folder}/{folder}census_summ_2018.csv", "vintage": {
            "suffix": "18", "label": "ACS 2014-2018", "released": "2019-12-19"}}]}


def _udp_database(path: str) -> dict[str, object]:
    return {"format": "udp_database", "path": f"{REL}/{path}", "vintages": UDP_VINTAGES}


def _counties(path: str, drop: tuple[str, ...] = ()) -> list[str]:
    return sorted(g[:5] for g in {g[:5] for g in _geoids(SHARED / path)} if g[:5] not in drop)


def regions() -> list[dict[str, object]]:
    """Every region, its counties disjoint from the others'."""
    wa, ma = f"{BND}/cb_2018_53_tract_500k.shp", f"{BND}/cb_2018_25_tract_500k.shp"
    oh, ga = f"{BND}/cb_2018_39_tract_500k.shp", f"{BND}/cb_2018_13_tract_500k.shp"
    seattle = ("53033", "53053", "53061")
    cleveland = _counties(f"{UDP}/Cleveland/Cleveland_typology_output.csv")
    # UDP's Boston metro reaches into New Hampshire, whose tracts have no boundary or eviction file here
    boston_all = _counties(f"{UDP}/Boston/Bostoncensus_summ_2018.csv")
    boston = tuple(c for c in boston_all if c.startswith("25"))
    santa_cruz = "06087"  # a region of its own (its UDP database), though UDP's Bay Area download includes it
    bay_area = _counties(f"{UDP}/SanFrancisco/SanFranciscocensus_summ_2018.csv", (santa_cruz,))
    return [
        _region("Seattle metro (King, Pierce, Snohomish)", list(seattle), wa,
                evictions=_evictions(f"{EV}/WA/evictionlab_v1_tracts_WA.csv"),
                demographics=_udp(f"{UDP}/Seattle/Seattle_typology_output.csv")),
        _region("Washington (other counties)", _counties(f"{EV}/WA/evictionlab_v1_tracts_WA.csv", seattle), wa,
                evictions=_evictions(f"{EV}/WA/evictionlab_v1_tracts_WA.csv")),
        _region("Boston metro (Massachusetts counties)", list(boston), ma,
                evictions=_evictions(f"{EV}/MA/evictionlab_v1_tracts_MA.csv"), demographics=_census("Boston", "")),
        _region("Boston metro (New Hampshire counties)", [c for c in boston_all if c not in boston], None,
                demographics=_census("Boston", "")),
        _region("Massachusetts (other counties)", _counties(f"{EV}/MA/evictionlab_v1_tracts_MA.csv", boston), ma,
                evictions=_evictions(f"{EV}/MA/evictionlab_v1_tracts_MA.csv")),
        _region("Cleveland metro", cleveland, oh,
                evictions=_evictions(f"{EV}/OH/evictionlab_v1_tracts_cleveland_past.csv"),
                demographics=_udp(f"{UDP}/Cleveland/Cleveland_typology_output.csv")),
        _region("Cincinnati (Hamilton County)", ["39061"], oh,
                evictions=_evictions(f"{EV}/OH/evictionlab_v1_tracts_cincinnati_past.csv")),
        _region("Columbus (Franklin County)", ["39049"], oh,
                evictions=_evictions(f"{EV}/OH/evictionlab_v1_tracts_columbus_past.csv")),
        _region("District of Columbia", ["11001"], f"{EV}/DC/evictionlab_v1_tracts_DC.geojson",
                evictions=_evictions(f"{EV}/DC/evictionlab_v1_tracts_DC.csv")),
        _region("Atlanta metro", _counties(f"{UDP}/Atlanta/Atlanta_typology_output.csv"), ga,
                demographics=_udp(f"{UDP}/Atlanta/Atlanta_typology_output.csv")),
        _region("San Francisco Bay Area", bay_area, f"{UDP}/public_typologies/udp_public_sanfrancisco.gpkg",
                name_column=None, demographics=_census("SanFrancisco", "_2018")),
        # no boundary file in ../shared/data: these regions run on the tracts their sources name
        _region("South Carolina", _counties(f"{EV}/SC/evictionlab_v1_tracts_SC.csv"), None,
                evictions=_evictions(f"{EV}/SC/evictionlab_v1_tracts_SC.csv")),
        _region("San Diego County", ["06073"], None,
                evictions=_evictions(f"{EV}/CA_SanDiego/evictionlab_v1_tracts_SanDiego_06073.csv")),
        *(_region(f"{label} County", _counties(f"{UDP}/{folder}/{folder}_typology_output.csv"), None,
                  demographics=_udp(f"{UDP}/{folder}/{folder}_typology_output.csv"))
          for folder, label in (("Riverside", "Riverside"), ("SanBernardino", "San Bernardino"),
                                ("Imperial", "Imperial"), ("Ventura", "Ventura"))),
        *(_region(f"{label} County", _counties(f"{UDP}/{folder}/{folder}_database_2018.csv"), None,
                  demographics=_udp_database(f"{UDP}/{folder}/{folder}_database_2018.csv"))
          for folder, label in (("Monterey", "Monterey"), ("SanLuisObispo", "San Luis Obispo"),
                                ("SantaBarbara", "Santa Barbara"), ("SantaCruz", "Santa Cruz"))),
    ]


HEADER = """\
# Every region of ../shared/data, each with the sources it has (written by scripts/regions_example.py from the
# files themselves). Tests and benchmarks only: these files may not be bundled (Eviction Lab: citation
# required; UDP outputs: GPL-3.0 data).
#
#   risk --config examples/regions.yaml validate
#   risk --config examples/regions.yaml backtest --outcome eviction_surge --json
#   risk --config examples/regions.yaml backtest --outcome low_income_loss --json
#
# South Carolina, San Diego, the California UDP regions and Boston metro's New Hampshire counties have no
# boundary file in ../shared/data: they run on the tracts their sources name, without spatial features. Boston
# and San Francisco read UDP's raw Census downloads (low-income counts recomputed from the income bins); San
# Francisco's tracts are UDP's public typology GeoPackage.
# ignore_geoids: water tracts present in a source file but not in the boundaries; tracts 25003935200 and
# 25003935300, whose Massachusetts rows are conflicting copies per year; and 45063980100, a special-use tract
# with 0-1 renter households and up to 18 filings a year (`risk validate` names each of them otherwise).
"""


def main() -> None:
    """Write the example next to the repository's other examples."""
    config = {"paths": {"database": "state/regions.sqlite", "models": "state/models", "reports": "reports",
                        "features": "state/features", "cache": "state/cache"},
              "regions": regions(),
              "model": {"outcome": "eviction_surge"},
              "alerts": {"recipients": [{"name": "Everyone", "email": "all@example.org", "areas": ["all"]}]}}
    text = HEADER + yaml.safe_dump(config, sort_keys=False, width=110)
    (ROOT / "examples" / "regions.yaml").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
