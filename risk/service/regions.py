"""A project's regions: each region's validated sources, its features and scores, and the pooled backtest.

Every stage that compares a tract with "the region" runs on one region's own
sources; only the model is shared. One region (the default) is the same code
with a list of one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date

import geopandas as gpd
import pandas as pd

from risk.core.errors import DataValidationError, Problem
from risk.core.files import EntryStore
from risk.core.settings import Settings, TierSettings
from risk.model.backtest import Backtest
from risk.model.cases import RegionInput
from risk.model.engines.configured import features as engine_features
from risk.model.gbm import TrainedModel
from risk.scoring.scores import score_tracts
from risk.service.freshness import Freshness, assess, default_as_of, required_sources
from risk.sources import Sources, collect, load_sources
from risk.sources.registry import dated


@dataclass(frozen=True)
class Project:
    """Every region's inputs, and all of them together for the stages that list tracts (alerts, pages)."""

    regions: list[RegionInput]
    sources: Sources
    """The regions' records side by side; ``tracts`` carries each tract's ``region``."""

    @property
    def several(self) -> bool:
        """Whether the project has more than one region."""
        return len(self.regions) > 1


def load_regions(settings: Settings, today: date | None = None, *, reuse: bool = False) -> list[RegionInput]:
    """Every region's sources; every problem of every region is reported together, then the errors refuse.

    ``reuse`` reads families whose files did not change from ``paths.cache`` (keyed by region as well)."""
    store = EntryStore(settings.paths.cache) if reuse and settings.paths.cache is not None else None
    regions: list[RegionInput] = []
    problems: list[Problem] = []
    for regional in settings.regional():
        sources, found = collect(regional, today, store)
        problems += found
        if sources is not None:
            regions.append(RegionInput(regional.region.name, regional, sources))
    if len(regions) < len(settings.regional()) or any(p.severity == "error" for p in problems):
        raise DataValidationError(problems)
    return regions


def load_project(settings: Settings, today: date | None = None, *, reuse: bool = False) -> Project:
    """The project's regions, validated (one region: exactly :func:`risk.sources.load_sources`)."""
    if not settings.multi_region:
        sources = load_sources(settings, today, reuse=reuse)
        tracts = sources.tracts.assign(region=settings.region.name)
        return Project([RegionInput(settings.region.name, settings, sources)], replace(sources, tracts=tracts))
    regions = load_regions(settings, today, reuse=reuse)
    return Project(regions, combine(regions))


def combine(regions: list[RegionInput]) -> Sources:
    """All regions' records in one :class:`Sources`, for listing and mapping tracts; never for features."""
    first = regions[0].sources
    tracts = gpd.GeoDataFrame(pd.concat([r.sources.tracts.assign(region=r.name) for r in regions]),
                              crs=first.tracts.crs)
    tables: dict[str, pd.DataFrame | None] = {}
    for family in dated():
        frames = [f for r in regions if (f := r.sources.table(family.name)) is not None]
        tables[family.name] = pd.concat(frames, ignore_index=True) if frames else None
    demographics = tables.pop("demographics")
    return replace(first.with_tables(tables), tracts=tracts, demographics=demographics, udp=None,
                   file_hashes={k: v for r in regions for k, v in r.sources.file_hashes.items()},
                   warnings=tuple(w for r in regions for w in r.sources.warnings), cache={})


def project_as_of(project: Project, today: date) -> date:
    """The newest date on which every region's required sources are still fresh."""
    return min(default_as_of(r.sources, required_sources(r.settings), today) for r in project.regions)


def project_features(project: Project, as_of: date) -> pd.DataFrame:
    """Each region's features, built on its own sources (region medians are its own), stacked."""
    frames = [engine_features(r.settings, r.sources, as_of) for r in project.regions]
    return frames[0] if len(frames) == 1 else pd.concat(frames)


def project_freshness(project: Project, features: pd.DataFrame, as_of: date,
                      previous: dict[str, int] | None) -> Freshness:
    """Each region's data notes and coverage; with several regions, both are named by region."""
    if not project.several:
        r = project.regions[0]
        return assess(r.settings, r.sources, features, as_of, previous)
    notes, stale, coverage = [], [], {}
    for r in project.regions:
        own = {k.removeprefix(f"{r.name}: "): v for k, v in (previous or {}).items() if k.startswith(f"{r.name}: ")}
        fresh = assess(r.settings, r.sources, features.loc[r.sources.tracts.index.intersection(features.index)],
                       as_of, own or None)
        notes += [f"{r.name}: {n}" for n in fresh.notes]
        stale += [f"{r.name}: {s}" for s in fresh.stale]
        coverage |= {f"{r.name}: {k}": v for k, v in fresh.coverage.items()}
    return Freshness(notes=notes, stale=stale, coverage=coverage)


def project_scores(project: Project, model: TrainedModel, features: pd.DataFrame, previous: pd.DataFrame,
                   tiers: TierSettings) -> pd.DataFrame:
    """Every tract's score; percentiles and tiers rank a tract among its own region's tracts."""
    if not project.several:
        return score_tracts(model, features, previous, tiers)
    parts = [score_tracts(model, features.loc[features.index.intersection(r.sources.tracts.index)], previous, tiers)
             for r in project.regions]
    return pd.concat(parts)


def backtest(settings: Settings, outcome: str | None = None, progress: Callable[[str], None] | None = None,
             project: Project | None = None) -> Backtest:
    """`risk backtest`: one region's rolling-origin backtest, or the pooled one over several regions."""
    from risk.model.backtest import run_backtest
    from risk.model.cache import work_cache
    from risk.model.pooled import run_pooled_backtest

    if settings.multi_region:
        regions = project.regions if project is not None else load_regions(settings)
        return run_pooled_backtest(settings, regions, outcome, progress)
    sources = project.regions[0].sources if project is not None else load_sources(settings)
    return run_backtest(settings, sources, outcome, progress=progress, cache=work_cache(settings, sources))
