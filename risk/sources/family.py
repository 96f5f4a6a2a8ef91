"""The source-family record: everything the rest of the system needs to know about one family of inputs.

Each family module (boundaries, demographics, evictions, rent, permits) declares its own ``FAMILY`` next to
its loader, and :mod:`risk.sources.registry` lists them in order. The places that used to name the families
one by one (cutting at an as-of date, the work cache's fingerprints, freshness, validation, the default as-of
date, the model page, the Dask engine) loop over the registry instead, so adding a family touches its own
module, its settings section and its feature dictionary entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Generic, TypeVar

import geopandas as gpd
import pandas as pd
from pydantic import BaseModel

from risk.core.settings import RegionSettings, Settings
from risk.sources._tables import ProblemLog

S = TypeVar("S", bound=BaseModel)
T = TypeVar("T")

Rows = Callable[[pd.DataFrame, pd.Timestamp], pd.DataFrame]
"""A row selection: the rows of one partition of a table (whole tracts) that the features read at a date."""


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How one family's loaded value becomes frames plus a JSON note for the entry store, and back."""

    pack: Callable[[T], tuple[dict[str, pd.DataFrame], Any]]
    unpack: Callable[[dict[str, pd.DataFrame], Any], T]


TABLE_CODEC: Codec[pd.DataFrame | None] = Codec(lambda v: ({} if v is None else {"table": v}, None),
                                                lambda frames, _: frames.get("table"))
"""The codec of a family whose loader returns one table (or None)."""


@dataclass(frozen=True)
class Context(Generic[S]):
    """What a loader is given: its settings section and what every family shares."""

    section: S
    region: RegionSettings
    tracts: gpd.GeoDataFrame | None
    """The region's tracts; None while the boundaries themselves load, and in a region without boundaries
    (whose tracts are those its sources name)."""
    encoding: str
    log: ProblemLog
    today: date | None = None

    @property
    def known(self) -> pd.Index | None:
        """The GEOIDs of the boundaries, which every other family's records must name; None without boundaries
        (any well-formed GEOID of the region's counties is then a tract)."""
        return None if self.tracts is None else self.tracts.index


def known_rows(part: pd.DataFrame, column: str, t: pd.Timestamp) -> pd.DataFrame:
    """The rows of ``part`` whose ``column`` (when they became known) is on or before ``t``."""
    return part[part[column] <= t]


@dataclass(frozen=True)
class Family(Generic[S]):
    """One family of input files, declared once beside its loader."""

    name: str
    load: Callable[[Context[S]], Any]
    """Reads and checks its files, recording every problem in the context's log; None when nothing is usable."""
    section: Callable[[Settings], S | None]
    """Its settings section, or None when the configuration leaves the family out. A family whose section is not
    (yet) in the settings tree can still answer here (a test's family does)."""
    files: Callable[[S], list[Path]]
    """The files holding its records, as the model page lists them."""
    attribution: str
    """The credit its provider asks for; the model page shows it, and e-mails carry it when ``credit``."""
    known: str | None = None
    """The column of the date a record became known (release, publication lag included, issue date); None for
    a family that is not dated (the boundaries). Views at an as-of date keep only rows dated on or before it."""
    max_age: Callable[[S], int] | None = None
    """Days after which its newest record is stale (``max_age_days``, ``max_gap_days`` for permits)."""
    coverage: str | None = None
    """The ``cov_*`` feature flag saying which tracts it gave features for; None if it gives none."""
    codec: Codec[Any] | None = TABLE_CODEC
    """How a validated load is kept in the entry store while its files do not change; None: read every run."""
    rows: Rows | None = None
    """The Dask engine's row selection: the rows of a partition the features read at an as-of date (records
    known later dropped). None keeps every known row. A plain pandas function, mapped by the engine."""
    into: Callable[[Any], dict[str, object]] | None = None
    """Where its loaded value goes in :class:`~risk.sources.Sources`, by field (or family) name: a frame given
    to a table another family also fills is appended to it. None puts the value under the family's name."""
    side_files: Callable[[S], list[Path]] | None = None
    """Other files it reads (the permit office's tract list): hashed and keyed like its record files, not
    listed as data on the model page."""
    period: str | None = None
    """The column of the period a record describes, when that is not ``known`` (rent's month): the validation
    summary shows its span."""
    series: bool = True
    """A time series: once its newest record is older than ``max_age`` the family is dropped from a run's
    features, and a required one holds back the default as-of date. False for releases that stay in use however
    old (demographic vintages, whose staleness is only reported) and for undated families."""
    always: bool = False
    """Its table is never None (every configuration has it): a view that leaves it out keeps it empty."""
    credit: bool = True
    """Whether e-mails carry its attribution when it is configured."""
    placed: bool = False
    """Its records are placed in tracts by their coordinates (permits): it needs the tracts' polygons, so in a
    region without boundaries it loads after the other families have named the tracts."""

    def __post_init__(self) -> None:
        if self.known is not None and self.max_age is None:
            raise ValueError(f"source family {self.name}: a dated family needs a max_age")

    def all_files(self, section: S) -> list[Path]:
        """Every file it reads: its record files, then its side files."""
        return [*self.files(section), *(self.side_files(section) if self.side_files else [])]

    def configured(self, settings: Settings) -> bool:
        """True when the configuration names at least one of its record files."""
        section = self.section(settings)
        return section is not None and bool(self.files(section))

    def required(self, settings: Settings) -> bool:
        """True when its section marks it ``required`` (a stale or missing family then fails the run)."""
        return bool(getattr(self.section(settings), "required", False))

    def max_age_days(self, settings: Settings) -> int | None:
        """Its configured maximum age in days; None when it has none or is not configured."""
        section = self.section(settings)
        return None if section is None or self.max_age is None else self.max_age(section)

    def fill(self, value: object) -> dict[str, object]:
        """The :class:`~risk.sources.Sources` fields (or extra tables) its loaded value fills."""
        return self.into(value) if self.into is not None else {self.name: value}
