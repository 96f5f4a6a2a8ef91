"""The source families, in order: the one list every stage loops over.

The order is the order of reports (``risk validate``, the model page) and of the work cache's fingerprints.
The boundaries come first: they define the tracts every other family is checked against.

:func:`register` adds a family beyond the built-in ones (a test's, or a plug-in's); :func:`registered` does so
for the length of a ``with`` block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from risk.sources import boundaries, demographics, evictions, permits, rent
from risk.sources.family import Family

BUILT_IN: tuple[Family[Any], ...] = (boundaries.FAMILY, demographics.FAMILY, evictions.FAMILY, rent.FAMILY,
                                     permits.FAMILY)

_families: list[Family[Any]] = list(BUILT_IN)


def families() -> tuple[Family[Any], ...]:
    """Every registered family, in order."""
    return tuple(_families)


def dated() -> tuple[Family[Any], ...]:
    """The families whose records carry the date they became known, in order."""
    return tuple(f for f in _families if f.known is not None)


def family(name: str) -> Family[Any]:
    """The registered family called ``name``."""
    for f in _families:
        if f.name == name:
            return f
    raise KeyError(f"no source family named {name!r}")


def register(extra: Family[Any]) -> None:
    """Add a family after the registered ones."""
    if any(f.name == extra.name for f in _families):
        raise ValueError(f"a source family named {extra.name!r} is already registered")
    _families.append(extra)


def unregister(name: str) -> None:
    """Remove a family added by :func:`register`; the built-in families stay."""
    if any(f.name == name for f in BUILT_IN):
        raise ValueError(f"{name!r} is a built-in source family")
    _families[:] = [f for f in _families if f.name != name]


@contextlib.contextmanager
def registered(extra: Family[Any]) -> Iterator[Family[Any]]:
    """``extra`` registered for the length of the block, and removed after it even if the block fails."""
    register(extra)
    try:
        yield extra
    finally:
        unregister(extra.name)
