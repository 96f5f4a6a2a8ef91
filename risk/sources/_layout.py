"""The row structure of a CSV file, found by streaming its bytes once before pandas parses it.

pandas fills a row cut short with missing values and names a row with too
many fields only by its count of rows, not its line, and stops at the first.
This scan, which reads the file in chunks of bounded size, finds every row
whose number of fields differs from the header's, every field over the length
limit (stopping there), and the line on which each data row starts, quoted
line breaks included. It follows pandas' C tokenizer: a quote opens a quoted
field only at the start of a field, ``""`` inside one is a quote, CR, LF and
CRLF end a row, and rows holding only spaces and tabs are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from risk.sources._bounded import Refused

QUOTE, COMMA, LF, CR, SPACE, TAB = 34, 44, 10, 13, 32, 9
_START = -1
"""``prev`` before the first byte: a quote there opens a field."""
_EXAMPLES = 5
"""Bad rows listed one by one before the rest are counted."""
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class BadRow:
    """A data row whose number of fields differs from the header's."""

    line: int
    fields: int
    ended: bool
    """False for a last row with no line end: a file cut off."""


@dataclass(frozen=True)
class LineMap:
    """Where each data row starts: row ``i`` is on line ``i + 2 + offsets[k]``, ``k`` the last run starting at or
    before ``i`` (runs change only after a blank line or a row with a quoted line break)."""

    starts: np.ndarray
    offsets: np.ndarray

    def line(self, position: int) -> int:
        """1-based line of data row ``position`` (the header is row -1)."""
        k = int(np.searchsorted(self.starts, position, side="right")) - 1
        return position + 2 + (int(self.offsets[k]) if k >= 0 else 0)


@dataclass(frozen=True)
class Layout:
    """What the scan found: the header's field count, the data rows and the bad ones."""

    header: int | None
    rows: int
    lines: LineMap
    bad: tuple[BadRow, ...]
    """The first few bad rows."""
    bad_count: int


@dataclass
class _Rows:
    """Rows ending in one chunk: their field counts, start lines and whether they hold anything."""

    fields: np.ndarray
    lines: np.ndarray
    blank: np.ndarray


@dataclass
class Scanner:
    """Feed chunks in order, then :meth:`finish`; raises :class:`Refused` on a field over ``max_field``."""

    max_field: int
    header: int | None = None
    rows: int = 0
    breaks: int = 0
    """Line breaks seen so far, quoted ones included."""
    in_quotes: bool = False
    closed: bool = False
    """The previous chunk ended with the quote closing a quoted field (the next may escape it)."""
    prev: int = _START
    row_line: int = 1
    row_commas: int = 0
    row_blank: bool = True
    field_len: int = 0
    bad: list[BadRow] = field(default_factory=list)
    bad_count: int = 0
    _starts: list[np.ndarray] = field(default_factory=list)
    """Per chunk, the data rows where the line offset changes (arrays: a file may change it on every row)."""
    _offsets: list[np.ndarray] = field(default_factory=list)
    _offset: int = 0

    def feed(self, chunk: bytes) -> None:
        """Scan the next bytes; a chunk must not end with CR unless it is the last (CRLF needs its LF)."""
        if self.prev == _START and chunk.startswith(_BOM):
            chunk = chunk[len(_BOM):]
        if not chunk:
            return
        a = np.frombuffer(chunk, dtype=np.uint8)
        ends, commas, every, crs = self._marks(a)
        self._check_fields(a.size, ends, commas, every, crs)
        if ends.size:
            self._rows(self._split(a, ends, commas, every))
            self.row_commas = int(commas.size - np.searchsorted(commas, ends[-1]))
            self.row_line = self.breaks + int(np.searchsorted(every, ends[-1], side="right")) + 1
            self.row_blank = _blank(a[int(ends[-1]) + 1:])
        else:
            self.row_commas += int(commas.size)
            self.row_blank = self.row_blank and _blank(a)
        self.breaks += int(every.size)
        self.prev = int(a[-1])

    def _marks(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Positions of the row ends, the commas and the CRs outside quotes, and of every line break."""
        # the rest works on the few bytes that can matter, not on every byte: the four all sort at or below
        # the comma, and one comparison over the chunk is the cheapest first cut
        pos = np.flatnonzero(a <= COMMA)
        code = a[pos]
        wanted = (code == COMMA) | (code == LF) | (code == CR) | (code == QUOTE)
        pos, code = pos[wanted], code[wanted]
        inside = self._quoted(a, pos, code)
        brk = code == LF
        cr = code == CR
        if cr.any():
            after = pos[cr] + 1
            following = a[np.minimum(after, a.size - 1)]
            brk[cr] = (following != LF) | (after == a.size)  # a lone CR ends a row; CRLF ends it at the LF
        ends = pos[brk & ~inside]
        every = pos[brk] if (brk & inside).any() else ends
        return ends, pos[(code == COMMA) & ~inside], every, pos[cr & ~inside]

    def finish(self) -> Layout:
        """The layout, counting a last row that has no line end."""
        if not self.row_blank:
            self._rows(_Rows(np.array([self.row_commas + 1]), np.array([self.row_line]), np.array([False])),
                       ended=False)
        lines = LineMap(np.concatenate([np.zeros(0, dtype=np.int64), *self._starts]),
                        np.concatenate([np.zeros(0, dtype=np.int64), *self._offsets]))
        return Layout(self.header, self.rows, lines, tuple(self.bad), self.bad_count)

    def _quoted(self, a: np.ndarray, pos: np.ndarray, code: np.ndarray) -> np.ndarray:
        """Which of the bytes at ``pos`` lie inside a quoted field: by the parity of quotes, unless a quote
        opens a field somewhere else than at its start (a stray quote), which only the exact walk gets right."""
        quotes = code == QUOTE
        if not quotes.any():
            self.closed = False
            return np.full(pos.shape, self.in_quotes)
        inside = ((np.cumsum(quotes, dtype=np.uint8) + self.in_quotes) & 1).astype(bool)
        opens = pos[quotes & inside]
        before = a[opens - 1].astype(np.int64)
        if opens.size and opens[0] == 0:
            before[0] = self.prev if self.prev != QUOTE or self.closed else -2
        if np.isin(before, (COMMA, LF, CR, QUOTE, _START)).all():
            self.in_quotes = bool(inside[-1])
            self.closed = bool(quotes[-1] and not inside[-1] and pos[-1] == a.size - 1)
            return inside
        return self._walk(a, pos, pos[quotes])

    def _walk(self, a: np.ndarray, pos: np.ndarray, quotes: np.ndarray) -> np.ndarray:
        """The tokenizer's quote states, quote by quote."""
        spans: list[tuple[int, int]] = []
        state = "in" if self.in_quotes else ("closed" if self.closed else "out")
        opened, last = 0, -2 if state != "closed" else -1
        for i in quotes.tolist():
            if state == "closed" and i == last + 1:
                state = "in"  # "" inside a quoted field is a quote
                continue
            if state == "closed":
                spans.append((opened, last + 1))
                state = "out"
            if state == "in":
                state, last = "closed", i
            elif (a[i - 1] if i else self.prev) in (COMMA, LF, CR, _START):
                state, opened = "in", i
        if state == "closed":
            spans.append((opened, last + 1))
        elif state == "in":
            spans.append((opened, a.size))
        self.in_quotes = state == "in"
        self.closed = state == "closed" and last == a.size - 1
        inside = np.zeros(a.shape, dtype=bool)
        for begin, end in spans:
            inside[begin:end] = True
        return inside[pos]

    def _check_fields(self, size: int, ends: np.ndarray, commas: np.ndarray, every: np.ndarray,
                      crs: np.ndarray) -> None:
        """Refuse a field longer than the limit, carrying the open field's length to the next chunk."""
        last = max(int(ends[-1]) if ends.size else -1, int(commas[-1]) if commas.size else -1)
        if last < 0:
            self.field_len += size
            if self.field_len > self.max_field:
                raise self._too_long(self.row_line)
            return
        # no field is longer than the row holding it: exact lengths are needed only past a long row
        longest = max(self.field_len + (int(ends[0]) if ends.size else size),
                      size - int(ends[-1]) - 1 if ends.size else 0,
                      int(np.diff(ends).max()) - 1 if ends.size > 1 else 0)
        if longest > self.max_field:
            self._refuse_field(np.union1d(np.union1d(ends, commas), crs), every)
        self.field_len = size - last - 1
        if self.field_len > self.max_field:
            raise self._too_long(self.breaks + int(np.searchsorted(every, last, side="right")) + 1)

    def _refuse_field(self, marks: np.ndarray, every: np.ndarray) -> None:
        """Refuse the first field over the limit that ends in this chunk (a CR before its LF is a mark too)."""
        spans = np.concatenate(([self.field_len + int(marks[0])], np.diff(marks) - 1))
        over = np.flatnonzero(spans > self.max_field)
        if not over.size:
            return
        if not over[0]:
            raise self._too_long(self.row_line)
        start = int(marks[over[0] - 1]) + 1
        raise self._too_long(self.breaks + int(np.searchsorted(every, start)) + 1)

    def _too_long(self, line: int) -> Refused:
        return Refused(f"a field is longer than sources.max_field_chars = {self.max_field:,} characters "
                       "(not a CSV table, or a quote never closed?); raise the limit if the field is genuine",
                       line=line)

    def _split(self, a: np.ndarray, ends: np.ndarray, commas: np.ndarray, every: np.ndarray) -> _Rows:
        """The rows that end in this chunk."""
        per_row = np.diff(np.searchsorted(commas, ends), prepend=0) if commas.size else np.zeros_like(ends)
        per_row[0] += self.row_commas
        # without a quoted line break, the rows of a chunk are on consecutive lines
        after = np.arange(1, ends.size) if every is ends else np.searchsorted(every, ends[:-1], side="right")
        lines = np.concatenate(([self.row_line], self.breaks + after + 1))
        blank = np.zeros(ends.size, dtype=bool)
        # only a row without a comma can be blank; a one-column file has nothing but such rows
        maybe = np.flatnonzero(per_row == 0)
        if maybe.size:
            starts = np.concatenate(([0], ends[:-1] + 1))[maybe]
            blank[maybe] = _blank_rows(a, starts, ends[maybe])
            if maybe[0] == 0:
                blank[0] &= self.row_blank
        return _Rows(per_row + 1, lines, blank)

    def _rows(self, rows: _Rows, ended: bool = True) -> None:
        """Take the header from the first row holding anything, then check and place the data rows."""
        keep = ~rows.blank
        fields, lines = rows.fields[keep], rows.lines[keep]
        if self.header is None and fields.size:
            self.header = int(fields[0])
            fields, lines = fields[1:], lines[1:]
        if not fields.size:
            return
        wrong = np.flatnonzero(fields != self.header)
        self.bad_count += int(wrong.size)
        for i in wrong[: max(0, _EXAMPLES - len(self.bad))].tolist():
            self.bad.append(BadRow(int(lines[i]), int(fields[i]), ended))
        offsets = lines - np.arange(self.rows + 2, self.rows + 2 + fields.size)
        change = np.flatnonzero(np.diff(offsets, prepend=self._offset))
        if change.size:
            self._starts.append(self.rows + change)
            self._offsets.append(offsets[change])
        self._offset = int(offsets[-1])
        self.rows += int(fields.size)


def _space(a: np.ndarray) -> np.ndarray:
    """Bytes pandas skips on an otherwise empty line."""
    return (a == SPACE) | (a == TAB) | (a == CR) | (a == LF)


def _blank(a: np.ndarray) -> bool:
    return bool(_space(a).all())


def _blank_rows(a: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Which rows ``a[start:stop]`` hold only spaces and tabs: decided by the first byte for nearly every row."""
    length = stops - starts
    first = a[np.minimum(starts, a.size - 1)]
    blank = (length == 0) | ((length == 1) & (first == CR))
    unsure = np.flatnonzero(~blank & _space(first))
    if unsure.size > 1000:  # many rows start with a space: count the bytes that are not one, all at once
        filled = np.concatenate(([0], np.cumsum(~_space(a), dtype=np.int64)))
        return (filled[stops] - filled[starts]) == 0
    for k in unsure.tolist():
        blank[k] = _blank(a[starts[k]:stops[k]])
    return blank


def scan(chunks: Iterable[bytes], max_field: int) -> Layout:
    """The layout of a CSV given as chunks of bytes (ASCII-compatible encoding)."""
    scanner = Scanner(max_field=max_field)
    held = b""
    for block in chunks:
        data = held + block if held else block
        # a CR at the end waits for the next chunk: only then is it known to be the start of a CRLF
        held = data[-1:] if data.endswith(b"\r") else b""
        scanner.feed(data[:-1] if held else data)
    if held:
        scanner.feed(held)
    return scanner.finish()
