"""Hostile and broken input files: ragged rows, boundaries in the wrong CRS, oversized files, gzip bombs and
giant fields are each refused with exit 3, the file, the line where there is one, and no traceback."""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from world import World, make_world

from risk.cli.main import main
from risk.core.settings import DemographicsSource, RegionSettings, describe_keys
from risk.sources._bounded import MIB, Refused
from risk.sources._layout import scan
from risk.sources._tables import ProblemLog
from risk.sources.demographics import load_census_tables

Rows = list[list[str]]


def _validate(world: World) -> tuple[Result, list[str]]:
    """`risk validate --json` on the world, and each error as 'file, line N, column 'c': message'."""
    result = CliRunner().invoke(main, ["--config", str(world.config), "validate", "--json"])
    if result.exit_code not in (0, 3):
        return result, []
    errors = json.loads(result.stdout)["errors"]
    return result, [f"{e['file']}, line {e['line']}, column '{e['column']}': {e['message']}" for e in errors]


def _refused(world: World, *expected: str) -> list[str]:
    """Validation fails with exit 3 and one message holding every expected piece; a run is refused the same way."""
    result, messages = _validate(world)
    assert result.exit_code == 3, result.output
    assert any(all(s in m for s in expected) for m in messages), "\n".join(messages)
    out = world.root / "out" / "features.parquet"
    run = CliRunner().invoke(main, ["--config", str(world.config), "features", "--as-of", "2015-12-31",
                                    "--out", str(out)])
    assert run.exit_code == 3 and "invalid input" in run.stderr and "Traceback" not in run.output
    assert not out.exists()
    return messages


def _passes(world: World) -> None:
    result, messages = _validate(world)
    assert result.exit_code == 0, "\n".join(messages) or result.output


def _rows(path: Path) -> Rows:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _write_rows(path: Path, rows: Rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def _edit(path: Path, fn: Callable[[Rows], None]) -> None:
    rows = _rows(path)
    fn(rows)
    _write_rows(path, rows)


def _configure(world: World, text: str, **replace: str) -> None:
    """Add keys to the ``sources`` section (given indented by two spaces) and replace parts of the config."""
    config = world.config.read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in config
        config = config.replace(old, new)
    world.config.write_text(config + text, encoding="utf-8")


# --- rows with the wrong number of fields -----------------------------------------------------------------

SOURCES = [("udp", "zillow_tract"), ("evictions", "zillow_tract"), ("zillow_tract", "zillow_tract"),
           ("zillow_zip", "zillow_zip"), ("crosswalk", "zillow_zip"), ("permits_legacy", "zillow_tract"),
           ("permits_sdci", "zillow_tract"), ("coverage", "zillow_tract")]


def _world(tmp_path: Path, rent: str) -> World:
    return make_world(tmp_path / "world", rent=rent)


@pytest.mark.parametrize("key, rent", SOURCES, ids=[k for k, _ in SOURCES])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_row_with_the_wrong_number_of_fields_is_refused_naming_line_and_counts(
        tmp_path: Path, key: str, rent: str, where: str) -> None:
    world = _world(tmp_path, rent)
    path: Path = getattr(world, key)
    rows = _rows(path)
    header = len(rows[0])
    at = {"first": 1, "middle": len(rows) // 2, "last": len(rows) - 1}[where]
    # a one-column file cannot lose a field (an empty line is skipped): it gains one
    rows[at] = rows[at][:max(1, header // 5)] if header > 1 else [*rows[at], "extra"]
    found = len(rows[at])
    _write_rows(path, rows)
    _refused(world, path.name, f"line {at + 1}", f"expected {header} fields, found {found}")


@pytest.mark.parametrize("key, rent", SOURCES[:-1], ids=[k for k, _ in SOURCES[:-1]])  # one column: no cut
def test_a_file_cut_off_in_its_last_line_is_refused_as_truncated(tmp_path: Path, key: str, rent: str) -> None:
    world = _world(tmp_path, rent)
    path: Path = getattr(world, key)
    rows = _rows(path)
    body = path.read_bytes().rstrip(b"\n")
    last = body.rfind(b"\n") + 1
    cut = body[last:].split(b",")[:2]
    path.write_bytes(body[:last] + b",".join(cut))  # no line end: the download stopped mid-row
    _refused(world, path.name, f"line {len(rows)}", f"the last line has 2 of {len(rows[0])} fields and no line end")


def test_every_ragged_row_is_reported_in_one_run(world: World) -> None:
    def cut(rows: Rows) -> None:
        for r in (3, 10, 20, 30, 40, 50, 60):
            rows[r] = rows[r][:5]
        rows[70] = [*rows[70], "1", "2"]
    _edit(world.evictions, cut)
    _edit(world.udp, lambda rows: rows.__setitem__(2, rows[2][:3]))
    messages = _refused(world, "evictions.csv", "line 4", "expected 27 fields, found 5", "cut short")
    evictions = [m for m in messages if "evictions.csv" in m]
    assert [m.split(",")[1].strip() for m in evictions[:5]] == ["line 4", "line 11", "line 21", "line 31", "line 41"]
    assert "... and 3 more rows without 27 fields (first at line 4)" in evictions[5]
    assert any("udp.csv, line 3" in m and "expected 25 fields, found 3" in m for m in messages)


def test_a_quoted_line_break_keeps_its_row_whole_and_the_lines_after_it_right(world: World) -> None:
    def address(rows: Rows) -> None:
        rows[1][2] = "1 PINE ST\nUNIT 2, REAR"  # written quoted: one row over two lines
    _edit(world.permits_legacy, address)
    _passes(world)
    _edit(world.permits_legacy, lambda rows: rows[6].__setitem__(6, "-100"))
    _refused(world, "permits_legacy.csv", "line 8", "column 'Value'", "value -100 is below the minimum 0")
    _edit(world.permits_legacy, lambda rows: rows.__setitem__(9, rows[9][:4]))
    _refused(world, "permits_legacy.csv", "line 11", "expected 13 fields, found 4")


def _crlf_with_blank_lines(path: Path, rows: Rows) -> None:
    """CRLF line ends, an empty line and a line of spaces after line 5 (pandas skips both)."""
    lines = []
    for row in rows:
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(row)
        lines.append(out.getvalue())
    lines[5:5] = ["", "   "]
    path.write_bytes("\r\n".join(lines).encode() + b"\r\n")


def test_blank_lines_and_crlf_line_ends_are_not_ragged_rows_and_lines_count_them(world: World) -> None:
    rows = _rows(world.evictions)
    rows[8][3] = ""  # an empty field is not a missing one
    _crlf_with_blank_lines(world.evictions, rows)
    _passes(world)
    rows[10][rows[0].index("eviction-filings")] = "-7"  # data row 9: line 11, and two blank lines above it
    _crlf_with_blank_lines(world.evictions, rows)
    _refused(world, "evictions.csv", "line 13", "column 'eviction-filings'", "count -7 is below the minimum 0")


def test_a_census_table_with_a_row_cut_short_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "acs.csv"
    _write_rows(path, [["GEOID", "pop_18", "hh_18", "rhu_18"], ["53033000100", "3000", "1200", "500"],
                       ["53033000200", "3100"], ["53033000300", "3200", "1300", "600"]])
    cfg = DemographicsSource.model_validate({"format": "census_tables", "tables": [{
        "path": str(path), "vintage": {"suffix": "18", "label": "ACS 2014-2018", "released": "2019-12-19"}}]})
    log = ProblemLog("demographics")
    known = pd.Index(["53033000100", "53033000200", "53033000300"])
    load_census_tables(cfg, RegionSettings(), known, "utf-8", log)
    assert [(p.line, p.message) for p in log.items] == [
        (3, "malformed CSV row: expected 4 fields, found 2; the row is cut short")]


def test_a_utf16_source_is_scanned_for_ragged_rows_like_any_other(world: World) -> None:
    for path in (world.udp, world.evictions, world.zillow_tract, world.permits_legacy, world.permits_sdci,
                 world.coverage):
        path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))
    _configure(world, "  encoding: utf-16\n")
    _passes(world)
    rows = list(csv.reader(io.StringIO(world.evictions.read_text(encoding="utf-16"), newline="")))
    rows[6] = rows[6][:5]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    world.evictions.write_bytes(out.getvalue().encode("utf-16"))
    _refused(world, "evictions.csv", "line 7", "expected 27 fields, found 5")


# --- the chunked scan against a byte-by-byte tokenizer -------------------------------------------------

def _tokenize(data: bytes) -> tuple[int | None, list[tuple[int, int, bool]], int]:
    """pandas' C tokenizer, one byte at a time: the header's field count, (line, fields, has a line end) of
    each data row, and the longest field in bytes (quotes included, the CR of a CRLF not)."""
    rows, line, row_line, fields, blank, state, start, longest = [], 1, 1, 1, True, "start", 0, 0
    for i, c in enumerate(data):
        lone_cr = c == 13 and data[i + 1:i + 2] != b"\n"
        if state == "quoted":
            state = "quote" if c == 34 else "quoted"
            line += c == 10 or lone_cr
            continue
        if state == "quote":
            if c == 34:
                state = "quoted"
                continue
            state = "field"  # the quote closed the field; this byte continues it
        if c in (44, 10, 13):
            longest, start = max(longest, i - start), i + 1
        if c == 44:
            fields, blank, state = fields + 1, False, "start"
        elif c == 10 or lone_cr:
            line += 1
            rows.append((row_line, fields, blank, True))
            fields, blank, row_line, state = 1, True, line, "start"
        elif c == 34 and state == "start":
            state, blank = "quoted", False
        elif c != 13:
            state, blank = "field", blank and c in (32, 9)
    longest = max(longest, len(data) - start)
    if not blank:
        rows.append((row_line, fields, False, False))
    kept = [(r[0], r[1], r[3]) for r in rows if not r[2]]
    return (kept[0][1] if kept else None), kept[1:], longest


_TOKENS = [b"a", b"1", b",", b"\n", b"\r\n", b"\r", b'"', b'""', b" ", b"\t", b"aaaaaa", b'"x\ny"', b'"p,q"']


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=40), st.lists(st.integers(0, 120), max_size=5),
       st.integers(0, 10))
def test_the_scan_agrees_with_a_byte_by_byte_tokenizer_wherever_the_chunks_break(
        tokens: list[bytes], cuts: list[int], limit: int) -> None:
    data = b"".join(tokens)
    header, rows, longest = _tokenize(data)
    edges = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *edges], [*edges, len(data)])]
    if longest > limit:
        with pytest.raises(Refused):
            scan(iter(chunks), limit)
        return
    layout = scan(iter(chunks), limit)
    assert (layout.header, layout.rows) == (header, len(rows))
    assert [layout.lines.line(i) for i in range(layout.rows)] == [line for line, _, _ in rows]
    bad = [r for r in rows if r[1] != header]
    assert layout.bad_count == len(bad)
    assert [(b.line, b.fields, b.ended) for b in layout.bad] == bad[:5]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([t for t in _TOKENS if t != b"\r"]), min_size=1, max_size=40))
def test_the_tokenizer_counts_rows_as_pandas_does(tokens: list[bytes]) -> None:
    """The reference above is pandas' reading (a lone CR after a line of spaces aside: pandas then drops the
    next comma, a quirk no scan copies)."""
    data = b"".join(tokens)
    header, rows, _ = _tokenize(data)
    if header is None or any(fields != header for _, fields, _ in rows):
        return
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except pd.errors.ParserError:  # a quote never closed
        return
    assert frame.shape == (len(rows), header)


# --- boundaries whose coordinates cannot be in their CRS -------------------------------------------------

def _boundaries(world: World, crs: int | None, declared: int | None, name: str = "tracts.gpkg") -> Path:
    """The world's tracts with coordinates in EPSG ``crs`` (None: as they are), saying they are in ``declared``."""
    frame = gpd.read_file(world.boundaries)
    frame = frame.to_crs(crs) if crs else frame
    frame = frame.set_crs(declared, allow_override=True) if declared else frame.set_crs(None, allow_override=True)
    path = world.root / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pyogrio's note that the file will have no CRS: the point
        frame.to_file(path, driver="GPKG" if name.endswith(".gpkg") else "GeoJSON")
    _configure(world, "", **{"boundaries: {path: tracts.geojson}": f"boundaries: {{path: {name}}}"})
    return path


def test_projected_coordinates_declared_as_degrees_are_refused_naming_crs_and_bounds(world: World) -> None:
    _boundaries(world, 32610, 4326, "utm.geojson")
    _refused(world, "utm.geojson", "declares EPSG:4326 (WGS 84)", "x 5", "y 5.26", "outside longitude -180..180",
             "look projected")


def test_projected_coordinates_without_a_crs_are_refused(world: World) -> None:
    _boundaries(world, 32610, None)
    _refused(world, "tracts.gpkg", "no coordinate reference system", "x 5", "not longitude/latitude")


def test_degrees_without_a_crs_are_taken_as_epsg_4326_with_a_warning(world: World) -> None:
    _boundaries(world, None, None)
    result, _ = _validate(world)
    assert result.exit_code == 0, result.output
    warnings = [w["message"] for w in json.loads(result.stdout)["warnings"] if w["file"].endswith("tracts.gpkg")]
    assert any("no coordinate reference system" in w and "EPSG:4326 is assumed" in w for w in warnings), warnings


def test_coordinates_outside_the_declared_crs_area_of_use_are_refused(world: World) -> None:
    _boundaries(world, 32610, 2926)  # UTM metres said to be Washington North state plane feet
    _refused(world, "tracts.gpkg", "declares EPSG:2926", "outside its area of use", "latitude 6")


def test_boundaries_whose_crs_puts_them_outside_the_united_states_are_refused(world: World) -> None:
    _boundaries(world, 32610, 3857)  # web mercator covers the world: the metres land in France
    _refused(world, "tracts.gpkg", "nowhere near the United States", "declared EPSG:3857")


def test_correctly_declared_projected_boundaries_still_pass(world: World) -> None:
    _boundaries(world, 32610, 32610)
    _passes(world)


# --- limits on size and field length ---------------------------------------------------------------------

def _pad(path: Path, size: int) -> None:
    """Blank lines at the end until the file holds exactly ``size`` bytes (blank lines are skipped)."""
    data = path.read_bytes()
    assert len(data) <= size
    path.write_bytes(data + b"\n" * (size - len(data)))


def test_a_file_of_exactly_max_file_mb_passes_and_one_byte_more_is_refused(world: World) -> None:
    _configure(world, "  max_file_mb: 1\n")
    _pad(world.evictions, MIB)
    _passes(world)
    _pad(world.evictions, MIB + 1)
    _refused(world, "evictions.csv", "over sources.max_file_mb = 1 MB")


def test_a_sparse_file_over_the_limit_is_refused_fast_without_being_read(world: World) -> None:
    _configure(world, "  max_file_mb: 1\n")
    with world.zillow_tract.open("r+b") as fh:
        fh.truncate(MIB + 1)
    started = time.monotonic()
    _refused(world, "zillow_tract.csv", "max_file_mb")
    assert time.monotonic() - started < 30


def test_a_sparse_file_over_the_default_limit_is_refused_fast(world: World) -> None:
    with world.zillow_tract.open("r+b") as fh:
        fh.truncate(2048 * MIB + 1)
    started = time.monotonic()
    _refused(world, "zillow_tract.csv", "file is 2,147,483,649 bytes (2,048.0 MB), over sources.max_file_mb = 2048 MB")
    assert time.monotonic() - started < 30


def test_a_sparse_gigabyte_without_line_ends_is_refused_at_its_first_field(world: World) -> None:
    with world.zillow_tract.open("wb") as fh:  # under the size limit: the field limit stops it after one chunk
        fh.truncate(1024 * MIB)
    started = time.monotonic()
    _refused(world, "zillow_tract.csv", "line 1", "longer than sources.max_field_chars = 100,000 characters")
    assert time.monotonic() - started < 60


def _gzip(path: Path, body: bytes, repeat: int = 1) -> Path:
    out = path.with_name(path.name + ".gz")
    with gzip.open(out, "wb", compresslevel=6) as fh:
        for _ in range(repeat):
            fh.write(body)
    return out


def test_a_gzip_decompressing_to_exactly_the_limit_passes_and_one_byte_more_is_refused(world: World) -> None:
    _configure(world, "  max_file_mb: 1\n", **{"path: evictions.csv": "path: evictions.csv.gz"})
    _pad(world.evictions, MIB)
    _gzip(world.evictions, world.evictions.read_bytes())
    _passes(world)
    _gzip(world.evictions, world.evictions.read_bytes() + b"\n")
    _refused(world, "evictions.csv.gz", "decompresses to more than sources.max_file_mb = 1 MB")


_MEASURE = """
import json, resource, sys
import geopandas
from risk.cli.main import main
geopandas.read_file(sys.argv[2])  # the libraries and GDAL's drivers loaded before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    main(sys.argv[3:])
except SystemExit as e:
    code = e.code
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
open(sys.argv[1], "w").write(json.dumps({"code": code, "grew_mb": grew / 1024}))
"""


def test_a_gzip_bomb_is_refused_with_bounded_memory(world: World) -> None:
    _configure(world, "  max_file_mb: 10\n", **{"path: evictions.csv": "path: evictions.csv.gz"})
    row = world.evictions.read_bytes().split(b"\n")[1] + b"\n"
    bomb = _gzip(world.evictions, world.evictions.read_bytes().split(b"\n")[0] + b"\n" + row * (MIB // len(row)),
                 repeat=200)  # 200 MB of rows once inflated
    assert bomb.stat().st_size < 2 * MIB
    report = world.root / "measure.json"
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(report), str(world.boundaries),
                             "--config", str(world.config), "validate", "--json"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    measured = json.loads(report.read_text())
    assert measured["code"] == 3, result.stderr
    errors = json.loads(result.stdout)["errors"]
    assert any(e["file"].endswith("evictions.csv.gz") and "decompresses to more than sources.max_file_mb = 10 MB"
               in e["message"] for e in errors), errors
    assert measured["grew_mb"] < 50, measured  # against 200 MB inflated: reading stopped at the limit


def test_a_field_of_exactly_max_field_chars_passes_and_one_more_is_refused_with_its_line(world: World) -> None:
    _configure(world, "  max_field_chars: 1000\n")
    _edit(world.permits_legacy, lambda rows: rows[3].__setitem__(2, "A" * 1000))
    _passes(world)
    _edit(world.permits_legacy, lambda rows: rows[3].__setitem__(2, "A" * 1001))
    _refused(world, "permits_legacy.csv", "line 4", "longer than sources.max_field_chars = 1,000 characters")


def test_the_limits_and_their_edges_are_documented_in_config_keys() -> None:
    helps = {key: (default, text) for key, default, text in describe_keys()}
    assert helps["sources.max_file_mb"][1].count("exactly this size passes, one byte more is refused") == 1
    assert helps["sources.max_field_chars"][1].count("exactly this length passes, one more is refused") == 1
    assert CliRunner().invoke(main, ["config", "keys"]).exit_code == 0
