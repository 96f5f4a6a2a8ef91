"""The label machinery every outcome shares: what a label may read, per-origin counts and the null check.

Outcomes (one module each, listed in :mod:`risk.outcomes.registry`) are the only code allowed to look past the
as-of date. Each says which origins it can label, the as-of date of each origin (when its features are built)
and the date its outcome window closes (when the label becomes known, so a backtest may train on it). Every
outcome can simulate a world in which nothing changes (Poisson resampling of counts, survey sampling noise for
estimates) and report how often it still fires: the null check requires that rate to be at most a quarter of
the observed one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from risk.outcomes.base import Origin, Outcome
from risk.outcomes.exclusions import apply_exclusions
from risk.sources import Sources

NULL_CHECK_RATIO = 0.25
"""The null check: the no-change worlds' positive rate may be at most this share of the observed rate."""


@dataclass(frozen=True)
class OriginCounts:
    """Positives, negatives and the simulated null rate of one origin."""

    origin: Origin
    positives: int
    negatives: int
    null_rate: float
    left_out: tuple[str, ...] = ()
    """Why some of its labels were left out (source data the quality checks found broken)."""

    @property
    def rate(self) -> float:
        """Observed positive rate."""
        total = self.positives + self.negatives
        return self.positives / total if total else float("nan")


def label_view(outcome: Outcome, sources: Sources, origin: Origin) -> Sources:
    """What an origin's label may read: the outcome's tables as known when its window closed."""
    return sources.known_at(origin.closes, outcome.reads)


def origin_null_rate(outcome: Outcome, view: Sources, origin: Origin, n_null: int, seed: int) -> float:
    """One origin's null rate on its :func:`label_view`, from its own random stream: it does not depend on which
    origins came before."""
    return outcome.null_rate(view, origin, np.random.default_rng([seed, origin.year]), n_null)


def label_summary(outcome: Outcome, sources: Sources, n_null: int, seed: int,
                  origins: list[Origin] | None = None) -> list[OriginCounts]:
    """Counts and null rates for the given origins (default: every origin of the outcome)."""
    rows = []
    for origin in outcome.origins(sources) if origins is None else origins:
        view = label_view(outcome, sources, origin)  # one copy of the tables for the label and its null worlds
        lab, left_out = apply_exclusions(outcome, sources, origin, outcome.label(view, origin), sources.exclusions)
        pos = int(lab["y"].sum())
        rows.append(OriginCounts(origin, pos, len(lab) - pos, origin_null_rate(outcome, view, origin, n_null, seed),
                                 tuple(left_out)))
    return rows


def null_check(rows: list[OriginCounts], ratio: float = NULL_CHECK_RATIO) -> tuple[float, float, bool]:
    """Pooled observed rate, pooled null rate, and whether null <= ``ratio`` (a quarter) of observed."""
    total = sum(r.positives + r.negatives for r in rows)
    observed = sum(r.positives for r in rows) / total if total else float("nan")
    null = sum(r.null_rate * (r.positives + r.negatives) for r in rows) / total if total else float("nan")
    return observed, null, bool(null <= ratio * observed)


def null_failure(rows: list[OriginCounts], ratio: float = NULL_CHECK_RATIO) -> str | None:
    """Why these origins' labels cannot be told from noise, in words; None when they pass or hold no label."""
    if not sum(r.positives + r.negatives for r in rows):
        return None
    observed, null, ok = null_check(rows, ratio)
    return None if ok else (f"null check fails ({100 * null:.2f}% positives in no-change worlds against "
                            f"{100 * observed:.2f}% observed); not used to train or judge")
