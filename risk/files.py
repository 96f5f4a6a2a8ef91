"""Writing outputs so that a failure never leaves a partial file behind, and stores of derived data
kept under a key of what they were derived from."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from risk.errors import OutputError

log = logging.getLogger(__name__)
KEEP_DAYS = 56
"""An entry unused for eight weeks belongs to data that has since changed."""
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
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of the libraries whose results an entry holds."""
    return {name: version(name) for name in _LIBRARIES}


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
    written is logged and skipped. Entries unused for ``keep_days`` are pruned."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.folder / key

    def get(self, key: str, read: Callable[[Path], object]) -> object | None:
        """The entry's content as ``read`` makes it from the entry folder, or None (absent or unreadable)."""
        path = self._path(key)
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
        os.utime(path)  # used: keep it past the next prune
        self.hits += 1
        return value

    def put(self, key: str, write: Callable[[Path], None]) -> None:
        """Write an entry with ``write(folder)`` into a temporary folder and rename it into place.

        A cache that cannot be written costs only time next week: it is logged, never raised."""
        path = self._path(key)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.folder))
        except OSError as e:
            log.warning("cannot write the work cache in %s: %s", self.folder, e.strerror or e)
            return
        try:
            write(tmp)
            os.rename(tmp, path)
        except OSError as e:
            if not path.is_dir():  # another run wrote the same entry first: theirs is as good
                log.warning("cannot write work cache entry %s: %s", path, e.strerror or e)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def frames(self, key: str, names: tuple[str, ...]) -> tuple[dict[str, pd.DataFrame], object] | None:
        """Frames and the JSON note stored by :meth:`put_frames`, or None."""
        def read(folder: Path) -> tuple[dict[str, pd.DataFrame], object]:
            return ({n: read_frame(folder / f"{n}.parquet") for n in names},
                    json.loads((folder / "note.json").read_text()))

        return self.get(key, read)  # type: ignore[return-value]

    def put_frames(self, key: str, frames: dict[str, pd.DataFrame], note: object = None) -> None:
        """Store frames (Parquet, dtypes restored on reading) and a JSON-serialisable note."""
        def write(folder: Path) -> None:
            for name, frame in frames.items():
                write_frame(frame, folder / f"{name}.parquet")
            (folder / "note.json").write_text(json.dumps(note))

        self.put(key, write)

    def json(self, key: str) -> object | None:
        """A JSON entry stored by :meth:`put_json`, or None."""
        return self.get(key, lambda p: json.loads((p / "value.json").read_text()))

    def put_json(self, key: str, value: object) -> None:
        """Store a JSON-serialisable value."""
        self.put(key, lambda p: (p / "value.json").write_text(json.dumps(value)))

    def prune(self, keep_days: int = KEEP_DAYS) -> int:
        """Remove entries (and abandoned temporary folders) unused for ``keep_days``; the number removed."""
        if not self.folder.is_dir():
            return 0
        cutoff = time.time() - keep_days * 86400
        removed = 0
        for path in self.folder.iterdir():
            try:
                old = path.stat().st_mtime < cutoff
            except OSError:
                continue
            if old:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed


