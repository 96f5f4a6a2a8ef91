"""Noise-aware change tests for :func:`risk.outcomes.typology.rules.classify` (``margins=``).

UDP's typology compares point estimates: a tract "lost low-income households"
when its estimated count fell by one household, its college share "grew faster
than the region" when its change beat the regional change by any amount, its
rent increase is "rapid" above the median increase. Between two survey
estimates (decennial long form, ACS 5-year) such comparisons come out either
way by sampling noise alone. With :class:`Margins` each change test asks
instead that the change pass its threshold by ``z`` standard errors of the
difference of the two estimates; the low-income loss is the project's
``low_income_loss`` test (:class:`risk.outcomes.low_income_loss.LowIncomeLoss`). The functions
return boolean Series where a missing value counts as "no".

The sampling model is the one of ``LowIncomeLoss`` and of the
typology-transition null world (:mod:`risk.outcomes.typology_transition`):

* a share p of N units (households; in-movers with income for the in-mover
  share) at vintage v: SE sqrt(p (1 - p) / (N f_v / deff));
* an estimated count C: variance C (1 - f_v) / f_v x deff;
* a median (rent, home value, income) or index level: relative SE
  ``median_relative_se`` per estimate, so log(x1 / x0) has SE sqrt(2) x it.

Also here: the per-call memo that lets ``classify`` read and clean each column
once (about twice as fast), which the null simulations (one ``classify`` per
simulated world) need.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd

_F = TypeVar("_F", bound=Callable[..., Any])
_MEMO: ContextVar[dict[tuple[str, int, str], tuple[pd.DataFrame, Any]] | None] = ContextVar("_MEMO", default=None)


def memoised(fn: _F) -> _F:
    """fn(db, col) computed once per frame and column inside a :func:`memo_scope` (else always).

    The result is shared: callers must not modify it in place. The frame is kept
    in the memo with it, so its id cannot be reused by another frame meanwhile.
    """
    @functools.wraps(fn)
    def wrapper(db: pd.DataFrame, col: str) -> Any:
        memo = _MEMO.get()
        if memo is None:
            return fn(db, col)
        key = (fn.__name__, id(db), col)
        if key not in memo:
            memo[key] = (db, fn(db, col))
        return memo[key][1]
    return wrapper  # type: ignore[return-value]


def memo_scope(fn: _F) -> _F:
    """Run fn with a fresh memo for :func:`memoised` functions, dropped when it returns."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _MEMO.set({})
        try:
            return fn(*args, **kwargs)
        finally:
            _MEMO.reset(token)
    return wrapper  # type: ignore[return-value]


def _default_fractions() -> dict[str, float]:
    return {"90": 1 / 6, "00": 1 / 6, "12": 0.08, "18": 0.08}


@dataclass(frozen=True)
class Margins:
    """Survey sampling model and critical values of the noise-aware typology.

    ``sample_fractions``: share of households sampled per vintage suffix (decennial
    long form about 1 in 6, ACS 5-year about 1 in 12; ``default_fraction`` for
    others); ``design_effect`` inflates every sampling variance;
    ``median_relative_se`` is one median's relative SE.

    ``z``: a change must pass its threshold by z SE (default 1.645, a one-sided
    5% test: every change test is directional). ``loss_z`` and ``min_loss``: the
    low-income household loss must exceed max(-log(1 - min_loss), loss_z SE) on
    the log scale, ``LowIncomeLoss``'s criterion (its defaults: 1.96 and 10%). It
    is stricter because the loss alone makes a low-income tract Ongoing
    Displacement, while every other change test enters only conjunctions of
    several tests (gentrification: college share, income and market; Becoming
    Exclusive: rapid cost increase, loss, fewer low-income in-movers, income).
    """

    sample_fractions: Mapping[str, float] = field(default_factory=_default_fractions)
    design_effect: float = 1.5
    z: float = 1.645
    loss_z: float = 1.96
    min_loss: float = 0.10
    median_relative_se: float = 0.05
    default_fraction: float = 0.08

    def __post_init__(self) -> None:
        if not (self.z >= 0 and self.loss_z >= 0 and 0 <= self.min_loss < 1 and self.design_effect >= 1
                and self.median_relative_se >= 0):
            raise ValueError(f"invalid margins {self}")
        if not all(0 < f <= 1 for f in (*self.sample_fractions.values(), self.default_fraction)):
            raise ValueError(f"sample fractions must lie in (0, 1]: {dict(self.sample_fractions)}")

    def fraction(self, v: str) -> float:
        return float(self.sample_fractions.get(v, self.default_fraction))

    def share_variance(self, p: pd.Series | np.ndarray, n: pd.Series | np.ndarray, v: str) -> np.ndarray:
        """Sampling variance of a share p estimated from N units at vintage v (NaN where either is unknown)."""
        p = np.clip(_arr(p), 0, 1)
        return p * (1 - p) / (np.maximum(_arr(n), 1) * self.fraction(v) / self.design_effect)

    def count_variance(self, count: pd.Series | np.ndarray, v: str) -> np.ndarray:
        """Sampling variance of an estimated count at vintage v (at least one unit)."""
        f = self.fraction(v)
        return np.maximum(_arr(count), 1) * (1 - f) / f * self.design_effect

    @property
    def log_ratio_margin(self) -> float:
        """z standard errors of log(x1 / x0) for two medians or index levels."""
        return self.z * float(np.sqrt(2)) * self.median_relative_se


def _arr(x: pd.Series | np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype="float64")


def _log(x: np.ndarray) -> np.ndarray:
    """Natural log, NaN where x is not positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.where(x > 0, x, np.nan))


def universe(db: pd.DataFrame, prefix: str, v: str, other: str) -> pd.Series:
    """Sampling universe of a share at v (``hh``: households): ``<prefix>_<v>``, else at the other vintage."""
    for col in (f"{prefix}_{v}", f"{prefix}_{other}"):
        if col in db.columns:
            x = pd.to_numeric(db[col], errors="coerce").astype("float64")
            return x.mask((x <= -1e8) | np.isinf(x))
    raise KeyError(f"the noise-aware typology needs column {prefix}_{v!r} or {prefix}_{other!r} (share sample sizes)")


def ratio_beyond(ratio: pd.Series, threshold: float, m: Margins, *, above: bool = True) -> pd.Series:
    """A ratio of two medians (x1 / x0, or 1 + a % change) beyond ``threshold`` (a ratio) by the margin.

    On the log scale: log(ratio) > log(threshold) + z SE (below: < ... - z SE).
    A non-positive or missing ratio or threshold counts as not beyond.
    """
    gap = _log(_arr(ratio)) - _log(np.float64(threshold))
    return pd.Series(gap > m.log_ratio_margin if above else gap < -m.log_ratio_margin, index=ratio.index)


def share_beyond(p0: pd.Series, p1: pd.Series, n0: pd.Series, n1: pd.Series, v0: str, v1: str,
                 threshold: float, m: Margins, *, above: bool = True) -> pd.Series:
    """A share change p1 - p0 beyond ``threshold`` (a difference of shares) by z SE of the difference."""
    se = np.sqrt(m.share_variance(p0, n0, v0) + m.share_variance(p1, n1, v1))
    gap = (_arr(p1) - _arr(p0)) - threshold
    return pd.Series(gap > m.z * se if above else gap < -m.z * se, index=p0.index)


def change_class(x: pd.Series, marginal: float, rapid: float, m: Margins) -> pd.Series:
    """UDP's cost-change class of a % change x (0 decrease, 1 marginal, 2 increase, 3 rapid), noise-aware.

    Increase / rapid / decrease only when 1 + x passes 1 + marginal / 1 + rapid /
    1 - marginal by the margin; otherwise marginal; NaN where x is unknown.
    """
    log = _log(1 + _arr(x))
    cls = np.select([log - _log(np.float64(1 + rapid)) > m.log_ratio_margin,
                     log - np.log(1 + marginal) > m.log_ratio_margin,
                     log - np.log(1 - marginal) < -m.log_ratio_margin, ~np.isnan(_arr(x))], [3, 2, 0, 1], np.nan)
    return pd.Series(cls, index=x.index, dtype="float64")


def count_loss(c0: pd.Series, c1: pd.Series, v0: str, v1: str, m: Margins) -> pd.Series:
    """The estimated count fell below the regional trend by max(min_loss, loss_z SE), and fell (log scale).

    The first condition is :class:`risk.outcomes.low_income_loss.LowIncomeLoss`'s test (log-change
    against the regional trend, margin max(-log(1 - min_loss), z SE)): the tract
    did not just move with the region. The second keeps UDP's meaning of "lost
    low-income households": the count itself declined. The regional trend is the
    change of the total over tracts with both counts positive; a zero count has no
    log change and counts as no loss (LowIncomeLoss leaves it unlabelled).
    """
    a0, a1 = _arr(c0), _arr(c1)
    both = (a0 > 0) & (a1 > 0)
    trend = float(np.log(a1[both].sum() / a0[both].sum())) if both.any() else 0.0
    change = _log(a1) - _log(a0)
    se = np.sqrt(m.count_variance(a0, v0) / np.maximum(a0, 1) ** 2 + m.count_variance(a1, v1) / np.maximum(a1, 1) ** 2)
    margin = np.maximum(-np.log(1 - m.min_loss), m.loss_z * se)
    return pd.Series((change - trend < -margin) & (change < 0), index=c0.index)
