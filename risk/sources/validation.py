"""`risk validate`: every problem in every configured file, at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import pandas as pd

from risk.core.errors import Problem
from risk.core.settings import Settings
from risk.sources import FAMILIES, Sources, collect


@dataclass(frozen=True)
class FamilySummary:
    """What one family holds after loading."""

    family: str
    rows: int
    tracts: int
    first: str | None
    last: str | None


@dataclass(frozen=True)
class ValidationReport:
    """Problems (errors and warnings) and a summary per family."""

    problems: list[Problem]
    families: list[FamilySummary] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """Problems that stop the pipeline."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems worth knowing that do not stop it."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "errors": [p.to_dict() for p in self.errors],
            "warnings": [p.to_dict() for p in self.warnings],
            "families": [vars(f) for f in self.families],
        }


def _span(frame: pd.DataFrame | None, column: str) -> tuple[int, int, str | None, str | None]:
    if frame is None or frame.empty:
        return 0, 0, None, None
    return (len(frame), int(frame["geoid"].nunique()),
            f"{frame[column].min():%Y-%m-%d}", f"{frame[column].max():%Y-%m-%d}")


def summarise(sources: Sources) -> list[FamilySummary]:
    """Rows, tracts and date span per family."""
    spans = {
        "boundaries": (len(sources.tracts), len(sources.tracts), None, None),
        "demographics": _span(sources.demographics, "released"),
        "evictions": _span(sources.evictions, "available"),
        "rent": _span(sources.rent, "month"),
        "permits": _span(sources.permits, "issued"),
    }
    return [FamilySummary(name, *spans[name]) for name in FAMILIES]


def validate(settings: Settings, today: date | None = None) -> ValidationReport:
    """Check every configured file; never raises for bad data."""
    sources, problems = collect(settings, today)
    return ValidationReport(problems=problems, families=summarise(sources) if sources is not None else [])
