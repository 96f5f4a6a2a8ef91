"""The UDP database's raw columns that the UDP typology reads, kept wide and dated column by column.

The typology (:mod:`risk.outcomes.typology.rules`) is computed from the wide UDP database, not from the long
demographics table: it needs columns the features never read (real medians, income-category shares, in-mover
shares, the affordability flag) and every tract of the file, because UDP's regional medians are taken over the
whole database (the shared file's three counties), not over the configured region. The demographics loader
reads, checks and hashes the file once and keeps these columns here, in :attr:`risk.sources.Sources.udp`.

A column is dated by the vintages its name carries: ``per_rent_00`` became known with the 2000 vintage's
release, ``per_ch_zillow_12_18`` with the later of 2012's and 2018's; :meth:`UdpColumns.known_at` keeps only
the columns released by a date, as :meth:`risk.sources.Sources.known_at` does for every other table's rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import date

import pandas as pd

STEMS = ("pop", "hh", "per_all_li", "all_li_count", "per_nonwhite", "per_rent", "per_col", "real_mrent",
         "real_mhval", "real_hinc", "inc80", "inc120", "per_limove", "mov_tot_w_income")
"""Per-vintage columns (``<stem>_<suffix>``) the typology's rules, its noise model and the sampling universes of
its shares read."""
ZILLOW = re.compile(r"per_ch_zillow_(\d{2})_(\d{2})")
"""The Zillow rent change between two vintages: dated by both."""
UNDATED = {"lmh_flag_encoded": "18"}
"""Columns without a vintage suffix, and the vintage each belongs to: UDP computed the affordability flag from ACS
2013-17 for its 2018 database. Without that vintage configured, the column counts as the newest one's."""


def column_vintages(column: str, suffixes: Collection[str]) -> frozenset[str] | None:
    """The configured vintage suffixes a typology column is dated by (empty: the newest vintage's), or None for a
    column the typology does not read."""
    if column in UNDATED:
        return frozenset({UNDATED[column]} & set(suffixes))
    if (zillow := ZILLOW.fullmatch(column)) is not None:
        both = frozenset(zillow.groups())
        return both if both <= set(suffixes) else None
    stem, _, suffix = column.rpartition("_")
    return frozenset({suffix}) if stem in STEMS and suffix in suffixes else None


@dataclass(frozen=True)
class UdpColumns:
    """The typology's columns of the UDP database: one row per tract of the file, numbers with Census sentinels
    missing, each column dated by its vintages' release."""

    frame: pd.DataFrame
    """Index ``geoid`` (every tract of the file, in its order), one float column per typology column."""
    vintages: dict[str, date]
    """Each configured vintage's release date, by suffix, in the configured order."""
    digest: str
    """Content hash of the whole table, shared by every view cut from it: what a typology computed from a view is
    keyed by, together with :attr:`known_on`."""
    known_on: date | None = None
    """The date this view was cut at; None for the whole table."""

    def released(self, column: str) -> date:
        """When a column became known: the latest release among the vintages it is dated by."""
        tags = column_vintages(column, self.vintages) or frozenset()
        return max((self.vintages[t] for t in tags), default=max(self.vintages.values()))

    def known_at(self, as_of: date) -> UdpColumns:
        """The same table with only the columns released by ``as_of``."""
        keep = [c for c in self.frame.columns if self.released(c) <= as_of]
        on = as_of if self.known_on is None else min(self.known_on, as_of)
        return replace(self, frame=self.frame[keep], known_on=on)


def udp_columns(columns: list[str], geoids: pd.Series, number: Callable[[str], pd.Series],
                vintages: dict[str, date]) -> UdpColumns:
    """The typology's columns among ``columns``, as ``number`` reads them (checked, sentinels missing), for every
    row with a usable GEOID (a bad or repeated one is an error the loader has recorded)."""
    usable = (geoids.notna() & ~geoids.duplicated()).to_numpy()
    keep = [c for c in columns if column_vintages(c, vintages) is not None]
    index = pd.Index(geoids[usable], name="geoid")
    frame = pd.DataFrame({c: number(c).to_numpy(dtype="float64")[usable] for c in keep}, index=index)
    digest = hashlib.sha256(json.dumps([keep, {s: d.isoformat() for s, d in vintages.items()}]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return UdpColumns(frame, dict(vintages), digest.hexdigest())
