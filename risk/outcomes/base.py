"""What an outcome is: its origins in time and the protocol every outcome offers the backtest (its error,
:class:`~risk.core.errors.OutcomeError`, is defined with every other error in :mod:`risk.core.errors`).

Kept apart from :mod:`risk.outcomes.registry` so that each outcome, defined in its own module, depends on
this contract, not on the module that lists every outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

import numpy as np
import pandas as pd

from risk.sources import Sources


@dataclass(frozen=True)
class Origin:
    """One point in time: features are built at ``as_of``, the outcome is known at ``closes``."""

    year: int
    as_of: date
    closes: date


class Outcome(Protocol):
    """What every outcome offers the backtest."""

    name: str
    description: str
    reads: tuple[str, ...]
    """The dated source tables its labels and null worlds read (the view they get holds only these)."""

    def origins(self, sources: Sources) -> list[Origin]:
        """Origins whose outcome window lies inside the data."""
        ...

    def label(self, sources: Sources, origin: Origin) -> pd.DataFrame:
        """Eligible tracts (index geoid) with column ``y`` (0/1) and diagnostics."""
        ...

    def null_rate(self, sources: Sources, origin: Origin, rng: np.random.Generator, n: int) -> float:
        """Mean positive rate over ``n`` simulated no-change worlds."""
        ...

    def persistence(self, sources: Sources, origin: Origin) -> pd.Series | None:
        """The tract's recent value of the outcome's own measure, known at ``as_of`` (higher = riskier)."""
        ...

    def mean_reversion(self, sources: Sources, origin: Origin) -> pd.Series | None:
        """Long-run level against recent level, known at ``as_of`` (higher = expected to rise)."""
        ...
