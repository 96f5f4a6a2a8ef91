"""`risk validate`: every problem in every configured file, at once."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

import pandas as pd

from risk.core.errors import Problem
from risk.core.settings import DEFAULT_SAMPLE_FRACTION, Settings
from risk.sources import Sources, collect
from risk.sources.registry import families


@dataclass(frozen=True)
class FamilySummary:
    """What one family holds after loading."""

    family: str
    rows: int
    tracts: int
    first: str | None
    last: str | None
    region: str = ""


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


def _span(frame: pd.DataFrame | None, column: str | None) -> tuple[int, int, str | None, str | None]:
    if frame is None or frame.empty:
        return 0, 0, None, None
    # a table keyed by tract (the boundaries) has the GEOIDs as its index
    tracts = int(frame["geoid"].nunique()) if "geoid" in frame.columns else frame.index.nunique()
    if column is None:
        return len(frame), tracts, None, None
    return len(frame), tracts, f"{frame[column].min():%Y-%m-%d}", f"{frame[column].max():%Y-%m-%d}"


def summarise(sources: Sources) -> list[FamilySummary]:
    """Rows, tracts and date span (of the period a record describes) per family, in registry order."""
    return [FamilySummary(f.name, *_span(sources.table(f.name), f.period or f.known)) for f in families()]


def validate(settings: Settings, today: date | None = None) -> ValidationReport:
    """Check every configured file of every region; never raises for bad data."""
    problems: list[Problem] = []
    summaries: list[FamilySummary] = []
    for regional in settings.regional():
        sources, found = collect(regional, today)
        problems += found + _sampling_gaps(regional)
        if sources is not None:
            summaries += [replace(f, region=regional.region.name) for f in summarise(sources)]
    return ValidationReport(problems=problems, families=summaries)


def _sampling_gaps(settings: Settings) -> list[Problem]:
    """A warning for each demographic vintage without its own sampling fraction: the low-income loss label's
    standard errors would use the default, which is right only for an ACS 5-year vintage."""
    demographics = settings.sources.demographics
    if demographics is None:
        return []
    fractions = settings.model.low_income_loss.sample_fractions
    return [Problem(file="model.low_income_loss.sample_fractions", severity="warning", family="demographics",
                    message=f"{settings.region.name}: vintage '{v.suffix}' ({v.label}) has no sampling fraction; "
                    f"the low-income loss label assumes {DEFAULT_SAMPLE_FRACTION:g} (ACS 5-year, about 1 in 12): "
                    f"add '{v.suffix}: <share of households sampled>'")
            for v in {v.suffix: v for v in demographics.all_vintages}.values() if v.suffix not in fractions]
