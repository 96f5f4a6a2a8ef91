"""Backtest work reused across runs, keyed by the content it was computed from.

A retraining week mostly recomputes what last week already knew: the
features and labels of origins closed years ago, the fits of test origins
whose training rows did not change. Each such piece is stored under a key
that hashes everything it was computed from:

- the code (every module of this package), the library versions, and the
  settings that shape it (region, sources, features, the seed and
  resampling settings of the model section, and for a label the settings
  sections its outcome's entry in :mod:`risk.outcomes.registry` names);
- the content of the files read outside the validated tables (the
  boundaries, the permit coverage list), never a file's name;
- for each table of :class:`~risk.sources.Sources`, a fingerprint of the
  records known at a date: the sum of the row hashes of every record dated
  on or before it (for the UDP typology's columns, dated by column, the sum
  of the hashes of every column released by then). Features at ``as_of``
  read only ``sources.known_at(as_of)`` and labels only
  ``sources.known_at(closes)``, so a record added or revised after
  ``closes`` leaves the key unchanged and anything earlier changes it.

The sum is a multiset hash: it does not see row order, which is safe because
features do not depend on it (a test shuffles every table to pin that down).
An entry is a folder written beside its final name and renamed into place;
an unreadable entry is logged, removed and recomputed. Entries not used for
:data:`KEEP_DAYS` are pruned. Deleting the folder only costs time.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from risk.core.files import KEEP_DAYS, EntryStore
from risk.core.settings import Settings
from risk.sources import Sources, data_key, input_files
from risk.sources.registry import dated
from risk.sources.udp_columns import UdpColumns

__all__ = ["KEEP_DAYS", "WorkCache", "work_cache"]
UDP = "demographics:udp"
"""The fingerprint of ``sources.udp``: part of the demographics family's records."""


def _fingerprints(sources: Sources) -> dict[str, tuple[pd.Series, np.ndarray]]:
    """Per table: its record dates in order and the running (wrapping) sum of the row hashes up to each."""
    out = {}
    for family in dated():
        name, column, frame = family.name, str(family.known), sources.table(family.name)
        if frame is None or frame.empty:
            continue
        # no copy of the table (national rent is 20 million rows): hash it whole, then keep the dated rows
        days = frame[column].to_numpy()
        has_day = ~pd.isna(days)
        hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        if not has_day.all():
            days, hashes = days[has_day], hashes[has_day]
        order = np.argsort(days, kind="stable")
        out[name] = (pd.Series(days[order]), np.cumsum(hashes[order], dtype="uint64"))
    if sources.udp is not None and len(sources.udp.frame.columns):
        out[UDP] = _column_fingerprints(sources.udp)
    return out


def _column_fingerprints(udp: UdpColumns) -> tuple[pd.Series, np.ndarray]:
    """The UDP columns in release order and the running sum of their hashes (each its tracts' values and name)."""
    columns = sorted(udp.frame.columns, key=udp.released)
    days = pd.Series([pd.Timestamp(udp.released(c)) for c in columns], dtype="datetime64[ns]")
    values = np.array([pd.util.hash_pandas_object(udp.frame[c], index=True).to_numpy().sum(dtype="uint64")
                       for c in columns], dtype="uint64")
    return days, np.cumsum(values + pd.util.hash_array(np.array(columns, dtype=object)), dtype="uint64")


def _renamed(value: object, names: dict[str, str]) -> object:
    """``value`` (JSON) with every string that is a key of ``names`` replaced by its value."""
    if isinstance(value, dict):
        return {k: _renamed(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


class WorkCache(EntryStore):
    """Entries of reusable work in one folder, with keys for one run's sources and settings."""

    def __init__(self, folder: Path, settings: Settings, sources: Sources) -> None:
        super().__init__(folder)
        self.sources = sources
        self.static = self._static(settings, sources)
        self._fingerprints: dict[str, tuple[pd.Series, np.ndarray]] | None = None

    @staticmethod
    def _static(settings: Settings, sources: Sources) -> dict[str, object]:
        s = settings.sources
        read_directly = {str(p) for p in (s.boundaries.path if s.boundaries else None,
                                          s.permits.coverage_tracts if s.permits else None) if p is not None}
        # a file's name is not what was computed from it: a file read directly counts by its content, and a
        # table file not at all (the fingerprints of its records do), so a renamed or moved file, or next
        # year's eviction file under a new name, leaves every entry its records did not change
        names = {str(p): f"sha256:{sources.file_hashes.get(data_key(settings, p))}" if str(p) in read_directly
                 else "table" for p in input_files(settings)}
        return {
            # what shapes the entries: not the tiers, the promotion tolerance or the retraining policy; an
            # outcome's own settings key only its labels (and through them what is built on them): the registry
            # names them (risk.outcomes.registry.OutcomeSpec.label_settings), so a new outcome's count too
            "settings": _renamed(settings.model_dump(mode="json", include={
                "region": True, "sources": True, "features": True,
                "model": {"seed", "null_simulations", "bootstrap"}}), names),
            "permit_files": [repr(replace(f, file=names.get(f.file, f.file))) for f in sources.permit_files],
            "coverage": sorted(sources.permit_coverage) if sources.permit_coverage is not None else None,
            "max_age": {k: str(v) for k, v in sources.max_age.items()},
        }

    def known(self, day: date, families: tuple[str, ...] | None = None) -> list[object]:
        """The fingerprint of the records known on ``day`` (of ``families``, default all): what
        ``sources.known_at(day, families)`` holds."""
        if self._fingerprints is None:  # once per run: the backtest and the production fit share this cache
            self._fingerprints = self._stored_fingerprints()
        t = pd.Timestamp(day)
        out: list[object] = []
        for name, (days, sums) in self._fingerprints.items():
            if families is None or name.partition(":")[0] in families:
                n = int(days.searchsorted(t, side="right"))
                out.append([name, n, int(sums[n - 1]) if n else 0])
        return out

    def _stored_fingerprints(self) -> dict[str, tuple[pd.Series, np.ndarray]]:
        """:func:`_fingerprints`, kept under the sources' content key: hashing national tables every week
        costs seconds, and records loaded from unchanged files and settings hash alike."""
        if not self.sources.content_key:
            return _fingerprints(self.sources)
        key = self.key("fingerprints", self.sources.content_key)
        stored = self.frames(key)
        if stored is not None:
            frames, names = stored
            return {name: (frames[f"t{i}"]["day"], frames[f"t{i}"]["sum"].to_numpy(dtype="uint64"))
                    for i, name in enumerate(names)}
        found = _fingerprints(self.sources)
        self.put_frames(key, {f"t{i}": pd.DataFrame({"day": days.reset_index(drop=True), "sum": sums})
                              for i, (days, sums) in enumerate(found.values())}, list(found))
        return found

    def key(self, kind: str, *parts: object) -> str:
        """A key over the code, libraries, the run's settings and files, and the given parts."""
        return super().key(kind, self.static, *parts)


def work_cache(settings: Settings, sources: Sources) -> WorkCache | None:
    """The configured work cache (``paths.cache``), or None when it is switched off."""
    return None if settings.paths.cache is None else WorkCache(settings.paths.cache, settings, sources)
