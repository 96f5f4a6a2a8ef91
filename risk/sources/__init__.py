"""Source loaders, one module per family, and the validated bundle they make.

:func:`load_sources` reads every configured file, collects every problem
(file, line, column) and raises :class:`~risk.core.errors.DataValidationError`
when any is an error, so nothing downstream runs on invalid input.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TypeVar

import geopandas as gpd
import pandas as pd

from risk.core.errors import DataValidationError, Problem
from risk.core.files import EntryStore
from risk.core.settings import Settings
from risk.sources._bounded import ReadLimits
from risk.sources._tables import ProblemLog
from risk.sources.boundaries import load_boundaries
from risk.sources.demographics import empty_long, load_demographics
from risk.sources.evictions import load_evictions
from risk.sources.permits import PermitFileInfo, load_permits
from risk.sources.rent import load_rent

T = TypeVar("T")
FAMILIES = ("boundaries", "demographics", "evictions", "rent", "permits")
DATED = ("demographics", "evictions", "rent", "permits")
"""The families whose records carry the date they became known (:meth:`Sources.known_at`)."""


@dataclass(frozen=True)
class Sources:
    """Every family's records, each dated by when it became known.

    ``demographics`` is long (geoid, measure, value, vintage, released); the
    other tables carry ``available`` or ``issued``. A family that is not
    configured is ``None``.
    """

    tracts: gpd.GeoDataFrame
    demographics: pd.DataFrame
    evictions: pd.DataFrame | None = None
    rent: pd.DataFrame | None = None
    permits: pd.DataFrame | None = None
    permit_files: tuple[PermitFileInfo, ...] = ()
    permit_coverage: frozenset[str] | None = None
    max_age: dict[str, pd.Timedelta] = field(default_factory=lambda: {
        "rent": pd.Timedelta(days=183), "evictions": pd.Timedelta(days=730), "permits": pd.Timedelta(days=120)})
    file_hashes: dict[str, str] = field(default_factory=dict)
    warnings: tuple[Problem, ...] = ()
    cache: dict[object, object] = field(default_factory=dict, compare=False, repr=False)
    """Results derived from the tracts alone (neighbour pairs), shared by every :meth:`known_at` view."""

    def known_at(self, as_of: date, families: tuple[str, ...] = DATED) -> Sources:
        """The same sources with every record dated after ``as_of`` removed.

        Features are built only from this view, so nothing later can leak in. Tables of the dated families
        not in ``families`` are left empty (demographics) or out (the others): a caller that reads only some
        tables need not copy the largest.
        """
        t = pd.Timestamp(as_of)

        def cut(frame: pd.DataFrame | None, name: str, column: str) -> pd.DataFrame | None:
            if frame is None:
                return None
            if name not in families:
                return frame.iloc[:0] if name == "demographics" else None
            return frame[frame[column] <= t]

        return replace(
            self,
            demographics=cut(self.demographics, "demographics", "released"),
            evictions=cut(self.evictions, "evictions", "available"),
            rent=cut(self.rent, "rent", "available"),
            permits=cut(self.permits, "permits", "issued"),
        )


def _sha256(path: Path, limits: ReadLimits | None = None) -> str:
    if limits is not None and path.stat().st_size > limits.max_bytes:
        return "over sources.max_file_mb"  # its loader refuses it: hashing a sparse terabyte first would not be fast
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _compact(demographics: pd.DataFrame) -> pd.DataFrame:
    """Measure and vintage names as categories: features pick rows by measure dozens of times per as-of date,
    and comparing category codes is ten times faster than comparing strings at national scale."""
    return demographics.astype({"measure": "category", "vintage": "category"})


def input_files(settings: Settings) -> list[Path]:
    """Every input file the configuration names."""
    return [settings.sources.boundaries.path, *(p for files in _family_files(settings).values() for p in files)]


def data_key(settings: Settings, path: Path | str) -> str:
    """How a run and a model name an input file: inside the config file's folder, its path relative to that
    folder, so that moving the project folder with its data changes no key (and forces no retraining); outside
    it, the absolute path, which stays the same when the project folder moves without the data."""
    path = Path(os.path.abspath(path))
    base = Path(os.path.abspath(settings.base_dir))
    return path.relative_to(base).as_posix() if path.is_relative_to(base) else path.as_posix()


def _family_files(settings: Settings) -> dict[str, list[Path]]:
    s = settings.sources
    return {
        "demographics": [p for p in (s.demographics.path, *(t.path for t in s.demographics.tables)) if p],
        "evictions": [s.evictions.path] if s.evictions else [],
        "rent": [p for p in (s.rent.path, s.rent.rent_path, s.rent.crosswalk) if p],
        "permits": [f.path for f in s.permits.files] + ([s.permits.coverage_tracts] if s.permits.coverage_tracts
                                                        else []) if s.permits else [],
    }


def collect(settings: Settings, today: date | None = None, store: EntryStore | None = None
            ) -> tuple[Sources | None, list[Problem]]:
    """Load every family, returning the sources (None if boundaries failed) and all problems.

    With a ``store``, a family whose files, settings and code are unchanged is read from it (see
    :mod:`risk.sources._stored`) instead of being parsed and checked again."""
    s, region, enc = settings.sources, settings.region, settings.sources.encoding
    limits = ReadLimits(max_file_mb=s.max_file_mb, max_field_chars=s.max_field_chars)
    logs = {name: ProblemLog(name, limits=limits) for name in FAMILIES}
    tracts = load_boundaries(s.boundaries, region, logs["boundaries"])
    if tracts is None:
        return None, logs["boundaries"].items
    hashes = {str(p): _sha256(p, limits) for p in input_files(settings)}
    relative = {data_key(settings, p): digest for p, digest in hashes.items()}
    known = tracts.index
    files = _family_files(settings)

    stored = None
    if store is not None:
        from risk.sources._stored import StoredFamilies

        base = {"region": region.model_dump(mode="json"), "encoding": enc, "boundaries": hashes[str(s.boundaries.path)],
                "boundary_settings": s.boundaries.model_dump(mode="json"),
                "limits": [limits.max_file_mb, limits.max_field_chars]}  # a lower limit must check the files again
        stored = StoredFamilies(store, base, hashes, today or date.today())

    def load(family: str, fn: Callable[[], T], section: object) -> T:
        return fn() if stored is None else stored.load(family, files[family], section, logs[family], fn)

    def dump(section: object) -> object:
        return section.model_dump(mode="json") if section is not None else None  # type: ignore[attr-defined]

    demographics = load("demographics", lambda: load_demographics(s.demographics, region, known, enc,
                                                                  logs["demographics"]), dump(s.demographics))
    evictions = load("evictions", lambda: load_evictions(s.evictions, region, known, enc, logs["evictions"], today),
                     dump(s.evictions)) if s.evictions else None
    rent = load("rent", lambda: load_rent(s.rent, region, known, enc, logs["rent"], today), dump(s.rent))
    permits = load("permits", lambda: load_permits(s.permits, tracts, enc, logs["permits"], today),
                   dump(s.permits)) if s.permits else None
    if evictions is not None:
        demographics = pd.concat([demographics, evictions.demographics], ignore_index=True)
    problems = [p for log in logs.values() for p in log.items]
    sources = Sources(
        tracts=tracts,
        demographics=_compact(demographics) if not demographics.empty else empty_long(),
        evictions=evictions.counts if evictions else None,
        rent=rent,
        permits=permits.records if permits else None,
        permit_files=permits.files if permits else (),
        permit_coverage=permits.coverage if permits else None,
        max_age={
            "rent": pd.Timedelta(days=s.rent.max_age_days),
            "evictions": pd.Timedelta(days=s.evictions.max_age_days if s.evictions else 0),
            "permits": pd.Timedelta(days=s.permits.max_gap_days if s.permits else 0),
        },
        file_hashes=relative,
        warnings=tuple(p for p in problems if p.severity == "warning"),
    )
    return sources, problems


def load_sources(settings: Settings, today: date | None = None, *, reuse: bool = False) -> Sources:
    """Load and validate every source; raise with all problems if any is an error.

    ``reuse`` reads families whose files did not change from ``paths.cache`` (the weekly run does)."""
    store = EntryStore(settings.paths.cache) if reuse and settings.paths.cache is not None else None
    sources, problems = collect(settings, today, store)
    if sources is None or any(p.severity == "error" for p in problems):
        raise DataValidationError(problems)
    return sources
