"""Backtest work reused across runs, keyed by the content it was computed from.

A retraining week mostly recomputes what last week already knew: the
features and labels of origins closed years ago, the fits of test origins
whose training rows did not change. Each such piece is stored under a key
that hashes everything it was computed from:

- the code (every module of this package), the library versions, and the
  settings that shape it (region, sources, features, and the outcome, seed
  and resampling settings of the model section);
- the files read outside the validated tables (the demographics database
  the typology reads, the boundaries, the permit coverage list);
- for each table of :class:`~risk.sources.Sources`, a fingerprint of the
  records known at a date: the sum of the row hashes of every record dated
  on or before it. Features at ``as_of`` read only ``sources.known_at(as_of)``
  and labels only ``sources.known_at(closes)``, so a record added or revised
  after ``closes`` leaves the key unchanged and anything earlier changes it.

The sum is a multiset hash: it does not see row order, which is safe because
features do not depend on it (a test shuffles every table to pin that down).
An entry is a folder written beside its final name and renamed into place;
an unreadable entry is logged, removed and recomputed. Entries not used for
:data:`KEEP_DAYS` are pruned. Deleting the folder only costs time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import date
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from risk.settings import Settings
from risk.sources import Sources

log = logging.getLogger(__name__)
KEEP_DAYS = 56
"""An entry unused for eight weeks belongs to data that has since changed."""
_DATED = (("demographics", "released"), ("evictions", "available"), ("rent", "available"), ("permits", "issued"))
_LIBRARIES = ("lightgbm", "scikit-learn", "scipy", "numpy", "pandas", "pyarrow")


@functools.cache
def code_hash() -> str:
    """Every module of the package: a change to any of them may change what an entry would hold."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _fingerprints(sources: Sources) -> dict[str, tuple[pd.Series, np.ndarray]]:
    """Per table: its record dates in order and the running (wrapping) sum of the row hashes up to each."""
    out = {}
    for name, column in _DATED:
        frame = getattr(sources, name)
        if frame is None or frame.empty:
            continue
        dated = frame[frame[column].notna()]
        hashes = pd.util.hash_pandas_object(dated, index=False).to_numpy()
        order = np.argsort(dated[column].to_numpy(), kind="stable")
        out[name] = (pd.Series(dated[column].to_numpy()[order]), np.cumsum(hashes[order], dtype="uint64"))
    return out


def _write_frame(frame: pd.DataFrame, path: Path) -> None:
    frame.to_parquet(path, index=True)
    dtypes = {"index": str(frame.index.dtype), "columns": {str(c): str(t) for c, t in frame.dtypes.items()}}
    path.with_suffix(".dtypes.json").write_text(json.dumps(dtypes))


def _read_frame(path: Path) -> pd.DataFrame:
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


def _frame_hash(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()).hexdigest()


class WorkCache:
    """Entries of reusable work in one folder, with keys for one run's sources and settings."""

    def __init__(self, folder: Path, settings: Settings, sources: Sources) -> None:
        self.folder = Path(folder)
        self.sources = sources
        self.static = self._static(settings, sources)
        self._fingerprints: dict[str, tuple[pd.Series, np.ndarray]] | None = None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _static(settings: Settings, sources: Sources) -> dict[str, object]:
        s = settings.sources
        read_directly = [s.boundaries.path, s.demographics.path, *(t.path for t in s.demographics.tables),
                         s.permits.coverage_tracts if s.permits else None]
        files = {str(p): sources.file_hashes.get(str(p)) for p in read_directly if p is not None}
        return {
            "code": code_hash(), "libraries": {name: version(name) for name in _LIBRARIES},
            # what shapes the entries: not the tiers, the promotion tolerance or the retraining policy
            "settings": settings.model_dump(mode="json", include={
                "region": True, "sources": True, "features": True,
                "model": {"eviction_surge", "low_income_loss", "seed", "null_simulations", "bootstrap"}}),
            "files": files, "permit_files": [repr(f) for f in sources.permit_files],
            "coverage": sorted(sources.permit_coverage) if sources.permit_coverage is not None else None,
            "max_age": {k: str(v) for k, v in sources.max_age.items()},
        }

    def known(self, day: date) -> list[object]:
        """The fingerprint of every record known on ``day`` (what ``sources.known_at(day)`` holds)."""
        if self._fingerprints is None:  # once per run: the backtest and the production fit share this cache
            self._fingerprints = _fingerprints(self.sources)
        t = pd.Timestamp(day)
        out: list[object] = []
        for name, (days, sums) in self._fingerprints.items():
            n = int(days.searchsorted(t, side="right"))
            out.append([name, n, int(sums[n - 1]) if n else 0])
        return out

    def key(self, kind: str, *parts: object) -> str:
        """A key over the run's code, settings and files and the given parts."""
        text = json.dumps([self.static, kind, *parts], sort_keys=True, default=str)
        return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"

    @staticmethod
    def frame_key(frame: pd.DataFrame) -> str:
        """A content hash of a frame (values and index), for keys over computed tables."""
        return _frame_hash(frame)

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
            return ({n: _read_frame(folder / f"{n}.parquet") for n in names},
                    json.loads((folder / "note.json").read_text()))

        return self.get(key, read)  # type: ignore[return-value]

    def put_frames(self, key: str, frames: dict[str, pd.DataFrame], note: object = None) -> None:
        """Store frames (Parquet, dtypes restored on reading) and a JSON-serialisable note."""
        def write(folder: Path) -> None:
            for name, frame in frames.items():
                _write_frame(frame, folder / f"{name}.parquet")
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


def work_cache(settings: Settings, sources: Sources) -> WorkCache | None:
    """The configured work cache (``paths.cache``), or None when it is switched off."""
    return None if settings.paths.cache is None else WorkCache(settings.paths.cache, settings, sources)
