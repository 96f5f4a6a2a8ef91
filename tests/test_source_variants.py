"""Real variants of the published files load, each detected by itself: repaired with one named warning, or refused
with a named error naming file and line.

Every case reads a real file of ``../shared/data`` (section 9 of its README): Eviction Lab tract files whose
columns are reordered, whose GEOIDs lost their leading 0 (San Diego) or whose parent-location was split in two
fields (Ohio); Census cartographic-boundary shapefiles and UDP's GeoPackages; UDP's typology output as a
demographic source. A broken case is a few real rows written by the test with one thing changed.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

from risk.core.errors import Problem
from risk.core.settings import (
    BoundariesSource,
    DemographicsSource,
    EvictionsSource,
    RegionSettings,
)
from risk.sources._tables import (
    LEADING_ZERO_AMBIGUOUS,
    LEADING_ZERO_RESTORED,
    ProblemLog,
)
from risk.sources.boundaries import load_boundaries, tract_number
from risk.sources.demographics import Demographics, load_demographics
from risk.sources.evictions import (
    SHIFTED_AMBIGUOUS,
    SHIFTED_REPAIRED,
    Evictions,
    load_evictions,
)

DATA = ROOT.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (DATA / "evictions").exists(), reason="../shared/data is not beside the checkout")

TODAY = date(2024, 6, 1)
SAN_DIEGO = DATA / "evictions" / "CA_SanDiego" / "evictionlab_v1_tracts_SanDiego_06073.csv"
OHIO = DATA / "evictions" / "OH"
KING_EVICTIONS = DATA / "seattle" / "evictions_evictionlab_king_tracts_2000_2016.csv"
KING_TRACTS = DATA / "seattle" / "king_tracts_2010.geojson"
KING = RegionSettings(county_fips=("53033",), ignore_geoids=("53033990100",))
OHIO_COUNTIES = {"cleveland": "39035", "cincinnati": "39061", "columbus": "39049"}
EVICTION_VINTAGES = [
    {"first_year": 2000, "last_year": 2004, "label": "Census 2000", "released": "2002-08-01"},
    {"first_year": 2005, "last_year": 2009, "label": "ACS 2005-2009", "released": "2010-12-14"},
    {"first_year": 2011, "last_year": 2016, "label": "ACS 2011-2015", "released": "2016-12-08"},
]
UDP_VINTAGES = [
    {"suffix": "90", "label": "Census 1990", "released": "1992-08-01", "medians_reliable": False,
     "shares_over_one": "drop"},
    {"suffix": "00", "label": "Census 2000", "released": "2002-08-01", "medians_reliable": False},
    {"suffix": "12", "label": "ACS 2008-2012", "released": "2013-12-17"},
    {"suffix": "18", "label": "ACS 2014-2018", "released": "2019-12-19"},
]


# ------------------------------------------------------------------ helpers


def _coded(log: ProblemLog, code: str) -> list[Problem]:
    return [p for p in log.items if p.message.startswith(f"{code}:")]


def _errors(log: ProblemLog) -> list[str]:
    return [str(p) for p in log.items if p.severity == "error"]


def _tracts(shapefile_state: str, region: RegionSettings) -> pd.Index:
    """The region's tract GEOIDs from the state's Census cartographic-boundary shapefile."""
    log = ProblemLog("boundaries")
    tracts = load_boundaries(BoundariesSource(path=DATA / "boundaries" / f"cb_2018_{shapefile_state}_tract_500k.shp"),
                             region, log)
    assert tracts is not None and not log.items, log.items
    return tracts.index


def _evictions(path: Path, region: RegionSettings, known: pd.Index) -> tuple[Evictions | None, ProblemLog]:
    log = ProblemLog("evictions")
    cfg = EvictionsSource(path=path, vintages=EVICTION_VINTAGES, renter_anchors=[{"year": 2010, "released": "2011-06-30"}])
    return load_evictions(cfg, region, known, "utf-8", log, TODAY), log


def _demographics(path: Path, region: RegionSettings, known: pd.Index,
                  fmt: str = "udp_typology_output") -> tuple[Demographics, ProblemLog]:
    log = ProblemLog("demographics")
    cfg = DemographicsSource(format=fmt, path=path, vintages=UDP_VINTAGES)  # type: ignore[arg-type]
    return load_demographics(cfg, region, known, "utf-8", log), log


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _write_rows(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return path


def _head_lines(source: Path, target: Path, rows: int, edit: Callable[[int, str], str] = lambda i, s: s) -> Path:
    """The header and the first ``rows`` data lines of a real file, byte for byte but for ``edit(line, text)``."""
    with source.open(newline="", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(rows + 1)]
    target.write_text("".join(edit(n, text) for n, text in enumerate(lines, start=1)), encoding="utf-8")
    return target


def _with_geoids(source: Path, target: Path, rows: int, column: str, geoid: Callable[[int, str], str]) -> Path:
    """The first ``rows`` rows of a real CSV with the GEOID of data row ``i`` replaced by ``geoid(i, value)``."""
    table = _rows(source)[: rows + 1]
    at = table[0].index(column)
    for i, row in enumerate(table[1:]):
        row[at] = geoid(i, row[at])
    return _write_rows(target, table)


def _padded(path: Path, column: str = "GEOID") -> pd.Index:
    return pd.Index(pd.read_csv(path, dtype={column: str}, usecols=[column])[column].str.zfill(11).unique())


# ------------------------------------------------------------------ 1a: columns found by name


def test_eviction_lab_columns_are_found_by_name_in_any_order(tmp_path: Path) -> None:
    known = load_boundaries(BoundariesSource(path=KING_TRACTS), KING, ProblemLog("boundaries")).index
    rows = _rows(KING_EVICTIONS)
    order = list(reversed(range(len(rows[0]))))
    reordered = _write_rows(tmp_path / "reordered.csv", [[row[i] for i in order] for row in rows])
    original, log = _evictions(KING_EVICTIONS, KING, known)
    shuffled, shuffled_log = _evictions(reordered, KING, known)
    assert original is not None and shuffled is not None
    assert not _errors(shuffled_log) and [p.message for p in shuffled_log.items] == [p.message for p in log.items]
    pd.testing.assert_frame_equal(shuffled.counts, original.counts)
    pd.testing.assert_frame_equal(shuffled.demographics, original.demographics)
    assert len(original.counts) > 6000 and not original.demographics.empty


# ------------------------------------------------------------------ 1b: GEOIDs that lost their leading 0


def test_san_diego_ten_digit_geoids_are_restored_with_a_warning() -> None:
    region = RegionSettings(county_fips=("06073",))
    loaded, log = _evictions(SAN_DIEGO, region, _padded(SAN_DIEGO))
    assert loaded is not None and not _errors(log)
    [warning] = _coded(log, LEADING_ZERO_RESTORED)
    assert warning.severity == "warning" and warning.column == "GEOID" and warning.file.endswith(SAN_DIEGO.name)
    assert "restored in 10676 rows" in warning.message
    assert len(loaded.counts) == 10676 and loaded.counts["geoid"].str.fullmatch(r"06073\d{6}").all()
    assert loaded.counts["geoid"].nunique() == 628


def test_ten_digit_geoids_mixed_with_eleven_digit_ones_are_errors_naming_file_line_and_column(tmp_path: Path) -> None:
    # the first two data rows keep 10 digits, the others are written with their 11
    mixed = _with_geoids(SAN_DIEGO, tmp_path / "mixed.csv", 12, "GEOID", lambda i, g: g if i < 2 else "0" + g)
    loaded, log = _evictions(mixed, RegionSettings(county_fips=("06073",)), _padded(mixed))
    errors = _coded(log, LEADING_ZERO_AMBIGUOUS)
    assert [(p.line, p.column, p.severity) for p in errors] == [(2, "GEOID", "error"), (3, "GEOID", "error")]
    assert "10 other rows have 11 digits" in errors[0].message and errors[0].file.endswith("mixed.csv")
    assert not _coded(log, LEADING_ZERO_RESTORED)
    assert loaded is not None and len(loaded.counts) == 10  # the two rows are not guessed into a tract


def test_ten_digit_geoids_that_land_outside_the_region_once_padded_are_errors(tmp_path: Path) -> None:
    # King County GEOIDs that lost a digit of their tract code: a leading 0 would make them Arkansas (05303...)
    broken = _with_geoids(KING_EVICTIONS, tmp_path / "lost_digit.csv", 20, "GEOID", lambda i, g: g[:5] + g[6:])
    known = load_boundaries(BoundariesSource(path=KING_TRACTS), KING, ProblemLog("boundaries")).index
    loaded, log = _evictions(broken, KING, known)
    errors = _coded(log, LEADING_ZERO_AMBIGUOUS)
    assert [p.line for p in errors[:5]] == [2, 3, 4, 5, 6] and "region's counties ['53033']" in errors[0].message
    assert log.has_errors and not _coded(log, LEADING_ZERO_RESTORED)
    assert loaded is not None and loaded.counts.empty


def test_udp_files_with_numeric_geoids_take_back_their_leading_zero_under_the_same_rule(tmp_path: Path) -> None:
    riverside = DATA / "udp" / "Riverside" / "Riverside_typology_output.csv"
    region = RegionSettings(county_fips=("06065",))
    loaded, log = _demographics(riverside, region, _padded(riverside))
    assert not _errors(log) and not _coded(log, LEADING_ZERO_RESTORED)  # UDP's published format: no warning
    assert loaded.long["geoid"].str.fullmatch(r"06065\d{6}").all() and loaded.long["geoid"].nunique() == 450
    mixed = _with_geoids(riverside, tmp_path / "mixed_udp.csv", 10, "GEOID", lambda i, g: g if i == 4 else "0" + g)
    _, mixed_log = _demographics(mixed, region, _padded(mixed))
    assert [(p.line, p.column) for p in _coded(mixed_log, LEADING_ZERO_AMBIGUOUS)] == [(6, "GEOID")]


# ------------------------------------------------------------------ 1c: Ohio's split parent-location


def _raw_counts(path: Path) -> pd.DataFrame:
    """The Ohio file's counts read field by field: index, GEOID, year, name, the two halves, then the columns."""
    rows = _rows(path)[1:]
    number = lambda v: float(v) if v else float("nan")
    return pd.DataFrame({"geoid": [r[1] for r in rows], "year": [int(r[2]) for r in rows],
                         "filings": [number(r[22]) for r in rows], "judgments": [number(r[23]) for r in rows],
                         "renters": [number(r[8]) for r in rows], "rent": [number(r[10]) for r in rows]})


@pytest.mark.parametrize("city", sorted(OHIO_COUNTIES))
def test_ohio_split_parent_location_is_joined_and_the_columns_moved_back_with_one_warning(city: str) -> None:
    path = OHIO / f"evictionlab_v1_tracts_{city}_past.csv"
    region = RegionSettings(county_fips=(OHIO_COUNTIES[city],))
    loaded, log = _evictions(path, region, _tracts("39", region))
    assert loaded is not None and not _errors(log), _errors(log)
    [warning] = _coded(log, SHIFTED_REPAIRED)
    rows = len(_rows(path)) - 1
    assert warning.severity == "warning" and f"in all {rows} rows" in warning.message
    assert warning.file.endswith(path.name) and "'subbed'" in warning.message
    raw = _raw_counts(path).sort_values(["geoid", "year"], ignore_index=True)
    got = loaded.counts.sort_values(["geoid", "year"], ignore_index=True)
    assert len(got) == rows
    pd.testing.assert_frame_equal(got[["geoid", "year", "filings", "judgments", "renters"]].astype({"geoid": str}),
                                  raw[["geoid", "year", "filings", "judgments", "renters"]])
    rent = loaded.demographics.query("measure == 'median_rent' and vintage == 'ACS 2011-2015 (Eviction Lab)'")
    expected = raw[(raw["year"] == 2016) & (raw["rent"] > 0)].set_index("geoid")["rent"]
    assert rent.set_index("geoid")["value"].sort_index().to_dict() == expected.sort_index().to_dict()


def _cleveland_head(tmp_path: Path, edit: Callable[[int, str], str] = lambda i, s: s, rows: int = 10) -> Path:
    return _head_lines(OHIO / "evictionlab_v1_tracts_cleveland_past.csv", tmp_path / "cleveland.csv", rows, edit)


def test_a_row_whose_split_fields_are_not_a_county_state_pair_is_an_error_naming_its_line(tmp_path: Path) -> None:
    broken = _cleveland_head(tmp_path, lambda n, s: s.replace('," Ohio""",', ",Ohio,") if n == 5 else s)
    region = RegionSettings(county_fips=("39035",))
    loaded, log = _evictions(broken, region, _tracts("39", region))
    [error] = _coded(log, SHIFTED_AMBIGUOUS)
    assert (error.line, error.column, error.severity) == (5, "parent-location", "error")
    assert "'\"Cuyahoga County' and 'Ohio'" in error.message and error.file.endswith("cleveland.csv")
    assert loaded is None and not _coded(log, SHIFTED_REPAIRED)


def test_a_split_parent_location_without_the_index_column_is_ambiguous(tmp_path: Path) -> None:
    # the index column removed from header and rows: each row now has as many fields as the header names
    broken = _cleveland_head(tmp_path, lambda n, s: s.split(",", 1)[1], rows=3)
    region = RegionSettings(county_fips=("39035",))
    loaded, log = _evictions(broken, region, _tracts("39", region))
    errors = _coded(log, SHIFTED_AMBIGUOUS)
    assert [e.line for e in errors] == [2, 3, 4] and "no unnamed index column" in errors[0].message
    assert loaded is None


def test_a_shifted_row_with_another_number_of_fields_is_refused_with_its_line(tmp_path: Path) -> None:
    broken = _cleveland_head(tmp_path, lambda n, s: s.rstrip("\n") + ",0\n" if n == 4 else s)
    region = RegionSettings(county_fips=("39035",))
    loaded, log = _evictions(broken, region, _tracts("39", region))
    assert loaded is None
    [error] = log.items
    assert (error.line, error.severity) == (4, "error")
    assert error.message.startswith("malformed CSV row: expected 28 fields, found 29")


# ------------------------------------------------------------------ 2: boundaries


def test_census_shapefile_of_washington_is_cut_to_king_county() -> None:
    log = ProblemLog("boundaries")
    tracts = load_boundaries(BoundariesSource(path=DATA / "boundaries" / "cb_2018_53_tract_500k.shp"), KING, log)
    assert tracts is not None and not log.items
    assert len(tracts) == 397 and tracts.index.str.startswith("53033").all()
    assert tracts.crs.to_epsg() == 4326  # the shapefile's NAD83 (EPSG:4269), converted
    assert tracts.loc["53033000100", "name"] == "1" and tracts.loc["53033005301", "name"] == "53.01"  # NAME column
    geojson = load_boundaries(BoundariesSource(path=KING_TRACTS), KING, ProblemLog("boundaries"))
    assert set(tracts.index) <= set(geojson.index)
    lon, lat = tracts.loc["53033000100", "geometry"].centroid.coords[0]
    assert -122.4 < lon < -122.2 and 47.6 < lat < 47.8


def test_a_shapefile_without_its_dbf_is_refused_naming_the_missing_file(tmp_path: Path) -> None:
    for suffix in (".shp", ".shx", ".prj"):
        (tmp_path / f"cb_2018_53_tract_500k{suffix}").write_bytes(
            (DATA / "boundaries" / f"cb_2018_53_tract_500k{suffix}").read_bytes())
    log = ProblemLog("boundaries")
    assert load_boundaries(BoundariesSource(path=tmp_path / "cb_2018_53_tract_500k.shp"), KING, log) is None
    [error] = log.items
    assert "cb_2018_53_tract_500k.dbf is missing" in error.message and error.severity == "error"


def test_udp_public_geopackage_loads_with_its_numeric_geoids_as_tract_codes() -> None:
    region = RegionSettings(county_fips=("13121",))
    log = ProblemLog("boundaries")
    tracts = load_boundaries(BoundariesSource(path=DATA / "udp" / "public_typologies" / "udp_public_atlanta.gpkg"),
                             region, log)
    assert tracts is not None and not log.items
    assert set(tracts.index) == set(_tracts("13", region)) and len(tracts) == 204
    # no NAME column: the tract's number, as the Census writes it
    assert tracts.crs.to_epsg() == 4326 and (tracts["name"] == [tract_number(g) for g in tracts.index]).all()


# ------------------------------------------------------------------ 3: UDP typology output as demographics


def _metro(name: str, state: str) -> tuple[Path, RegionSettings, pd.Index]:
    path = DATA / "udp" / name / f"{name}_typology_output.csv"
    counties = tuple(sorted(set(_padded(path).str[:5])))
    region = RegionSettings(county_fips=counties)
    return path, region, _tracts(state, region)


@pytest.mark.parametrize(("name", "state", "tracts"), [("Atlanta", "13", 738), ("Cleveland", "39", 635)])
def test_udp_typology_output_loads_as_demographic_vintages(name: str, state: str, tracts: int) -> None:
    path, region, known = _metro(name, state)
    loaded, log = _demographics(path, region, known)
    assert not _errors(log), _errors(log)
    wide = pd.read_csv(path, dtype={"GEOID": str}, low_memory=False).set_index("GEOID")
    long = loaded.long.set_index("geoid")
    for measure, column, label in (("low_income_households", "all_li_count_00", "Census 2000"),
                                   ("low_income_households", "all_li_count_18", "ACS 2014-2018"),
                                   ("low_income_share", "per_all_li_00", "Census 2000"),
                                   ("low_income_share", "per_all_li_18", "ACS 2014-2018"),
                                   ("renter_share", "per_rent_18", "ACS 2014-2018"),
                                   ("population", "pop_90", "Census 1990"),
                                   ("median_rent", "mrent_12", "ACS 2008-2012")):
        got = long[(long["measure"] == measure) & (long["vintage"] == label)]["value"]
        assert got.to_dict() == wide.loc[got.index, column].astype(float).to_dict(), column
        assert len(got) >= 0.95 * tracts
    assert loaded.long["geoid"].nunique() == tracts
    assert loaded.udp is not None and {"all_li_count_00", "all_li_count_18"} <= set(loaded.udp.frame.columns)


def test_udp_typology_output_reads_exactly_like_the_database_it_extends() -> None:
    region = RegionSettings(county_fips=("53033", "53053", "53061"))
    known = _tracts("53", region)
    output, log = _demographics(DATA / "udp" / "Seattle" / "Seattle_typology_output.csv", region, known)
    database, _ = _demographics(DATA / "seattle" / "census_udp_database_1990_2018.csv", region, known, "udp_database")
    assert not _errors(log)
    order = ["geoid", "measure", "vintage"]
    pd.testing.assert_frame_equal(output.long.sort_values(order, ignore_index=True),
                                  database.long.sort_values(order, ignore_index=True))
    assert output.udp is not None and database.udp is not None
    pd.testing.assert_frame_equal(output.udp.frame.sort_index(axis=1), database.udp.frame.sort_index(axis=1))


def test_udp_typology_output_needs_a_path_and_vintages() -> None:
    with pytest.raises(ValueError, match="format udp_typology_output needs `path`"):
        DemographicsSource(format="udp_typology_output", vintages=UDP_VINTAGES)  # type: ignore[arg-type]


@pytest.mark.parametrize("reliable", [True, False])
def test_a_crosswalked_census_table_draws_its_low_income_line_from_the_households_not_the_shrunk_medians(
        tmp_path: Path, reliable: bool) -> None:
    # two tracts whose 40 households split evenly around $20,000: the region's median household income is 20,000
    # and its 80% line 16,000. The crosswalked medians (hinc) are shrunk to a quarter by the weights.
    path = tmp_path / "xwalk_00.csv"
    pd.DataFrame({"FIPS": ["25025000100.0", "25025000200.0"], "hh_00": [20, 20], "hinc_00": [4000, 6000],
                  "I_10000_00": [10, 0], "I_20000_00": [10, 0], "I_30000_00": [0, 10], "I_40000_00": [0, 10]}
                 ).to_csv(path, index=False)
    cfg = DemographicsSource.model_validate({"format": "census_tables", "tables": [{"path": str(path), "vintage": {
        "suffix": "00", "label": "Census 2000", "released": "2002-08-01", "medians_reliable": reliable}}]})
    log = ProblemLog("demographics")
    got = load_demographics(cfg, RegionSettings(county_fips=("25025",)), None, "utf-8", log).long
    wide = got.pivot(index="geoid", columns="measure", values="value")
    if reliable:  # UDP's rule: 80% of the median of the tract medians (5,000), inside the first bin
        assert wide.loc["25025000100", "low_income_share"] == pytest.approx(0.5 * 4000 / 10000)
        assert "median_income" in wide
    else:  # every household under 16,000: the first bin and 60% of the second
        assert wide.loc["25025000100", "low_income_share"] == pytest.approx((10 + 0.6 * 10) / 20)
        assert wide.loc["25025000200", "low_income_share"] == pytest.approx(0.0)
        assert "median_income" not in wide  # a shrunk median is no median
    assert not log.has_errors, log.items
