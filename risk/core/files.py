"""Writing outputs so that a failure never leaves a partial file behind, and stores of derived data
kept under a key of what they were derived from."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from risk.core.errors import OutputError

log = logging.getLogger(__name__)
KEEP_DAYS = 56
"""An entry unused for eight weeks belongs to data that has since changed."""
_ENTRY = re.compile(r"\.?[a-z]+(?:-[a-z]+)?-[0-9a-f]{32}(?:\..+)?")
"""An entry's name (``kind-<hash>``) or its temporary folder's (``.kind-<hash>.<random>``)."""
T = TypeVar("T")
_LIBRARIES = ("lightgbm", "scikit-learn", "scipy", "numpy", "pandas", "pyarrow", "geopandas", "shapely")


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only if the block succeeds."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from e
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from e
    finally:
        tmp_path.unlink(missing_ok=True)


@functools.cache
def code_hash() -> str:
    """Every module of the package: a change to any of them may change what an entry would hold."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]  # the whole package, not this folder
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of the libraries whose results an entry holds."""
    return {name: version(name) for name in _LIBRARIES}


def frame_hash(frame: pd.DataFrame) -> str:
    """A content hash of a frame (values and index), for keys over computed tables."""
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()).hexdigest()


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Parquet, with each dtype recorded beside it for :func:`read_frame`."""
    frame.to_parquet(path, index=True)
    dtypes = {"index": str(frame.index.dtype), "columns": {str(c): str(t) for c, t in frame.dtypes.items()}}
    path.with_suffix(".dtypes.json").write_text(json.dumps(dtypes))


def read_frame(path: Path) -> pd.DataFrame:
    """The frame as the run made it: Parquet brings strings back as pandas' default string dtype, whichever
    string dtype the frame had, so each dtype is restored from the record written beside it."""
    frame = pd.read_parquet(path)
    dtypes = json.loads(path.with_suffix(".dtypes.json").read_text())
    if str(frame.index.dtype) != dtypes["index"]:
        frame.index = frame.index.astype(dtypes["index"])
    for column, dtype in dtypes["columns"].items():
        if str(frame[column].dtype) != dtype:
            frame[column] = frame[column].astype(dtype)
    return frame


class EntryStore:
    """Folders of derived data, one per key, each written aside and renamed into place.

    An entry only saves time: one that cannot be read is logged, removed and recomputed, one that cannot be
    written is logged and skipped. Entries unused for ``keep_days`` are pruned; nothing else in the folder is
    touched, though it should hold nothing else."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0

    def key(self, kind: str, *parts: object) -> str:
        """``kind-<hash>`` of the package code, the library versions and the given JSON-able parts."""
        text = json.dumps([code_hash(), library_versions(), kind, *parts], sort_keys=True, default=str)
        return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"

    def get(self, key: str, read: Callable[[Path], T]) -> T | None:
        """The entry's content as ``read`` makes it from the entry folder, or None (absent or unreadable)."""
        path = self.folder / key
        if not path.is_dir():
            self.misses += 1
            return None
        try:
            value = read(path)
        except Exception as e:  # noqa: BLE001 - any damage to an entry only means it is recomputed
            log.warning("work cache entry %s is unreadable (%s); recomputing it", path, e)
            shutil.rmtree(path, ignore_errors=True)
            self.misses += 1
            return None
        with contextlib.suppress(OSError):  # used: keep it past the next prune (a read-only cache still serves)
            os.utime(path)
        self.hits += 1
        return value

    def has(self, key: str) -> bool:
        """Whether the entry exists; it counts as used (a hit, kept past the next prune) without being read."""
        path = self.folder / key
        if not path.is_dir():
            return False
        with contextlib.suppress(OSError):
            os.utime(path)
        self.hits += 1
        return True

    def put(self, key: str, write: Callable[[Path], None]) -> None:
        """Write an entry with ``write(folder)`` into a temporary folder and rename it into place.

        An entry that cannot be written costs only time next week: it is logged, never raised."""
        path = self.folder / key
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.folder))
        except OSError as e:
            log.warning("cannot write the work cache in %s: %s", self.folder, e.strerror or e)
            return
        try:
            write(tmp)
            os.rename(tmp, path)
        except Exception as e:  # noqa: BLE001 - a full disk or an unwritable value must not fail the run
            if not path.is_dir():  # another run wrote the same entry first: theirs is as good
                log.warning("cannot write work cache entry %s: %s", path, getattr(e, "strerror", None) or e)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def frames(self, key: str) -> tuple[dict[str, pd.DataFrame], Any] | None:
        """Frames and the JSON note stored by :meth:`put_frames`, or None."""
        def read(folder: Path) -> tuple[dict[str, pd.DataFrame], Any]:
            stored = json.loads((folder / "note.json").read_text())
            return {n: read_frame(folder / f"{n}.parquet") for n in stored["frames"]}, stored["note"]

        return self.get(key, read)

    def put_frames(self, key: str, frames: dict[str, pd.DataFrame], note: Any = None, owner: str | None = None) -> None:
        """Store frames (Parquet, dtypes restored on reading) and a JSON-serialisable note; ``owner`` names who
        the entry belongs to, for :meth:`drop_others`."""
        def write(folder: Path) -> None:
            for name, frame in frames.items():
                write_frame(frame, folder / f"{name}.parquet")
            (folder / "note.json").write_text(json.dumps({"frames": sorted(frames), "note": note}))
            if owner is not None:
                (folder / "owner.json").write_text(json.dumps(owner))

        self.put(key, write)

    def _entries(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return [p for p in self.folder.iterdir() if _ENTRY.fullmatch(p.name)]

    def drop_others(self, prefix: str, keep: str, owner: str | None = None) -> None:
        """Remove every entry whose key starts with ``prefix`` except ``keep`` (a superseded version); with an
        ``owner``, only the entries written with that owner (:meth:`put_frames`): one region's family does not
        supersede another's."""
        for path in self._entries():
            if path.name.startswith(prefix) and path.name != keep and (owner is None or self._owner(path) == owner):
                shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _owner(path: Path) -> str | None:
        try:
            return json.loads((path / "owner.json").read_text())
        except (OSError, ValueError):
            return None

    def prune(self, keep_days: int = KEEP_DAYS) -> int:
        """Remove entries (and abandoned temporary folders) unused for ``keep_days``; the number removed."""
        cutoff = time.time() - keep_days * 86400
        removed = 0
        for path in self._entries():
            try:
                old = path.stat().st_mtime < cutoff
            except OSError:
                continue
            if old:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed
