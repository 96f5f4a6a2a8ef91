"""Every malformed input a user can bring gets a precise message, a non-zero exit and no partial output."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner
from world import GEOIDS, World

from risk.cli.main import main


def _csv_edit(path: Path, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(frame).to_csv(path, index=False)


def _set(path: Path, row: int, column: str, value: object) -> None:
    def edit(f: pd.DataFrame) -> pd.DataFrame:
        f.loc[row, column] = str(value)
        return f
    _csv_edit(path, edit)


def _append_copy(path: Path, row: int) -> None:
    _csv_edit(path, lambda f: pd.concat([f, f.iloc[[row]]], ignore_index=True))


def _drop_column(path: Path, column: str) -> None:
    _csv_edit(path, lambda f: f.drop(columns=[column]))


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _cut_row(path: Path, row: int, keep: int) -> None:
    """Data row ``row`` keeps only its first ``keep`` fields: a line cut short."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    rows[row + 1] = rows[row + 1][:keep]
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def _projected_as_degrees(path: Path) -> None:
    """UTM metres in a file that says (by saying nothing, as GeoJSON does) they are longitude and latitude."""
    gpd.read_file(path).to_crs(32610).set_crs(4326, allow_override=True).to_file(path, driver="GeoJSON")


def _truncate(path: Path) -> None:
    data = path.read_bytes().rstrip(b"\n")
    last = data.rfind(b"\n")
    path.write_bytes(data[: last + 1 + (len(data) - last) // 3])


# (case id, which file, edit, substrings the message must contain)
# Line numbers: the header is line 1, so data row r is line r + 2.
CASES: list[tuple[str, str, Callable[[Path], None], list[str]]] = [
    # boundaries
    ("boundaries-not-geojson", "boundaries", lambda p: _write(p, b"this is not geojson {"), ["tracts.geojson", "cannot read"]),
    ("boundaries-no-geoid", "boundaries", lambda p: _write(p, p.read_bytes().replace(b'"GEOID"', b'"GEO_ID"')),
     ["tracts.geojson", "column 'GEOID'", "required column is missing"]),
    ("boundaries-duplicate", "boundaries", lambda p: _write(p, p.read_bytes().replace(b'"53033000200"', b'"53033000100"')),
     ["tracts.geojson", "53033000100 appears more than once"]),
    ("boundaries-empty", "boundaries", lambda p: _write(p, b'{"type": "FeatureCollection", "features": []}'),
     ["tracts.geojson"]),
    ("boundaries-projected-as-degrees", "boundaries", _projected_as_degrees,
     ["tracts.geojson", "declares EPSG:4326", "look projected"]),
    # demographics (UDP database)
    ("udp-empty-file", "udp", lambda p: _write(p, b""), ["udp.csv", "file is empty"]),
    ("udp-header-only", "udp", lambda p: _write(p, p.read_bytes().split(b"\n")[0] + b"\n"), ["udp.csv", "no data rows"]),
    ("udp-share-above-one", "udp", lambda p: _set(p, 1, "per_rent_00", 1.7),
     ["udp.csv", "line 3", "column 'per_rent_00'", "share 1.7 is above the maximum 1"]),
    ("udp-negative-count", "udp", lambda p: _set(p, 2, "pop_18", -5),
     ["udp.csv", "line 4", "column 'pop_18'", "count -5 is below the minimum 0"]),
    ("udp-not-a-number", "udp", lambda p: _set(p, 0, "hu_00", "12o0"),
     ["udp.csv", "line 2", "column 'hu_00'", "'12o0' is not a number"]),
    ("udp-duplicate-tract", "udp", lambda p: _append_copy(p, 3), ["udp.csv", "line 9", "duplicate key", "first at line 5"]),
    ("udp-unknown-tract", "udp", lambda p: _set(p, 4, "GEOID", "53033999999"),
     ["udp.csv", "line 6", "GEOID 53033999999 is not a tract in the boundaries file"]),
    ("udp-no-key-column", "udp", lambda p: _drop_column(p, "GEOID"), ["udp.csv", "needs one of the columns ['GEOID', 'FIPS']"]),
    ("udp-wrong-encoding", "udp", lambda p: _write(p, p.read_bytes().replace(b"\n53033000300", b"\n53033000300\xe9", 1)),
     ["udp.csv", "line 4", "not valid utf-8"]),
    ("udp-truncated", "udp", _truncate, ["udp.csv", "truncated"]),
    ("udp-ragged-row", "udp", lambda p: _write(p, p.read_bytes() + b"1,2,3," * 40 + b"\n"), ["udp.csv", "line 9", "expected 25 fields, found 121"]),
    # evictions
    ("evictions-negative", "evictions", lambda p: _set(p, 5, "eviction-filings", -3),
     ["evictions.csv", "line 7", "column 'eviction-filings'", "count -3 is below the minimum 0"]),
    ("evictions-impossible", "evictions", lambda p: _set(p, 6, "eviction-filings", 99999),
     ["evictions.csv", "line 8", "column 'eviction-filings'", "more than 10 per household"]),
    ("evictions-future-year", "evictions", lambda p: _set(p, 7, "year", 2031),
     ["evictions.csv", "line 9", "column 'year'", "above the maximum"]),
    ("evictions-duplicate", "evictions", lambda p: _append_copy(p, 0), ["evictions.csv", "line 104", "duplicate key", "first at line 2"]),
    ("evictions-missing-column", "evictions", lambda p: _drop_column(p, "eviction-filings"),
     ["evictions.csv", "column 'eviction-filings'", "required column is missing"]),
    ("evictions-bad-geoid", "evictions", lambda p: _set(p, 3, "GEOID", "5303300"),
     ["evictions.csv", "line 5", "'5303300' is not an 11-digit census tract GEOID"]),
    ("evictions-row-cut-short", "evictions", lambda p: _cut_row(p, 5, 5),
     ["evictions.csv", "line 7", "expected 27 fields, found 5"]),
    ("evictions-fractional-year", "evictions", lambda p: _set(p, 2, "year", "2002.5"),
     ["evictions.csv", "line 4", "column 'year'", "not a whole number"]),
    # rent (Zillow tract)
    ("zillow-negative", "zillow_tract", lambda p: _set(p, 200, "ZRI", -12),
     ["zillow_tract.csv", "line 202", "column 'ZRI'", "below the minimum 1"]),
    ("zillow-future-month", "zillow_tract", lambda p: _set(p, 10, "date.home", "2099-01-31"),
     ["zillow_tract.csv", "line 12", "date 2099-01-31 is in the future"]),
    ("zillow-bad-date", "zillow_tract", lambda p: _set(p, 11, "date.home", "31/31/2009"),
     ["zillow_tract.csv", "line 13", "column 'date.home'", "'31/31/2009' is not a date"]),
    ("zillow-duplicate-month", "zillow_tract", lambda p: _append_copy(p, 20), ["zillow_tract.csv", "duplicate key", "first at line 22"]),
    # permits
    ("permits-latitude-range", "permits_legacy", lambda p: _set(p, 4, "Latitude", 95.2),
     ["permits_legacy.csv", "line 6", "column 'Latitude'", "latitude 95.2 is above the maximum 90"]),
    ("permits-bad-date", "permits_legacy", lambda p: _set(p, 3, "Issue Date", "soon"),
     ["permits_legacy.csv", "line 5", "column 'Issue Date'", "'soon' is not a date"]),
    ("permits-future-date", "permits_sdci", lambda p: _set(p, 2, "IssuedDate", "2031-02-03"),
     ["permits_sdci.csv", "line 4", "column 'IssuedDate'", "date 2031-02-03 is in the future"]),
    ("permits-negative-value", "permits_legacy", lambda p: _set(p, 8, "Value", -100),
     ["permits_legacy.csv", "line 10", "column 'Value'", "value -100 is below the minimum 0"]),
    ("permits-duplicate-number", "permits_sdci", lambda p: _append_copy(p, 1), ["permits_sdci.csv", "duplicate key", "first at line 3"]),
    ("permits-unknown-schema", "permits_legacy", lambda p: _drop_column(p, "Application/Permit Number"),
     ["permits_legacy.csv", "unknown permit schema"]),
    ("permits-negative-units", "permits_sdci", lambda p: _set(p, 6, "HousingUnitsAdded", -4),
     ["permits_sdci.csv", "line 8", "column 'HousingUnitsAdded'", "housing units -4 is below the minimum 0"]),
    ("permits-coverage-unknown", "coverage", lambda p: _set(p, 0, "GEOID", "53033777777"),
     ["coverage.csv", "line 2", "GEOID 53033777777 is not in the boundaries"]),
]


@pytest.mark.parametrize("file_key, edit, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_is_reported_precisely_and_writes_nothing(world: World, file_key: str, edit, expected) -> None:
    edit(getattr(world, file_key))
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(world.config), "validate", "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    messages = [f"{e['file']}, line {e['line']}, column '{e['column']}': {e['message']}" for e in report["errors"]]
    assert any(all(s in m for s in expected) for m in messages), "\n".join(messages)

    out = world.root / "out" / "features.parquet"
    result = runner.invoke(main, ["--config", str(world.config), "features", "--as-of", "2015-12-31", "--out", str(out)])
    assert result.exit_code == 3
    assert "invalid input" in result.stderr
    assert not out.exists()
    assert not list(out.parent.glob("*")) if out.parent.exists() else True


def test_a_failed_run_keeps_the_previous_output(world: World) -> None:
    runner = CliRunner()
    out = world.root / "features.parquet"
    ok = runner.invoke(main, ["--config", str(world.config), "features", "--as-of", "2015-12-31", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    before = out.read_bytes()
    _set(world.evictions, 1, "eviction-filings", -1)
    bad = runner.invoke(main, ["--config", str(world.config), "features", "--as-of", "2016-12-31", "--out", str(out)])
    assert bad.exit_code == 3
    assert out.read_bytes() == before
    assert [p.name for p in world.root.glob(".features.parquet*")] == []


def test_every_problem_is_reported_in_one_run(world: World) -> None:
    _set(world.evictions, 5, "eviction-filings", -3)
    _set(world.udp, 1, "per_rent_00", 1.7)
    _set(world.permits_legacy, 4, "Latitude", 95.2)
    result = CliRunner().invoke(main, ["--config", str(world.config), "validate", "--json"])
    files = {Path(e["file"]).name for e in json.loads(result.stdout)["errors"]}
    assert files == {"evictions.csv", "udp.csv", "permits_legacy.csv"}


def test_validate_lists_the_first_rows_of_a_broken_column_and_counts_the_rest(world: World) -> None:
    _csv_edit(world.evictions, lambda f: f.assign(**{"eviction-filings": "-1"}))
    result = CliRunner().invoke(main, ["--config", str(world.config), "validate", "--json"])
    errors = [e for e in json.loads(result.stdout)["errors"] if e["column"] == "eviction-filings"]
    assert [e["line"] for e in errors[:5]] == [2, 3, 4, 5, 6]
    assert re.search(r"and 97 more rows", errors[5]["message"])
    # the summary carries every row it stands for: the list of rows to fix comes from the product itself
    assert [m["line"] for m in errors[5]["more"]] == list(range(7, 104))
    assert all("-1" in m["message"] for m in errors[5]["more"])


def test_validate_all_prints_every_problem_row(world: World) -> None:
    _csv_edit(world.evictions, lambda f: f.assign(**{"eviction-filings": "-1"}))
    result = CliRunner().invoke(main, ["--config", str(world.config), "validate", "--all"])
    assert result.exit_code == 3
    lines = [ln for ln in result.output.splitlines() if "column 'eviction-filings'" in ln]
    assert len(lines) == 102 and "more rows" not in result.output
    assert lines[-1].startswith("error ") and "line 103" in lines[-1]


def test_validate_passes_on_the_test_world_with_warnings_only(world: World) -> None:
    result = CliRunner().invoke(main, ["--config", str(world.config), "validate", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["errors"] == []
    assert {f["family"]: f["tracts"] for f in report["families"]} == {
        "boundaries": 6, "demographics": 6, "evictions": 6, "rent": 6, "permits": 3}
    assert len(GEOIDS) == 6


def test_rows_of_other_counties_are_not_the_regions_problem(world: World) -> None:
    # row 6 of the UDP file is a tract of county 53061, outside the region: its broken share is not checked,
    # nor is a copy of it; the same break in the region is an error
    _set(world.udp, 6, "per_rent_00", 1.7)
    _append_copy(world.udp, 6)
    result = CliRunner().invoke(main, ["--config", str(world.config), "validate", "--json"])
    assert result.exit_code == 0, result.output
    _set(world.udp, 0, "per_rent_00", 1.7)
    result = CliRunner().invoke(main, ["--config", str(world.config), "validate", "--json"])
    errors = json.loads(result.stdout)["errors"]
    assert [(e["line"], e["column"]) for e in errors] == [(2, "per_rent_00")]


def test_a_vintage_without_its_own_sampling_fraction_is_named(world: World) -> None:
    with world.config.open("a") as fh:
        fh.write('\nmodel:\n  low_income_loss:\n    sample_fractions: {"90": 0.1667, "00": 0.1667, "12": 0.08}\n')
    result = CliRunner().invoke(main, ["--config", str(world.config), "validate", "--json"])
    assert result.exit_code == 0, result.output
    named = [w for w in json.loads(result.stdout)["warnings"] if w["file"] == "model.low_income_loss.sample_fractions"]
    assert len(named) == 1 and "vintage '18'" in named[0]["message"] and "assumes 0.08" in named[0]["message"]
