"""`risk init`: a commented configuration drafted from the files in a city's folder.

Each file is recognised by its header (:mod:`risk.sources.recognition`); the region's counties come from the
tract GEOIDs of the boundaries (else of the demographic, eviction or rent files); the outcome is the first one
the files support. What the draft cannot know (the region's name, water tracts to ignore, who gets the e-mail)
is written with a comment, and `risk validate` then names what is still wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from risk.core.errors import ConfigError, ConfigIssue, OutputError
from risk.core.files import atomic_path
from risk.core.templating import environment
from risk.sources.recognition import (
    KnownVintage,
    Recognised,
    known_vintage,
    recognise_folder,
)

EVICTION_LAB_VINTAGES = (
    (2000, 2004, "Census 2000", "2002-08-01"), (2005, 2009, "ACS 2005-2009", "2010-12-14"),
    (2010, 2010, "Census 2010 / ACS 2008-2012", "2013-12-17"), (2011, 2016, "ACS 2011-2015", "2016-12-08"))
"""The releases Eviction Lab v1.0's demographic columns repeat, by range of years (the same in every state)."""
EVICTION_LAB_ANCHORS = ((2000, "2001-08-01"), (2010, "2011-06-30"))
"""Eviction Lab's census renter counts, with the dates those censuses' counts were published."""


@dataclass
class Draft:
    """A drafted configuration and what the files did and did not give."""

    text: str
    found: list[Recognised]
    unknown: list[Path]
    outcomes: list[str]
    notes: list[str] = field(default_factory=list)
    """What the user still has to do, one line each."""


def draft_config(folder: Path) -> Draft:
    """The configuration the files of ``folder`` support (not written)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(str(folder), [ConfigIssue("folder", "not a folder")])
    found, unknown = recognise_folder(folder)
    by_family: dict[str, list[Recognised]] = {}
    for item in found:
        by_family.setdefault(item.family, []).append(item)
    notes: list[str] = []
    boundaries = _first(by_family, "boundaries", notes)
    demographics = by_family.get("demographics", [])
    evictions = _first(by_family, "evictions", notes)
    counties = _counties(boundaries, demographics, evictions, by_family.get("rent", []))
    if not counties:
        notes.append("no file names a tract GEOID: set region.county_fips by hand")
    demo = _demographics(demographics, notes)
    outcomes = (["eviction_surge"] if evictions else []) + (
        ["low_income_loss"] if demo and len(demo["vintages"]) >= 2 else []) + (
        ["typology_transition"] if demo and demo["format"] != "census_tables" else [])
    if not outcomes:
        notes.append("no outcome can be labelled from these files: add an Eviction Lab tract file or a demographic "
                     "file with two census vintages")
    text = environment().get_template("config/init.yaml.j2").render(
        name=folder.resolve().name.replace("_", " ").replace("-", " ").strip() or "My region",
        counties=sorted(counties), boundaries=boundaries, demographics=demo, evictions=evictions,
        eviction_vintages=EVICTION_LAB_VINTAGES, anchors=EVICTION_LAB_ANCHORS, rent=_rent(by_family, notes),
        permits=by_family.get("permits", []), outcomes=outcomes, rel=lambda p: _relative(p, folder))
    return Draft(text, found, unknown, outcomes, notes)


def write_config(folder: Path, force: bool = False) -> tuple[Path, Draft]:
    """Draft the configuration of ``folder`` and write it as ``folder/config.yaml``; an existing file is
    refused unless ``force``."""
    draft = draft_config(folder)
    target = Path(folder) / "config.yaml"
    if target.exists() and not force:
        raise ConfigError(str(target), [ConfigIssue("config.yaml", "the file exists: move it away or pass --force "
                                                                 "to overwrite it")])
    with atomic_path(target) as tmp:
        try:
            tmp.write_text(draft.text, encoding="utf-8")
        except OSError as e:
            raise OutputError(f"cannot write {target}: {e.strerror or e}") from e
    return target, draft


def _first(by_family: dict[str, list[Recognised]], family: str, notes: list[str]) -> Recognised | None:
    items = by_family.get(family, [])
    if len(items) > 1:
        notes.append(f"{len(items)} {family} files: {', '.join(i.path.name for i in items)}; the first is "
                     "configured, the others are not")
    return items[0] if items else None


def _counties(boundaries: Recognised | None, demographics: list[Recognised], evictions: Recognised | None,
              rent: list[Recognised]) -> set[str]:
    """The boundaries' counties; without boundaries, those of the first tract-level file that names any (a
    statewide eviction file would otherwise make the whole state the region)."""
    for group in ([boundaries] if boundaries else [], demographics, [evictions] if evictions else [], rent):
        counties = set().union(*(g.counties for g in group)) if group else set()
        if counties:
            return counties
    return set()


def _demographics(items: list[Recognised], notes: list[str]) -> dict[str, object] | None:
    """The demographics section: one UDP file with its vintages, or every raw Census table with its own."""
    if not items:
        return None
    kind = items[0].format
    if kind == "census_tables":
        tables = [(i, v) for i in items if i.format == kind for v in _vintages(i.suffixes[-1:], notes, i.path)]
        newest = max((v.released for _, v in tables), default=None)
        tables = [(i, _with_next(v, v.released == newest)) for i, v in tables]
        return {"format": kind, "tables": tables, "vintages": [v for _, v in tables]}
    if len(items) > 1:
        notes.append(f"{len(items)} demographic files: {', '.join(i.path.name for i in items)}; the first is "
                     "configured, the others are not")
    item = items[0]
    return {"format": kind, "path": item.path, "vintages": _vintages(item.suffixes, notes, item.path)}


def _vintages(suffixes: tuple[str, ...], notes: list[str], path: Path) -> list[KnownVintage]:
    out = []
    for i, suffix in enumerate(suffixes):
        known = known_vintage(suffix, newest=i == len(suffixes) - 1)
        if known is None:
            notes.append(f"{path.name}: columns suffixed _{suffix} are not a release this product knows: add their "
                         f"vintage (label, released) to sources.demographics by hand")
        else:
            out.append(known)
    return out


def _with_next(v: KnownVintage, newest: bool) -> KnownVintage:
    return v if newest or v.next_release is None else KnownVintage(v.suffix, v.label, v.released, None,
                                                                   v.medians_reliable, v.shares_over_one)


def _rent(by_family: dict[str, list[Recognised]], notes: list[str]) -> dict[str, object] | None:
    rent = by_family.get("rent", [])
    if not rent:
        return None
    item = rent[0]
    if item.format == "zillow_zip":
        crosswalk = by_family.get("crosswalk", [])
        if not crosswalk:
            notes.append(f"{item.path.name} is a Zillow ZIP file: it needs a HUD ZIP-to-tract crosswalk beside it "
                         "(ZIP, TRACT, RES_RATIO); rent is left out until there is one")
            return None
        return {"format": "zillow_zip", "path": item.path, "crosswalk": crosswalk[0].path}
    return {"format": item.format, "path": item.path}


def _relative(path: Path, folder: Path) -> str:
    """A path as the configuration names it: relative to the folder the config file is written to."""
    return Path(os.path.relpath(path, folder)).as_posix()
