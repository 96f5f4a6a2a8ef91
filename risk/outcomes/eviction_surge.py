"""`eviction_surge`: a statistically supported rise of a tract's eviction filings against the county."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
from scipy import stats

from risk.core.errors import OutcomeError
from risk.core.settings import EvictionSurgeSettings
from risk.outcomes.base import Origin
from risk.sources import Sources

RECENT_YEARS = 3
"""'Recent' for the naive rankings: the last three published years."""


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
        if not complete.any() or b[complete].sum() == 0:  # no tract with both windows: nothing can be labelled
            k = float("nan")
        else:
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
