"""Outcome labels: the only code allowed to look past the as-of date.

Each outcome says which origins it can label, the as-of date of each origin
(when its features are built) and the date its outcome window closes (when
the label becomes known, so a backtest may train on it). Every outcome can
simulate a world in which nothing changes (Poisson resampling of counts,
survey sampling noise for estimates) and report how often it still fires:
the null check requires that rate to be at most a quarter of the observed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
from scipy import stats

from risk.core.settings import EvictionSurgeSettings, LowIncomeLossSettings, Settings
from risk.outcomes.base import Origin, Outcome, OutcomeError
from risk.sources import Sources

NULL_CHECK_RATIO = 0.25
RECENT_YEARS = 3
"""'Recent' for the naive rankings: the last three published years."""


# ---------------------------------------------------------------- eviction_surge


class EvictionSurge:
    """A statistically supported rise in eviction filings over (t, t+h] against the county trend.

    Yearly filings in the window (O over h years) are compared with the baseline
    years up to t (B over nb years). If the tract moved with the county (whose
    yearly filings changed by k), then given n = B + O, O has mean n*p0 with
    p0 = h*k / (nb + h*k): a conditional test of two rates that needs no estimate
    of the tract's true level, so a quiet baseline is not by itself a surge. Yearly
    counts are negative binomial, var = mu + mu^2/r, the size r measured from
    consecutive-year differences of the baseline years: year-to-year noise grows
    faster than the count (a big tract's filings jump by more than Poisson), while
    a slow trend is what the label is after, not noise. Positive when the one-sided
    p-value is below ``alpha`` and the tract's yearly filings rose ``min_rise``
    more than the county's. Eligibility uses only what is known at t: complete
    counts, renter households and baseline filings.
    """

    name = "eviction_surge"
    reads = ("evictions", "demographics")

    def __init__(self, cfg: EvictionSurgeSettings, available_after_days: int) -> None:
        self.cfg = cfg
        self.lag = timedelta(days=available_after_days)
        self.description = (
            f"eviction filing rate over the {cfg.horizon_years} years after the origin rose significantly "
            f"(p < {cfg.alpha}, negative binomial year-to-year noise) and at least {cfg.min_rise:.0%} more than "
            f"the county's, against the {cfg.baseline_years} years up to it; tracts with >= "
            f"{cfg.min_renter_households} renter households and >= {cfg.min_filings} filings")

    def _year_end(self, year: int) -> date:
        return date(year, 12, 31) + self.lag

    def _counts(self, sources: Sources) -> pd.DataFrame:
        ev = sources.evictions
        if ev is None or ev.empty:
            raise OutcomeError("eviction_surge needs sources.evictions")
        return ev.pivot_table(index="geoid", columns="year", values="filings", aggfunc="sum")

    def _renters(self, sources: Sources, origin: Origin) -> pd.Series:
        """The newest census renter count released by the time the label is known.

        Eviction Lab's yearly counts lean on censuses released years later; the
        label must be computable at ``origin.closes`` so that training on it is
        honest. With one count for both periods, exposure is renters x years.
        """
        d = sources.demographics
        rows = d[(d["measure"] == "renter_households") & (d["released"] <= pd.Timestamp(origin.closes))]
        return rows.sort_values(["geoid", "released", "vintage"]).groupby("geoid")["value"].last()

    def origins(self, sources: Sources) -> list[Origin]:
        f = self._counts(sources)
        last = int(max(f.columns))
        h = self.cfg.horizon_years
        return [Origin(t, self._year_end(t), self._year_end(t + h)) for t in range(self.cfg.first_origin, last - h + 1)]

    def _windows(self, t: int) -> tuple[list[int], list[int]]:
        base = list(range(t - self.cfg.baseline_years + 1, t + 1))
        return base, list(range(t + 1, t + self.cfg.horizon_years + 1))

    @staticmethod
    def _pattern(f: pd.DataFrame, years: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Counts of tracts with at least 5 filings in ``years`` and the county's share of each year."""
        counts = f[years].dropna()
        counts = counts[counts.sum(axis=1) >= 5]
        return counts.to_numpy(dtype="float64"), (counts.sum() / max(counts.to_numpy().sum(), 1)).to_numpy()

    @staticmethod
    def _size(excess: float, mu2: float) -> float:
        return float(mu2 / excess) if excess > 0 and mu2 > 0 else float("inf")

    @classmethod
    def noise_size(cls, f: pd.DataFrame, years: list[int]) -> float:
        """Negative binomial size r of year-to-year noise, from consecutive-year differences.

        With mu_t = s * mu_{t-1} (the county's year pattern), x_t - s * x_{t-1} has
        mean 0 and variance (1 + s) * mu_t + 2 * mu_t^2 / r: a slow trend barely
        moves a difference, so it is not counted as noise. King County: r about 55.
        """
        x, share = cls._pattern(f, years)
        if x.shape[1] < 2:
            return float("inf")
        s = share[1:] / np.where(share[:-1] > 0, share[:-1], np.nan)
        mu = x.sum(axis=1, keepdims=True) * share[1:]
        d = x[:, 1:] - s * x[:, :-1]
        return cls._size(float(np.nansum(d ** 2 - (1 + s) * mu)), float(np.nansum(2 * mu ** 2)))

    @classmethod
    def level_size(cls, f: pd.DataFrame, years: list[int]) -> float:
        """Negative binomial size r around each tract's flat level: slow trends count as noise too (r about 30)."""
        x, share = cls._pattern(f, years)
        if x.shape[1] < 2:
            return float("inf")
        mu = x.sum(axis=1, keepdims=True) * share
        dof = x.shape[1] / (x.shape[1] - 1)  # each tract's level is estimated from the same years
        return cls._size(float(((x - mu) ** 2 * dof - mu).sum()), float((mu ** 2).sum()))

    def _label(self, f: pd.DataFrame, renters: pd.Series, t: int) -> pd.DataFrame:
        base, window = self._windows(t)
        nb, h = len(base), len(window)
        complete = f.reindex(columns=base + window).notna().all(axis=1) & renters.reindex(f.index).notna()
        b, o = f[base].sum(axis=1), f[window].sum(axis=1)
        k = (o[complete].sum() / h) / (b[complete].sum() / nb)  # the county's change of yearly filings
        n = b + o
        p0 = h * k / (nb + h * k)
        r = self.noise_size(f[complete], base)
        # negative binomial years widen the binomial variance by 1 + (expected yearly window count) / r
        phi = 1 + k * (n / (nb + h * k)) / r
        z = (o - n * p0) / np.sqrt(phi * n * p0 * (1 - p0)).where(n > 0)
        p_value = pd.Series(stats.norm.sf(z), index=f.index)
        ratio = (o / h) / (b / nb).where(b > 0)
        rent = renters.reindex(f.index)
        eligible = complete & (rent >= self.cfg.min_renter_households) & (b >= self.cfg.min_filings)
        y = (p_value < self.cfg.alpha) & (ratio > k * (1 + self.cfg.min_rise))
        out = pd.DataFrame({"y": y.astype(int), "baseline_rate": 100 * b / nb / rent, "window_rate": 100 * o / h / rent,
                            "rate_ratio": ratio, "county_ratio": k, "noise_size": r, "p_value": p_value})
        return out[eligible]

    def label(self, sources: Sources, origin: Origin) -> pd.DataFrame:
        return self._label(self._counts(sources), self._renters(sources, origin), origin.year)

    def null_rate(self, sources: Sources, origin: Origin, rng: np.random.Generator, n: int) -> float:
        f = self._counts(sources)
        renters = self._renters(sources, origin)
        base, window = self._windows(origin.year)
        years = base + window
        # the stricter world: every departure from a flat level in the baseline years is noise
        r = self.level_size(f, base)
        complete = f[years].dropna()
        # each tract keeps its own level and follows the county's year pattern exactly
        pattern = complete.sum() / complete.to_numpy().sum()
        mu = np.outer(f[years].sum(axis=1).fillna(0), pattern)
        rates = []
        for _ in range(n):
            lam = rng.gamma(r, np.where(mu > 0, mu, 0) / r) if np.isfinite(r) else mu
            sim = f.copy()
            sim[years] = rng.poisson(lam)
            lab = self._label(sim, renters, origin.year)
            rates.append(lab["y"].mean() if len(lab) else 0.0)
        return float(np.mean(rates))

    def _known_counts(self, sources: Sources, origin: Origin) -> pd.DataFrame:
        f = self._counts(sources)
        return f[[c for c in f.columns if c <= origin.year]]

    def persistence(self, sources: Sources, origin: Origin) -> pd.Series:
        """Log ratio of filings in the last h years to the baseline before them, against the county."""
        f = self._known_counts(sources, origin)
        h, t = self.cfg.horizon_years, origin.year
        recent = f.reindex(columns=range(t - h + 1, t + 1)).mean(axis=1)
        before = f.reindex(columns=range(t - h - RECENT_YEARS + 1, t - h + 1)).mean(axis=1)
        score = np.log((recent + 0.5) / (before + 0.5))
        return score - np.log((recent.sum() + 0.5) / (before.sum() + 0.5))

    def mean_reversion(self, sources: Sources, origin: Origin) -> pd.Series:
        """Log ratio of the long-run yearly filings (every known year) to the last three years'."""
        f = self._known_counts(sources, origin)
        recent = f.reindex(columns=range(origin.year - RECENT_YEARS + 1, origin.year + 1))
        return np.log((f.mean(axis=1) + 0.5) / (recent.mean(axis=1) + 0.5))


# ---------------------------------------------------------------- low_income_loss


def _vintage_year(suffix: str) -> int:
    year = int(suffix)
    return year + (1900 if year >= 50 else 2000)


class LowIncomeLoss:
    """Low-income households (under 80% of the regional median income) fell between vintages.

    Among tracts whose low-income share at t was at or above the median tract's
    (the Urban Displacement Project's vulnerable tracts), positive when the
    relative change of the low-income household count from vintage t to the
    next falls below the regional change by more than ``min_loss`` and by more
    than ``z`` standard errors of the two survey estimates.
    """

    name = "low_income_loss"
    reads = ("demographics",)

    def __init__(self, cfg: LowIncomeLossSettings) -> None:
        self.cfg = cfg
        self.description = (
            f"low-income households fell at least {cfg.min_loss:.0%} and {cfg.z} standard errors more than the "
            "region's between two demographic vintages, among tracts with an at-or-above-median low-income share")

    def _vintages(self, sources: Sources) -> list[tuple[str, int, date]]:
        d = sources.demographics
        rows = d[d["measure"] == "low_income_households"]
        found = []
        for vintage, group in rows.groupby("vintage"):
            suffix = self._suffix(str(vintage))
            found.append((str(vintage), _vintage_year(suffix), group["released"].iloc[0].date()))
        if len(found) < 2:
            raise OutcomeError("low_income_loss needs low-income household counts in at least two vintages")
        return sorted(found, key=lambda v: v[1])

    @staticmethod
    def _suffix(label: str) -> str:
        digits = [w for w in label.replace("-", " ").split() if w.isdigit()]
        return digits[-1][-2:] if digits else "00"

    def origins(self, sources: Sources) -> list[Origin]:
        v = self._vintages(sources)
        return [Origin(a[1], a[2], b[2]) for a, b in zip(v, v[1:])]

    def _pair(self, sources: Sources, origin: Origin) -> tuple[str, str]:
        v = self._vintages(sources)
        i = [x[1] for x in v].index(origin.year)
        return v[i][0], v[i + 1][0]

    def _measure(self, sources: Sources, vintage: str, measure: str) -> pd.Series:
        d = sources.demographics
        rows = d[(d["vintage"] == vintage) & (d["measure"] == measure)]
        return rows.set_index("geoid")["value"]

    def _variance(self, count: pd.Series, vintage: str) -> pd.Series:
        f = self.cfg.sample_fractions.get(self._suffix(vintage), 0.08)
        return count.clip(lower=1) * (1 - f) / f * self.cfg.design_effect

    def _label(self, li0: pd.Series, li1: pd.Series, share0: pd.Series, v0: str, v1: str) -> pd.DataFrame:
        # on the log scale the sampling noise of a ratio is symmetric (delta method)
        both = (li0 > 0) & (li1 > 0)
        trend = np.log(li1[both].sum() / li0[both].sum())
        change = np.log(li1.where(li1 > 0) / li0.where(li0 > 0))
        se = np.sqrt(self._variance(li0, v0) / li0.clip(lower=1) ** 2 + self._variance(li1, v1) / li1.clip(lower=1) ** 2)
        margin = np.maximum(-np.log(1 - self.cfg.min_loss), self.cfg.z * se)
        vulnerable = share0.reindex(li0.index) >= share0.median()
        eligible = both & vulnerable.fillna(False) & (li0 >= self.cfg.min_households)
        y = change - trend < -margin
        out = pd.DataFrame({"y": y.astype(int), "change": np.expm1(change), "regional_change": np.expm1(trend),
                            "margin": margin, "households_t": li0, "households_t_h": li1})
        return out[eligible]

    def label(self, sources: Sources, origin: Origin) -> pd.DataFrame:
        v0, v1 = self._pair(sources, origin)
        li0 = self._measure(sources, v0, "low_income_households")
        li1 = self._measure(sources, v1, "low_income_households").reindex(li0.index)
        return self._label(li0, li1, self._measure(sources, v0, "low_income_share"), v0, v1)

    def null_rate(self, sources: Sources, origin: Origin, rng: np.random.Generator, n: int) -> float:
        v0, v1 = self._pair(sources, origin)
        li0 = self._measure(sources, v0, "low_income_households")
        li1 = self._measure(sources, v1, "low_income_households").reindex(li0.index)
        share0 = self._measure(sources, v0, "low_income_share")
        trend = li1.sum() / li0.sum() - 1
        expected = li0 * (1 + trend)
        rates = []
        for _ in range(n):
            # both estimates drawn around a world where every tract follows the region exactly
            s0 = (li0 + rng.normal(0, np.sqrt(self._variance(li0, v0)))).clip(lower=0)
            s1 = (expected + rng.normal(0, np.sqrt(self._variance(expected, v1)))).clip(lower=0)
            lab = self._label(s0, s1, share0, v0, v1)
            rates.append(lab["y"].mean() if len(lab) else 0.0)
        return float(np.mean(rates))

    def _previous_change(self, sources: Sources, origin: Origin) -> pd.Series | None:
        v = self._vintages(sources)
        i = [x[1] for x in v].index(origin.year)
        if i == 0:
            return None
        prev = self._measure(sources, v[i - 1][0], "low_income_households")
        now = self._measure(sources, v[i][0], "low_income_households")
        change = now / prev.where(prev > 0) - 1
        return change - (now.sum() / prev.sum() - 1)

    def persistence(self, sources: Sources, origin: Origin) -> pd.Series | None:
        """The previous inter-vintage loss against the region (a bigger past loss ranks higher)."""
        change = self._previous_change(sources, origin)
        return None if change is None else -change

    def mean_reversion(self, sources: Sources, origin: Origin) -> pd.Series | None:
        """The previous inter-vintage gain (tracts that gained low-income households give some back)."""
        return self._previous_change(sources, origin)


def outcome_for(name: str, settings: Settings) -> Outcome:
    """The outcome object for a configured name."""
    if name == "eviction_surge":
        lag = settings.sources.evictions.available_after_days if settings.sources.evictions else 0
        return EvictionSurge(settings.model.eviction_surge, lag)
    if name == "low_income_loss":
        return LowIncomeLoss(settings.model.low_income_loss)
    if name == "typology_transition":
        from risk.outcomes.typology_transition import TypologyTransition

        return TypologyTransition(settings)
    raise OutcomeError(f"unknown outcome '{name}'")


@dataclass(frozen=True)
class OriginCounts:
    """Positives, negatives and the simulated null rate of one origin."""

    origin: Origin
    positives: int
    negatives: int
    null_rate: float

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
        lab = outcome.label(view, origin)
        pos = int(lab["y"].sum())
        rows.append(OriginCounts(origin, pos, len(lab) - pos, origin_null_rate(outcome, view, origin, n_null, seed)))
    return rows


def null_check(rows: list[OriginCounts]) -> tuple[float, float, bool]:
    """Pooled observed rate, pooled null rate, and whether null <= a quarter of observed."""
    total = sum(r.positives + r.negatives for r in rows)
    observed = sum(r.positives for r in rows) / total if total else float("nan")
    null = sum(r.null_rate * (r.positives + r.negatives) for r in rows) / total if total else float("nan")
    return observed, null, bool(null <= NULL_CHECK_RATIO * observed)
