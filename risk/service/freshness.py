"""Data freshness: which sources are stale, missing or lost coverage at a run's as-of date.

A time-series family (evictions, rent index, permits: every registered family
whose ``series`` is set) whose newest record is older than its
``max_age_days`` (``max_gap_days`` for permits) at the as-of date is dropped
from that run's features: its columns are missing for every tract. LightGBM
sends a missing value down the branch it learned for missing values where the
feature was missing in some training rows; where it never was, LightGBM reads
the missing value as zero. The scores of such a run are therefore less
trustworthy, and the note says so. A source marked ``required`` fails the run
instead. Demographic vintages are never dropped (they are the only source of
the demographic features): a stale vintage is reported, or fails the run when
required.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd

from risk.core import clock
from risk.core.errors import DataValidationError, Problem, StaleDataError
from risk.core.settings import DemographicsSource, Settings
from risk.sources import Sources
from risk.sources.family import Family
from risk.sources.registry import dated


@dataclass(frozen=True)
class Freshness:
    """What a run should tell its readers about its data."""

    notes: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    coverage: dict[str, int] = field(default_factory=dict)


_DEFAULT_RELEASE_AGE = {"demographics": DemographicsSource.model_fields["max_age_days"].default}


def required_sources(settings: Settings) -> set[str]:
    """Families marked ``required`` in the config."""
    return {family.name for family in dated() if family.required(settings)}


def _reported() -> list[Family[Any]]:
    """The dated families, time series before releases: the order a run's notes and coverage have always had."""
    return sorted(dated(), key=lambda family: not family.series)


def _newest_by(frame: pd.DataFrame, column: str, as_of: date) -> pd.Timestamp | None:
    """The newest date in ``column`` on or before ``as_of``; None when nothing was known by then."""
    known = frame.loc[frame[column] <= pd.Timestamp(as_of), column]
    return None if known.empty else known.max()


def _series_note(family: str, frame: pd.DataFrame | None, column: str, as_of: date,
                 max_age: pd.Timedelta, covered: int | None) -> str | None:
    """Why a time series gives no features at ``as_of`` (``covered``: the tracts it gave features for, None
    for a family with no coverage flag), or None when it does."""
    name = family.replace("_", " ")
    if frame is None:
        return f"{name}: not configured; its features are missing for every tract"
    known = _newest_by(frame, column, as_of)
    if known is None:
        return f"{name}: no records known by {as_of}; its features are missing for every tract"
    newest = known.date()
    if pd.Timestamp(as_of) - known > max_age:
        return (f"{name}: stale, newest record {newest} is more than {max_age.days} days before {as_of}; "
                "dropped from this run's features (read these scores with care: the model takes missing "
                "values it never saw in training as zero)")
    if covered == 0:  # None: a family without a coverage flag gives no features to look for
        return f"{name}: records up to {newest} are known but none gives a feature for any tract at {as_of}"
    return None


def _release_note(family: str, frame: pd.DataFrame | None, column: str, as_of: date,
                  max_age_days: int, due: dict[str, date] | None = None, late_days: int = 0) -> str | None:
    """Why a family of releases (demographic vintages) is stale at ``as_of``, or None; it stays in use.

    The newest vintage whose successor's date is known (``due``, by vintage label) is stale only once that date
    has passed by ``late_days``: the newest release there is cannot be out of date."""
    if frame is None:
        return f"{family}: not configured"
    released = _newest_by(frame, column, as_of)
    if released is None:
        return f"{family}: no vintage released by {as_of}"
    newest = released.date()
    labels = frame.loc[frame[column] == released, "vintage"].astype(str).unique() if "vintage" in frame else []
    successor = min((due[lb] for lb in labels if lb in (due or {})), default=None)
    if successor is not None:
        if (as_of - successor).days <= late_days:
            return None
        return (f"{family}: stale, the release after the newest vintage (released {newest}) was due on "
                f"{successor} and has not been configured; still used (no other source of these features)")
    if (as_of - newest).days > max_age_days:
        return (f"{family}: stale, newest vintage released {newest}, more than {max_age_days} days before "
                f"{as_of}; still used (no other source of these features)")
    return None


def _release_dates(settings: Settings) -> tuple[dict[str, date], int]:
    """When each configured demographic vintage's successor is due, by label, and the slack allowed."""
    cfg = settings.sources.demographics
    if cfg is None:
        return {}, 0
    return {v.label: v.next_release for v in cfg.all_vintages if v.next_release is not None}, cfg.late_release_days


def _coverage_notes(coverage: dict[str, int], previous: dict[str, int] | None, drop: float) -> list[str]:
    notes = []
    for family, now in coverage.items():
        before = (previous or {}).get(family, 0)
        if before > 0 and (before - now) / before > drop:
            notes.append(f"{family}: tract coverage fell from {before} to {now} since the previous run "
                         f"(more than {drop:.0%})")
    return notes


def _refuse_collapse(coverage: dict[str, int], previous: dict[str, int] | None, limit: float,
                     explained: set[str]) -> None:
    """A DataValidationError for each family that lost more than ``limit`` of its tracts since the previous run
    while its records are fresh (a stale family's loss is expected and only reported): broken files, most
    likely, and a model trained on them must not replace the champion."""
    collapsed = []
    for family, now in coverage.items():
        before = (previous or {}).get(family, 0)
        if family not in explained and before > 0 and (before - now) / before > limit:
            collapsed.append(Problem(
                file=f"sources.{family}", family=family,
                message=f"{family}: tract coverage collapsed from {before} to {now} since the previous run (more "
                f"than sources.coverage_collapse = {limit:.0%}); check its files (coordinates, GEOIDs, the "
                "coverage list); nothing is trained or promoted until it is fixed"))
    if collapsed:
        raise DataValidationError(collapsed)


def assess(settings: Settings, sources: Sources, features: pd.DataFrame, as_of: date,
           previous_coverage: dict[str, int] | None) -> Freshness:
    """Notes on stale, missing and shrinking sources; raises StaleDataError if a required one is among them."""
    coverage = {f.name: int(features[f.coverage].sum()) for f in _reported() if f.coverage and f.coverage in features}
    problems: dict[str, str] = {}
    for family in _reported():
        frame, column = sources.table(family.name), str(family.known)
        if family.series:
            note = _series_note(family.name, frame, column, as_of, sources.max_age[family.name],
                                coverage.get(family.name, 0) if family.coverage else None)
        else:
            # not configured, yet filled by another family's file (Eviction Lab's demographic columns): the
            # default age applies, not zero
            age = family.max_age_days(settings)
            due, late = _release_dates(settings) if family.name == "demographics" else ({}, 0)
            note = _release_note(family.name, frame, column, as_of,
                                 age if age is not None else _DEFAULT_RELEASE_AGE.get(family.name, 0), due, late)
        if note:
            problems[family.name] = note
    required = required_sources(settings)
    failing = [note for family, note in problems.items() if family in required]
    if failing:
        raise StaleDataError(f"required source(s) unusable at {as_of}: " + "; ".join(failing))
    _refuse_collapse(coverage, previous_coverage, settings.sources.coverage_collapse, set(problems))
    notes = [str(w) for w in sources.warnings] + list(problems.values())
    notes += _coverage_notes(coverage, previous_coverage, settings.sources.coverage_drop)
    return Freshness(notes=notes, stale=list(problems), coverage=coverage)


def default_as_of(sources: Sources, required: set[str], today: date | None = None) -> date:
    """Today, or the last day on which every *required* time-series source is still fresh if that is earlier.

    Optional sources do not hold the date back: when they go stale they are
    dropped from the run's features and reported in its data notes."""
    limits = [pd.Timestamp(today or clock.today())]
    for family in dated():
        frame = sources.table(family.name)
        if family.series and family.name in required and frame is not None and not frame.empty:
            limits.append(frame[str(family.known)].max() + sources.max_age[family.name])
    return min(limits).date()
