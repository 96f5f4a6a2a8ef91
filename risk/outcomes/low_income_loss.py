"""`low_income_loss`: low-income households fell by more than the regional trend and the sampling noise."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from risk.core.errors import OutcomeError
from risk.core.settings import DEFAULT_SAMPLE_FRACTION, LowIncomeLossSettings
from risk.outcomes.base import Origin
from risk.sources import Sources


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
        f = self.cfg.sample_fractions.get(self._suffix(vintage), DEFAULT_SAMPLE_FRACTION)
        return count.clip(lower=1) * (1 - f) / f * self.cfg.design_effect

    def _label(self, li0: pd.Series, li1: pd.Series, share0: pd.Series, v0: str, v1: str) -> pd.DataFrame:
        # on the log scale the sampling noise of a ratio is symmetric (delta method)
        both = (li0 > 0) & (li1 > 0)
        with np.errstate(invalid="ignore", divide="ignore"):  # no tract counted in both vintages: no trend, no label
            trend = np.log(li1[both].sum() / li0[both].sum()) if both.any() else float("nan")
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
