"""Source loaders, one module per family, and the validated bundle they make.

:func:`load_sources` reads every configured file, collects every problem
(file, line, column) and raises :class:`~risk.core.errors.DataValidationError`
when any is an error, so nothing downstream runs on invalid input.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from risk.core import clock
from risk.core.errors import DataValidationError, Problem
from risk.core.files import EntryStore
from risk.core.settings import Settings
from risk.sources._bounded import ReadLimits
from risk.sources._tables import ProblemLog
from risk.sources.boundaries import FAMILY as BOUNDARIES
from risk.sources.boundaries import tracts_without_boundaries
from risk.sources.demographics import empty_long
from risk.sources.family import Context, Family
from risk.sources.permits import PermitFileInfo
from risk.sources.quality import CountyYear, Exclusions, VintageMeasure, check_quality
from risk.sources.registry import dated, families
from risk.sources.udp_columns import UdpColumns

_TABLE_FIELDS = frozenset({"demographics", "evictions", "rent", "permits"})
"""The built-in families whose table is a field of :class:`Sources`; any other family's is in ``tables``."""


@dataclass(frozen=True)
class Sources:
    """Every family's records, each dated by when it became known.

    ``demographics`` is long (geoid, measure, value, vintage, released); the
    other tables carry ``available`` or ``issued``. A family that is not
    configured is ``None``. :meth:`table` finds any registered family's table
    by name (:mod:`risk.sources.registry`).
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
    tables: dict[str, pd.DataFrame | None] = field(default_factory=dict)
    """Tables of families registered beyond the built-in fields, by family name."""
    udp: UdpColumns | None = None
    """A UDP database's raw columns the UDP typology reads, dated by column (from the demographics family)."""
    exclusions: Exclusions = field(default_factory=Exclusions)
    """County-years and vintages the quality checks found broken: labels that would read them are left out."""
    content_key: str = ""
    """A key of everything these records were loaded from (files, settings, code), when a run's entry store
    loaded them; empty otherwise and in any derived view. Work derived from the whole records alone (the quality
    checks, the work cache's fingerprints) is kept under it."""

    def table(self, name: str) -> pd.DataFrame | None:
        """One family's table by its name (the boundaries' is ``tracts``)."""
        if name == BOUNDARIES.name:
            return self.tracts
        return getattr(self, name) if name in _TABLE_FIELDS else self.tables.get(name)

    def with_tables(self, tables: Mapping[str, pd.DataFrame | None]) -> Sources:
        """The same sources with these families' tables replaced."""
        own = {name: frame for name, frame in tables.items() if name in _TABLE_FIELDS}
        other = {name: frame for name, frame in tables.items() if name not in _TABLE_FIELDS}
        if other:
            return replace(self, **own, tables={**self.tables, **other}, content_key="")
        return replace(self, **own, content_key="")

    def known_at(self, as_of: date, families: Collection[str] | None = None) -> Sources:
        """The same sources with every record dated after ``as_of`` removed.

        Features are built only from this view, so nothing later can leak in. Tables of the dated families
        not in ``families`` (default: all) are left empty (a family every configuration has) or out (the
        others): a caller that reads only some tables need not copy the largest.
        """
        t = pd.Timestamp(as_of)
        cut: dict[str, pd.DataFrame | None] = {}
        for family in dated():
            frame = self.table(family.name)
            if frame is None:
                cut[family.name] = None
            elif families is not None and family.name not in families:
                cut[family.name] = frame.iloc[:0] if family.always else None
            else:
                cut[family.name] = frame[frame[str(family.known)] <= t]
        # the UDP columns are dated by column, not by row; they belong to the demographics family
        udp = self.udp.known_at(as_of) if self.udp is not None and (
            families is None or "demographics" in families) else None
        return replace(self.with_tables(cut), udp=udp)


_FIELDS = frozenset(f.name for f in fields(Sources))
"""What a family's loaded value may fill by name; any other name is an extra table."""


_HASHED: dict[tuple[str, int, int, int, int], str] = {}
"""Hashes of files this process already read, by path, inode, size and change times: regions sharing a
statewide file hash it once."""


def _sha256(path: Path, limits: ReadLimits | None = None, store: EntryStore | None = None) -> str:
    """The file's SHA-256; with a ``store``, remembered across runs while the file's path, inode, size and
    modification and change times stay the same (as git trusts its index): a weekly run on national files would
    otherwise spend seconds hashing gigabytes that did not change. Any write to a file changes its change time."""
    stat = path.stat()
    if limits is not None and stat.st_size > limits.max_bytes:
        return "over sources.max_file_mb"  # its loader refuses it: hashing a sparse terabyte first would not be fast
    seen = (os.path.abspath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if seen not in _HASHED:
        key = store.key("file-hash", seen) if store is not None else ""
        known = store.get(key, lambda folder: (folder / "sha256").read_text().strip()) if key else None
        _HASHED[seen] = known or _file_digest(path)
        if key and known is None:
            store.put(key, lambda folder: (folder / "sha256").write_text(_HASHED[seen]))  # type: ignore[union-attr]
    return _HASHED[seen]


def _file_digest(path: Path) -> str:
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
    """Every input file the configuration names, family by family."""
    return [p for family in families() for p in _files(family, settings)]


def _files(family: Family[Any], settings: Settings) -> list[Path]:
    section = family.section(settings)
    return [] if section is None else family.all_files(section)


def data_key(settings: Settings, path: Path | str) -> str:
    """How a run and a model name an input file: inside the config file's folder, its path relative to that
    folder, so that moving the project folder with its data changes no key (and forces no retraining); outside
    it, the absolute path, which stays the same when the project folder moves without the data."""
    path = Path(os.path.abspath(path))
    base = Path(os.path.abspath(settings.base_dir))
    return path.relative_to(base).as_posix() if path.is_relative_to(base) else path.as_posix()


def read_tracts(settings: Settings) -> gpd.GeoDataFrame:
    """The configured tracts alone (boundaries), for checks that need no other family; refused as data errors
    naming file and problem when they cannot be read. Without boundaries, the tracts the sources name."""
    s = settings.sources
    if s.boundaries is None:
        sources, problems = collect(settings)
        if sources is None or any(p.severity == "error" for p in problems):
            raise DataValidationError(problems)
        return sources.tracts
    log = ProblemLog(BOUNDARIES.name, limits=ReadLimits(max_file_mb=s.max_file_mb, max_field_chars=s.max_field_chars))
    tracts = BOUNDARIES.load(Context(s.boundaries, settings.region, None, s.encoding, log, None))
    if tracts is None:
        raise DataValidationError(log.items)
    return tracts


def collect(settings: Settings, today: date | None = None, store: EntryStore | None = None
            ) -> tuple[Sources | None, list[Problem]]:
    """Load every family, returning the sources (None if the tracts could not be read) and all problems.

    With a ``store``, a family whose files, settings and code are unchanged is read from it (see
    :mod:`risk.sources._stored`) instead of being parsed and checked again."""
    s, region, enc = settings.sources, settings.region, settings.sources.encoding
    limits = ReadLimits(max_file_mb=s.max_file_mb, max_field_chars=s.max_field_chars)
    registry = families()
    logs = {family.name: ProblemLog(family.name, limits=limits) for family in registry}
    hashes = {str(p): _sha256(p, limits, store) for p in input_files(settings)}
    relative = {data_key(settings, p): digest for p, digest in hashes.items()}

    stored = None
    if store is not None:
        from risk.sources._stored import StoredFamilies

        bounds = s.boundaries
        base = {"region": region.model_dump(mode="json"), "encoding": enc,
                "boundaries": None if bounds is None else hashes[str(bounds.path)],
                "boundary_settings": None if bounds is None else bounds.model_dump(mode="json"),
                "limits": [limits.max_file_mb, limits.max_field_chars]}  # a lower limit must check the files again
        stored = StoredFamilies(store, base, hashes, today or clock.today())

    def value_of(family: Family[Any], section: Any, tracts: gpd.GeoDataFrame | None) -> Any:
        context = Context(section, region, tracts, enc, logs[family.name], today)
        if stored is None or family.codec is None:
            return family.load(context)
        return stored.load(family.name, family.codec, family.all_files(section), section.model_dump(mode="json"),
                           logs[family.name], partial(family.load, context))

    # the boundaries first: they define the tracts every other family is checked against
    tracts = None
    if s.boundaries is not None:
        tracts = value_of(BOUNDARIES, s.boundaries, None)
        if tracts is None:
            return None, logs[BOUNDARIES.name].items
    filled: dict[str, list[Any]] = {}

    def load(family: Family[Any], section: Any) -> None:
        for name, item in family.fill(value_of(family, section, tracts)).items():
            filled.setdefault(name, []).append(item)

    configured = [(family, family.section(settings)) for family in registry if family is not BOUNDARIES]
    configured = [(family, section) for family, section in configured if section is not None]
    for family, section in configured:
        if tracts is not None or not family.placed:
            load(family, section)
    if tracts is None:  # no boundaries: the tracts are those the sources named
        tracts = _named_tracts(filled, settings, logs[BOUNDARIES.name])
        if tracts is None:
            return None, [p for log in logs.values() for p in log.items]
        for family, section in configured:
            if family.placed:
                load(family, section)
    tables = {name: items[0] if len(items) == 1 else pd.concat(items, ignore_index=True)
              for name, items in filled.items()}
    tracts = _with_counties(tracts, tables.pop("county_names", None), settings)
    demographics = tables.pop("demographics", None)
    demographics = empty_long() if demographics is None else demographics
    problems = [p for log in logs.values() for p in log.items]
    content = "" if store is None else store.key("sources", base, s.model_dump(mode="json"), sorted(hashes.values()))
    sources = _checked(Sources(
        tracts=tracts,
        demographics=_compact(demographics) if not demographics.empty else empty_long(),
        **{name: tables.pop(name) for name in [*tables] if name in _FIELDS},
        max_age={family.name: pd.Timedelta(days=family.max_age_days(settings) or 0)
                 for family in registry if family.series and family.known is not None},
        file_hashes=relative,
        warnings=tuple(p for p in problems if p.severity == "warning"),
        tables=tables,
        content_key=content,
    ), region.name, problems, store)
    return sources, problems


def _with_counties(tracts: gpd.GeoDataFrame, found: pd.DataFrame | None, settings: Settings) -> gpd.GeoDataFrame:
    """The tracts with their county's name (``county``; missing where nothing names it): the configured
    ``region.county_names`` first, then the names a source gave (an Eviction Lab file's parent-location)."""
    names = dict(zip(found["county"], found["name"], strict=True)) if found is not None else {}
    names |= settings.region.county_names
    county = pd.Series(tracts.index.str[:5], index=tracts.index).map(names).astype("string")
    return tracts.assign(county=county)


def _named_tracts(filled: Mapping[str, list[Any]], settings: Settings, log: ProblemLog) -> gpd.GeoDataFrame | None:
    """The tracts of a region without boundaries: every GEOID its sources name (they were checked to lie in its
    counties). None, with the reason, when no source names one."""
    geoids: set[str] = set()
    for items in filled.values():
        for item in items:
            if isinstance(item, pd.DataFrame) and "geoid" in item.columns:
                geoids.update(item["geoid"].dropna().astype(str))
    if not geoids:
        log.add("sources.boundaries", "no boundaries are configured and no source names a tract of the region's "
                f"counties {list(settings.region.county_fips)}: configure sources.boundaries or a source with "
                "tract GEOIDs")
        return None
    log.add("sources.boundaries", f"no boundaries are configured: the {len(geoids):,} tracts the sources name are "
            "used, without spatial features or a map", severity="warning")
    return tracts_without_boundaries(pd.Index(sorted(geoids)))


def _checked(sources: Sources, region: str, problems: list[Problem], store: EntryStore | None = None) -> Sources:
    """The sources with what the quality checks found broken (:mod:`risk.sources.quality`); its warnings join
    ``problems``. With a store, the checks of unchanged records are read from it."""
    key = store.key("quality", sources.content_key, region) if store is not None and sources.content_key else ""
    stored = store.get(key, lambda folder: json.loads((folder / "quality.json").read_text())) if key else None
    if stored is not None:
        found, exclusions = [Problem(**{**p, "more": tuple(tuple(m) for m in p["more"])}) for p in stored[0]], \
            Exclusions(tuple(CountyYear(**c) for c in stored[1]), tuple(VintageMeasure(**v) for v in stored[2]))
    else:
        found, exclusions = check_quality(sources, region)
        if key:
            note = [[asdict(p) for p in found], [asdict(c) for c in exclusions.county_years],
                    [asdict(v) for v in exclusions.vintages]]
            store.put(key, lambda folder: (folder / "quality.json").write_text(json.dumps(note)))  # type: ignore[union-attr]
    problems.extend(found)
    return replace(sources, exclusions=exclusions, warnings=sources.warnings + tuple(found))


def load_sources(settings: Settings, today: date | None = None, *, reuse: bool = False) -> Sources:
    """Load and validate every source; raise with all problems if any is an error.

    ``reuse`` reads families whose files did not change from ``paths.cache`` (the weekly run does)."""
    store = EntryStore(settings.paths.cache) if reuse and settings.paths.cache is not None else None
    sources, problems = collect(settings, today, store)
    if sources is None or any(p.severity == "error" for p in problems):
        raise DataValidationError(problems)
    return sources
