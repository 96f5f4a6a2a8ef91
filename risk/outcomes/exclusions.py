"""Labels that would read data the quality checks excluded (:mod:`risk.sources.quality`) are dropped here.

An ``eviction_surge`` label at origin t reads its county's filings in the baseline years (t - baseline + 1 .. t)
and the outcome window (t + 1 .. t + horizon): a tract whose county has an excluded year in either is dropped. A
``low_income_loss`` label reads the low-income households of the origin's vintage and the next and the low-income
share of the first: an origin whose pair includes an excluded vintage of those measures is dropped whole. Other
outcomes are returned as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from risk.outcomes.base import Origin, Outcome
from risk.outcomes.eviction_surge import EvictionSurge
from risk.outcomes.low_income_loss import LowIncomeLoss
from risk.sources import Sources
from risk.sources.quality import Exclusions

LOW_INCOME_MEASURES = ("low_income_households", "low_income_share")


def surge_years(outcome: EvictionSurge, origin: Origin) -> list[int]:
    """The years of filings an eviction_surge label at ``origin`` reads: its baseline and outcome window."""
    t, cfg = origin.year, outcome.cfg
    return list(range(t - cfg.baseline_years + 1, t + cfg.horizon_years + 1))


def loss_vintages(sources: Sources, origin: Origin) -> list[str]:
    """The two vintages a low_income_loss label at ``origin`` compares: those of the low-income counts released
    on the origin's as-of date and on the date its window closes."""
    d = sources.demographics
    rows = d[d["measure"] == "low_income_households"]
    released = rows.groupby(rows["vintage"].astype(str))["released"].min().dt.date
    return [str(v) for v, day in released.items() if day in (origin.as_of, origin.closes)]


def drop_county_years(labels: pd.DataFrame, years: Iterable[int], exclusions: Exclusions, what: str
                      ) -> tuple[pd.DataFrame, list[str]]:
    """Tracts (index: GEOID) whose county has an excluded year among ``years`` are dropped, with one reason per
    county."""
    wanted = set(years)
    county = pd.Series(labels.index.astype(str), index=labels.index).str.zfill(11).str[:5]
    drop = pd.Series(False, index=labels.index)
    reasons = []
    for c in sorted(county.unique()):
        hit = {y: why for y, why in exclusions.years_of(c).items() if y in wanted}
        if not hit:
            continue
        rows = county == c
        drop |= rows
        named = "; ".join(f"{y}: {why}" for y, why in sorted(hit.items()))
        reasons.append(f"{what}: {int(rows.sum())} tracts of county {c} dropped, it reads excluded years ({named})")
    return labels[~drop.to_numpy()], reasons


def drop_vintages(labels: pd.DataFrame, vintages: Iterable[str], exclusions: Exclusions, what: str,
                  measures: Iterable[str] = LOW_INCOME_MEASURES) -> tuple[pd.DataFrame, list[str]]:
    """Every label is dropped when one of ``vintages`` is excluded for one of ``measures``."""
    hits = [f"{v} {m}: {why}" for v in vintages for m in measures
            if (why := exclusions.vintage_reason(v, m)) is not None]
    if not hits:
        return labels, []
    reason = f"{what}: all {len(labels)} labels dropped, they read excluded vintages ({'; '.join(hits)})"
    return labels.iloc[:0], [reason]


def apply_exclusions(outcome: Outcome, sources: Sources, origin: Origin, labels: pd.DataFrame,
                     exclusions: Exclusions) -> tuple[pd.DataFrame, list[str]]:
    """The labels of one origin that read no excluded data, and why the others were dropped."""
    what = f"{outcome.name} at origin {origin.year}"
    if isinstance(outcome, EvictionSurge):
        return drop_county_years(labels, surge_years(outcome, origin), exclusions, what)
    if isinstance(outcome, LowIncomeLoss):
        return drop_vintages(labels, loss_vintages(sources, origin), exclusions, what)
    return labels, []
