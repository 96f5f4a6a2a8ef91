"""Reading input files within limits: size on disk, size once decompressed, length of a CSV field.

A hostile or broken file (a sparse gigabyte, a gzip bomb, a line with no
delimiter for a gigabyte) must be refused with its name and the limit, never
read whole: every reader here streams fixed-size chunks and stops at a limit.
"""

from __future__ import annotations

import codecs
import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from risk.core.settings import SourcesSettings

MIB = 1 << 20
CHUNK = MIB
"""Bytes handed to a scanner at a time: the scan's working memory is a small multiple of this."""


@dataclass(frozen=True)
class ReadLimits:
    """How much of a file the loaders may read (``sources.max_file_mb``, ``sources.max_field_chars``)."""

    max_file_mb: int = SourcesSettings.model_fields["max_file_mb"].default
    max_field_chars: int = SourcesSettings.model_fields["max_field_chars"].default

    @property
    def max_bytes(self) -> int:
        """The size limit in bytes."""
        return self.max_file_mb * MIB


class Refused(Exception):
    """A file broke a limit or cannot be read; ``line`` is set when the problem has one."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _mb(size: int) -> str:
    return f"{size / MIB:,.1f}"


def check_size(path: Path, limits: ReadLimits) -> None:
    """Refuse a file larger on disk than the limit, before anything reads it (a sparse file costs nothing)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise Refused(f"cannot read file: {e}") from e
    if size > limits.max_bytes:
        raise Refused(f"file is {size:,} bytes ({_mb(size)} MB), over sources.max_file_mb = {limits.max_file_mb} MB "
                      f"({limits.max_bytes:,} bytes); raise the limit if the file is genuine")


def byte_chunks(path: Path, limits: ReadLimits, size: int = CHUNK) -> Iterator[bytes]:
    """The file's bytes (decompressed when ``.gz``) in chunks, refusing once more than the limit has come."""
    check_size(path, limits)
    total = 0
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as fh:
            # GzipFile.read(n) inflates at most n bytes, so a bomb is stopped after one chunk over the limit
            while block := fh.read(size):
                total += len(block)
                if total > limits.max_bytes:
                    raise Refused(f"file decompresses to more than sources.max_file_mb = {limits.max_file_mb} MB "
                                  f"({limits.max_bytes:,} bytes; reading stopped there); raise the limit if "
                                  "the file is genuine")
                yield block
    except (OSError, EOFError, zlib.error) as e:
        raise Refused(f"cannot read file: {e}") from e


def ascii_compatible(encoding: str) -> bool:
    """True when the encoding writes quote, comma, CR, LF, space and tab as their single ASCII bytes."""
    probe = "\",\r\n \tA"
    try:
        return probe.encode(encoding).removeprefix(codecs.BOM_UTF8) == probe.encode("ascii")
    except (LookupError, UnicodeError):
        return False


def as_utf8(chunks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """Chunks re-encoded as UTF-8, for scanning files in encodings such as UTF-16 (bad bytes replaced:
    the parser names them afterwards)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    for block in chunks:
        yield decoder.decode(block).encode("utf-8")
    yield decoder.decode(b"", final=True).encode("utf-8")


def undecodable(path: Path, encoding: str, limits: ReadLimits) -> tuple[int, int] | None:
    """(line, byte value) of the first byte that is not valid ``encoding`` text, or None, read in chunks."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    line = 1
    for block in byte_chunks(path, limits):
        try:
            decoder.decode(block)
        except UnicodeDecodeError as e:
            # the error's offsets count from the start of what the decoder held: bytes kept back from the
            # previous block (part of one character, never a line end) and then this block
            at = max(0, e.start - (len(e.object) - len(block)))
            return line + block[:at].count(b"\n"), e.object[e.start]
        line += block.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as e:
        return line, e.object[e.start]
    return None
