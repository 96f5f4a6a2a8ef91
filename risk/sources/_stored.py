"""Validated family tables reused while their files are unchanged.

Parsing and checking national files takes minutes, and a weekly run mostly
reads last week's files again. Each family's tables and problems are stored
under a key of its files' hashes, its settings, the region, the boundaries
file and the code, and only when the family has no error (a file with errors
stops the run, and the user will change it).

Validation depends on the day only through "in the future" checks, and each
of those is an error. A stored family was therefore clean on its day, and
stays clean on any day after the latest date its checks compared
(:attr:`ProblemLog.latest`); before that day it is loaded afresh.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from risk.core.errors import Problem
from risk.core.files import EntryStore
from risk.sources._tables import ProblemLog, display_path
from risk.sources.family import Codec

T = TypeVar("T")


def _absolute(files: str) -> list[str]:
    """A problem's file (or comma-separated files) as absolute paths: the next run may start elsewhere.

    A name that is itself a file stays whole, even if it holds ", ".
    """
    parts = [files] if ", " not in files or os.path.exists(files) else files.split(", ")
    return [os.path.abspath(f) for f in parts]


def _shown(files: list[str]) -> str:
    """Stored absolute paths as this run shows them (:func:`display_path`)."""
    return ", ".join(display_path(f) for f in files)


class StoredFamilies:
    """Loads families through the entry store, keyed by what each was loaded from."""

    def __init__(self, store: EntryStore, base: dict[str, object], hashes: dict[str, str], today: date) -> None:
        self.store = store
        self.base = base
        self.hashes = hashes
        self.today = pd.Timestamp(today)
        self.owner = json.dumps(base.get("region"), sort_keys=True, default=str)
        """Whose entries these are: the region (its name, counties and ignored tracts)."""

    def load(self, family: str, codec: Codec[Any], files: list[Path], settings: object, log: ProblemLog,
             load: Callable[[], T]) -> T:
        """The family's value from the store when its inputs are unchanged and today is past its latest date."""
        key = self.store.key(f"source-{family}", self.base, settings, [self.hashes.get(str(p)) for p in files])
        stored = self.store.frames(key)
        if stored is not None:
            frames, note = stored
            latest = pd.Timestamp(note["latest"]) if note["latest"] else None
            if latest is None or latest <= self.today:
                log.items.extend(Problem(**{**p, "file": _shown(p["file"]),
                                            "more": tuple(tuple(m) for m in p.get("more", ()))})
                                 for p in note["problems"])
                log.latest = latest
                return codec.unpack(frames, note["value"])  # type: ignore[no-any-return]
        value = load()
        if not log.has_errors:
            frames, value_note = codec.pack(value)
            self.store.put_frames(key, frames, {
                "value": value_note,
                "problems": [{**dataclasses.asdict(p), "file": _absolute(p.file)} for p in log.items],
                "latest": log.latest.isoformat() if log.latest is not None else None}, owner=self.owner)
            # last week's version of this family in this region is superseded; other regions' are not
            self.store.drop_others(f"source-{family}-", key, owner=self.owner)
        return value
