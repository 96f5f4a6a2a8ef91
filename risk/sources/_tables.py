"""Reading published CSV files defensively, collecting every problem with its line.

Loaders call :func:`read_table` and the ``check_*`` helpers; nothing here
raises for bad data: problems are collected in a :class:`ProblemLog` so that
``risk validate`` can report all of them at once. A file is first scanned in
chunks (:mod:`risk.sources._layout`), within the limits of
:mod:`risk.sources._bounded`, and parsed only when its rows are sound.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from risk.core import clock
from risk.core.errors import Problem
from risk.sources._bounded import (
    ReadLimits,
    Refused,
    as_utf8,
    ascii_compatible,
    byte_chunks,
    undecodable,
)
from risk.sources._layout import Layout, LineMap, scan

SENTINEL_MAX = -1e8
"""Census/ACS annotation values (-666666666, -999999999, ...) are all below this."""

_EXAMPLES = 5
_LISTED = 100_000
"""Rows a summary problem lists in full (`risk validate --all`)."""
"""Rows listed per check before the rest are summarised, so one broken column stays readable."""


def display_path(path: Path | str) -> str:
    """A path as a person would type it: relative to the working folder when inside it."""
    text = str(path)
    if ", " in text or not os.path.isabs(text):
        return text
    rel = os.path.relpath(os.path.normpath(text))
    return rel if not rel.startswith("..") else os.path.normpath(text)


@dataclass
class ProblemLog:
    """Problems found in one family's files."""

    family: str
    items: list[Problem] = field(default_factory=list)
    limits: ReadLimits = field(default_factory=ReadLimits)
    """How much of a file may be read (``sources.max_file_mb``, ``sources.max_field_chars``)."""
    latest: pd.Timestamp | None = None
    """The latest date any check compared with today: while today is past it, no check can find the future."""

    def dated(self, latest: object) -> None:
        """Note the latest date a check compared with today (NaT and None are ignored)."""
        stamp = pd.Timestamp(latest) if latest is not None else pd.NaT
        if not pd.isna(stamp) and (self.latest is None or stamp > self.latest):
            self.latest = stamp

    def add(
        self, file: Path | str, message: str, *, line: int | None = None,
        column: str | None = None, severity: str = "error", more: tuple[tuple[int | None, str], ...] = (),
    ) -> None:
        """Record one problem (``more``: the rows a summary problem stands for)."""
        self.items.append(
            Problem(file=display_path(file), message=message, line=line, column=column,
                    severity=severity, family=self.family, more=more)  # type: ignore[arg-type]
        )

    def rows(
        self, table: Table, mask: pd.Series | np.ndarray, column: str | None,
        describe: Callable[[int], str], severity: str = "error",
    ) -> None:
        """Record a problem for each row where ``mask`` holds (listing the first few)."""
        positions = np.flatnonzero(np.asarray(mask, dtype=bool))
        for pos in positions[:_EXAMPLES]:
            self.add(table.path, describe(int(pos)), line=table.line(int(pos)), column=column, severity=severity)
        if len(positions) > _EXAMPLES:
            rest = len(positions) - _EXAMPLES
            # every row the summary stands for, for `risk validate --all` (bounded: a national file can have
            # millions of bad rows, and the first hundred thousand are enough to act on)
            more = tuple((table.line(int(pos)), describe(int(pos))) for pos in positions[_EXAMPLES:_LISTED])
            self.add(table.path, f"... and {rest} more row{'s' if rest > 1 else ''} with the same problem "
                     f"(first at line {table.line(int(positions[0]))})", column=column, severity=severity, more=more)

    @property
    def has_errors(self) -> bool:
        """True when at least one problem is an error."""
        return any(p.severity == "error" for p in self.items)


@dataclass
class Table:
    """A parsed CSV and the means to name a row by its line in the file."""

    path: Path
    frame: pd.DataFrame
    encoding: str = "utf-8"
    lines: LineMap | None = None
    """Where each data row starts, from the scan that preceded parsing."""

    def line(self, position: int) -> int:
        """1-based line of the file where data row ``position`` starts (header is line 1)."""
        return self.lines.line(position) if self.lines is not None else position + 2

    def value(self, column: str, position: int) -> object:
        """The raw value at a row, for messages."""
        return self.frame[column].iloc[position]


def _scan(path: Path, encoding: str, log: ProblemLog) -> Layout | None:
    """The file's rows, or None once the reason it cannot be parsed is recorded: over a limit,
    unreadable, empty, or rows whose number of fields differs from the header's."""
    try:
        chunks = byte_chunks(path, log.limits)
        layout = scan(chunks if ascii_compatible(encoding) else as_utf8(chunks, encoding),
                      log.limits.max_field_chars)
    except Refused as e:
        log.add(path, e.message, line=e.line)
        return None
    except LookupError:
        log.add(path, f"unknown text encoding '{encoding}' (sources.encoding)")
        return None
    if layout.header is None:
        log.add(path, "file is empty")
        return None
    _report_bad_rows(path, layout, log)
    return None if layout.bad_count else layout


def _report_bad_rows(path: Path, layout: Layout, log: ProblemLog) -> None:
    """Every row with the wrong number of fields: the first few by line, then how many more."""
    expected = layout.header or 0
    for row in layout.bad:
        if not row.ended and row.fields < expected:
            message = (f"file looks truncated: the last line has {row.fields} of {expected} fields "
                       "and no line end")
        else:
            why = "the row is cut short" if row.fields < expected else \
                "the row has more delimiters than the header (an unquoted comma?)"
            message = f"malformed CSV row: expected {expected} fields, found {row.fields}; {why}"
        log.add(path, message, line=row.line)
    if (rest := layout.bad_count - len(layout.bad)) > 0:
        log.add(path, f"... and {rest} more row{'s' if rest > 1 else ''} without {expected} fields "
                f"(first at line {layout.bad[0].line})")


def _report_undecodable(path: Path, encoding: str, error: Exception, log: ProblemLog) -> None:
    """Name the line of the first byte that is not ``encoding`` text, reading the file again in chunks."""
    try:
        found = undecodable(path, encoding, log.limits)
    except Refused as e:
        log.add(path, e.message, line=e.line)
        return
    if found is None:
        log.add(path, f"cannot read file: {error}")
        return
    line, byte = found
    log.add(path, f"not valid {encoding} text (byte 0x{byte:02x}); re-save the file as "
            f"{encoding} or set sources.encoding", line=line)


def read_table(
    path: Path, log: ProblemLog, *, encoding: str, required: Iterable[str],
    dtype: dict[str, type] | None = None, any_of: Iterable[Iterable[str]] = (),
) -> Table | None:
    """Parse a CSV, recording empty, undecodable, truncated, oversized or malformed files and missing columns."""
    layout = _scan(path, encoding, log)
    if layout is None:
        return None
    try:
        # parsed straight from the file: decoding it into one Python string first doubled peak memory
        # compression named as the other readers here see it (pandas would also unpack .zip, .bz2, .GZ ...)
        frame = pd.read_csv(path, dtype=dtype, low_memory=False, encoding=encoding, encoding_errors="strict",
                            compression="gzip" if path.suffix == ".gz" else None,
                            na_values=["NA", "N/A", "NULL", "null", ""], keep_default_na=True)
    except UnicodeDecodeError as e:
        _report_undecodable(path, encoding, e, log)
        return None
    except (pd.errors.EmptyDataError, OSError, EOFError, zlib.error) as e:
        log.add(path, "file has no header row" if isinstance(e, pd.errors.EmptyDataError)
                else f"cannot read file: {e}")
        return None
    except pd.errors.ParserError as e:
        # the scan found every ragged row; what is left (a quote never closed) pandas names by row count only
        log.add(path, f"malformed CSV: {str(e).strip().removeprefix('Error tokenizing data. ')}")
        return None
    frame.columns = [str(c).strip() for c in frame.columns]
    table = Table(path=path, frame=frame, encoding=encoding, lines=layout.lines)
    if frame.empty:
        log.add(path, "file has a header but no data rows")
        return None
    missing = [c for c in required if c not in frame.columns]
    for c in missing:
        log.add(path, "required column is missing", line=1, column=c)
    for group in any_of:
        group = list(group)
        if not any(c in frame.columns for c in group):
            log.add(path, f"needs one of the columns {group}", line=1)
            missing.append(group[0])
    dupes = [c for c in frame.columns if c.endswith(".1") and c[:-2] in frame.columns]
    for c in dupes:
        log.add(path, "column name appears twice in the header", line=1, column=c[:-2])
    return None if missing or dupes else table


def _geoid_text(values: pd.Series) -> pd.Series:
    """GEOIDs as written, without spaces or the ``.0`` of a number saved as a float."""
    return values.astype("string").str.strip().str.replace(r"\.0+$", "", regex=True)


def normalise_geoids(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """GEOIDs as 11-character strings; returns the strings and a mask of unusable values."""
    return _normalised(_geoid_text(values))


def _normalised(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """:func:`normalise_geoids` of GEOIDs already cleaned by :func:`_geoid_text`."""
    ok = text.str.fullmatch(r"\d{1,11}").fillna(False).to_numpy(dtype=bool)
    out = text.where(ok).str.zfill(11)
    # 9 or fewer digits cannot be a state+county+tract code even with a lost leading zero
    short = (text.str.len() < 10).fillna(True).to_numpy(dtype=bool)
    bad = ~ok | short
    return out.where(~bad), bad


LEADING_ZERO_RESTORED = "geoid_leading_zero_restored"
"""Warning: every GEOID of a file had 10 digits and took back its leading 0."""
LEADING_ZERO_AMBIGUOUS = "geoid_leading_zero_ambiguous"
"""Error: 10-digit GEOIDs that cannot safely take back a leading 0."""


def check_geoids(
    table: Table, column: str, log: ProblemLog, counties: tuple[str, ...] | None = None, *, announce: bool = True,
) -> pd.Series:
    """Normalise a GEOID column, recording values that are not tract codes.

    Given the region's ``counties``, 10-digit GEOIDs (a leading 0 lost by a spreadsheet or a number column) are
    judged as a whole: see :func:`_leading_zero`. Without them, any 10-digit GEOID is padded silently.
    """
    text = _geoid_text(table.frame[column])
    geoids, bad = _normalised(text)
    log.rows(table, bad, column,
             lambda i: f"'{table.value(column, i)}' is not an 11-digit census tract GEOID")
    if counties is not None:
        geoids = geoids.where(~_leading_zero(table, column, text, counties, bad, log, announce))
    return geoids


def _leading_zero(
    table: Table, column: str, text: pd.Series, counties: tuple[str, ...], bad: np.ndarray, log: ProblemLog,
    announce: bool,
) -> np.ndarray:
    """Rows whose 10-digit GEOID cannot take back its leading 0 (recorded as errors).

    The 0 is restored (one warning when ``announce``) only when every usable GEOID of the file has 10 digits and
    some land in the region's counties once padded; otherwise each 10-digit row is an error.
    """
    ten = (text.str.len() == 10).fillna(False).to_numpy(dtype=bool) & ~bad
    if not ten.any():
        return ten
    lands = ("0" + text.str[:4]).isin(counties).fillna(False).to_numpy(dtype=bool) & ten
    if ten.sum() == (~bad).sum() and lands.any():
        if announce:
            log.add(table.path, f"{LEADING_ZERO_RESTORED}: every GEOID has 10 digits (a leading 0 lost); the 0 "
                    f"was restored in {int(ten.sum())} rows ({int(lands.sum())} in the region's counties)",
                    column=column, severity="warning")
        return np.zeros_like(ten)
    why = (f"{int((~bad & ~ten).sum())} other rows have 11 digits" if ten.sum() < (~bad).sum() else
           f"with a leading 0 restored no GEOID of the file lies in the region's counties {list(counties)}")
    log.rows(table, ten, column, lambda i: (
        f"{LEADING_ZERO_AMBIGUOUS}: '{text.iloc[i]}' has 10 digits and {why}, so a lost leading 0 cannot be "
        "told from a wrong code; write every GEOID with its 11 digits"))
    return ten


def to_number(
    table: Table, column: str, log: ProblemLog, *, sentinels: bool = False, thousands: bool = False,
) -> pd.Series:
    """A numeric column; non-numbers are recorded; Census sentinels become NaN when asked."""
    raw = table.frame[column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        # the parser read every value as a number: nothing to report, and no per-value string work
        values = raw.astype("float64")
        return values.mask(values <= SENTINEL_MAX) if sentinels else values
    text = raw.astype("string").str.strip()
    if thousands:
        text = text.str.replace(",", "", regex=False).str.replace("$", "", regex=False)
    values = pd.to_numeric(text, errors="coerce")
    bad = values.isna() & text.notna() & (text != "")
    log.rows(table, bad.to_numpy(), column, lambda i: f"'{table.value(column, i)}' is not a number")
    values = values.astype("float64")
    if sentinels:
        values = values.mask(values <= SENTINEL_MAX)
    return values


def check_range(
    table: Table, values: pd.Series, column: str, log: ProblemLog, *,
    low: float | None = None, high: float | None = None, what: str = "value",
) -> None:
    """Record values outside [low, high] (NaN passes)."""
    v = values.to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        if low is not None:
            log.rows(table, v < low, column, lambda i: f"{what} {v[i]:g} is below the minimum {low:g}")
        if high is not None:
            log.rows(table, v > high, column, lambda i: f"{what} {v[i]:g} is above the maximum {high:g}")


_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%m/%d/%Y", "%m/%d/%y", "%Y/%m/%d")


def to_date(table: Table, column: str, log: ProblemLog, *, today: date | None = None) -> pd.Series:
    """Parse a date column in the first format that fits every value; unparseable and future dates are recorded."""
    text = table.frame[column].astype("string").str.strip()
    present = text.notna() & (text != "")
    best: pd.Series | None = None
    for fmt in _DATE_FORMATS:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        if best is None or parsed[present].notna().sum() > best[present].notna().sum():
            best = parsed
        if parsed[present].notna().all():
            break
    assert best is not None
    bad = (present & best.isna()).to_numpy()
    log.rows(table, bad, column, lambda i: f"'{text.iloc[i]}' is not a date")
    limit = pd.Timestamp(today or clock.today())
    log.dated(best.max())
    future = (best > limit).fillna(False).to_numpy(dtype=bool)
    log.rows(table, future, column, lambda i: f"date {best.iloc[i]:%Y-%m-%d} is in the future")
    return best.astype("datetime64[ns]")


def _show(value: object) -> str:
    """A key value as a person would write it."""
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_duplicates(table: Table, keys: pd.DataFrame, columns: str, log: ProblemLog,
                     within: np.ndarray | None = None) -> np.ndarray:
    """Record rows whose key repeats an earlier row's; returns the mask of repeats. With ``within``, only those
    rows count (rows of other counties and ignored tracts are not this region's problem)."""
    dup = keys.duplicated(keep="first").to_numpy()
    if within is not None:
        dup = dup & within
    first = {}
    if dup.any():
        firsts = keys[~keys.duplicated(keep="first")]
        first = {tuple(r): i for i, r in zip(firsts.index, firsts.itertuples(index=False))}
    labels = list(keys.columns)
    log.rows(table, dup, columns, lambda i: (
        f"duplicate key {', '.join(f'{k}={_show(v)}' for k, v in zip(labels, keys.iloc[i]))} "
        f"(first at line {table.line(int(first.get(tuple(keys.iloc[i]), i)))})"))
    return dup


def keep_in_region(
    table: Table, geoids: pd.Series, column: str, known: pd.Index | None, county_fips: tuple[str, ...],
    ignore: tuple[str, ...], log: ProblemLog,
) -> np.ndarray:
    """Rows to keep: tracts of the region; an in-region GEOID missing from the boundaries is an error (without
    boundaries, ``known`` is None and every GEOID of the region's counties is a tract)."""
    g = geoids.astype("string")
    in_counties = g.str[:5].isin(county_fips).fillna(False).to_numpy(dtype=bool)
    is_known = (g.notna().to_numpy(dtype=bool) if known is None
                else g.isin(known).fillna(False).to_numpy(dtype=bool))
    ignored = g.isin(ignore).fillna(False).to_numpy(dtype=bool)
    unknown = in_counties & ~is_known & ~ignored
    log.rows(table, unknown, column, lambda i: (
        f"GEOID {g.iloc[i]} is not a tract in the boundaries file (list it in region.ignore_geoids "
        "if it is a known water or special tract)"))
    return in_counties & is_known & ~ignored  # an ignored tract is left out everywhere, boundaries included
