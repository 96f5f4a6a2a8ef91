"""The outcome registry: every outcome the system can label, each declared once.

An :class:`OutcomeSpec` says what the rest of the system needs to know about one outcome: its name, how to
build it from the settings, which settings section its labels are computed with, which source tables it reads,
whether it can be backtested and trained, and its null check. The places that used to name the outcomes one by
one (the CLI's ``--outcome`` choices, the work-cache key of a label, the backtest's minimum of training origins,
the behaviour fingerprint) read this registry instead.

Adding an outcome touches three files: its own module in this package (a class with the
:class:`~risk.outcomes.base.Outcome` methods and ``name``/``reads`` attributes), its :class:`OutcomeSpec` in
:data:`REGISTRY` below, and :mod:`risk.core.settings` (its name in ``OutcomeName`` and, if it has settings, its
section under ``ModelSettings``). Settings cannot import this stage, so the names are declared there too; this
module refuses to load when the two lists differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from risk.core.errors import OutcomeError
from risk.core.settings import OUTCOME_NAMES as SETTINGS_NAMES
from risk.core.settings import Settings
from risk.outcomes.base import Outcome
from risk.outcomes.eviction_surge import EvictionSurge
from risk.outcomes.labels import NULL_CHECK_RATIO
from risk.outcomes.low_income_loss import LowIncomeLoss
from risk.outcomes.typology_transition import TypologyTransition

Section = Callable[[Settings], BaseModel]


@dataclass(frozen=True)
class OutcomeSpec:
    """One outcome, as the rest of the system sees it."""

    name: str
    summary: str
    """One line for help texts (the built outcome's ``description`` also names its configured thresholds)."""
    make: Callable[[Settings], Outcome]
    """Builds the outcome from the whole configuration."""
    reads: tuple[str, ...]
    """The source tables its labels and null worlds read (:func:`~risk.outcomes.labels.label_view` keeps only
    these): its class's ``reads``."""
    section: Section | None = None
    """Its own settings section (``model.<name>``); None when it has none."""
    borrows: tuple[Section, ...] = ()
    """Other settings sections its labels are computed with (typology_transition: low_income_loss's noise model)."""
    backtest: bool = True
    """Whether the configured data give it test origins, so it can be backtested and trained (typology_transition
    has one origin: it is labelled and null-checked, not backtested)."""
    null_ratio: float = NULL_CHECK_RATIO
    """Its null check: the no-change worlds' positive rate may be at most this share of the observed rate."""

    def settings(self, settings: Settings) -> BaseModel | None:
        """Its own settings section, or None."""
        return None if self.section is None else self.section(settings)

    def label_settings(self, settings: Settings) -> list[object]:
        """Every settings section its labels are computed with, as JSON: a cached label is valid only for these."""
        sections = [*([self.section] if self.section else []), *self.borrows]
        return [section(settings).model_dump(mode="json") for section in sections]

    def min_train_origins(self, settings: Settings) -> int:
        """The closed training origins a test origin needs (its section's ``min_train_origins``, else 1)."""
        return int(getattr(self.settings(settings), "min_train_origins", 1))


def _eviction_surge(settings: Settings) -> Outcome:
    # the label is known when the window's last yearly count is published, so the lag moves every origin
    lag = settings.sources.evictions.available_after_days if settings.sources.evictions else 0
    return EvictionSurge(settings.model.eviction_surge, lag)


REGISTRY: dict[str, OutcomeSpec] = {spec.name: spec for spec in (
    OutcomeSpec(
        name=EvictionSurge.name, reads=EvictionSurge.reads, make=_eviction_surge,
        summary="a statistically supported rise of a tract's eviction filings against the county",
        section=lambda s: s.model.eviction_surge),
    OutcomeSpec(
        name=LowIncomeLoss.name, reads=LowIncomeLoss.reads, make=lambda s: LowIncomeLoss(s.model.low_income_loss),
        summary="low-income households fell by more than the regional trend and the sampling noise",
        section=lambda s: s.model.low_income_loss),
    OutcomeSpec(
        name=TypologyTransition.name, reads=TypologyTransition.reads, make=TypologyTransition,
        summary="the tract entered a UDP displacement or gentrification category, beyond survey noise",
        borrows=(lambda s: s.model.low_income_loss,), backtest=False),
)}
"""Every outcome by name, in the order of ``OutcomeName`` in :mod:`risk.core.settings`."""

OUTCOMES: tuple[OutcomeSpec, ...] = tuple(REGISTRY.values())
OUTCOME_NAMES: tuple[str, ...] = tuple(REGISTRY)
if OUTCOME_NAMES != SETTINGS_NAMES:  # not an assert: it must hold under python -O too
    raise ImportError(f"the outcome registry {OUTCOME_NAMES} and risk.core.settings.OutcomeName {SETTINGS_NAMES} "
                      "must name the same outcomes in the same order")


def outcome_spec(name: str) -> OutcomeSpec:
    """The registered outcome called ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise OutcomeError(f"unknown outcome '{name}'") from None


def outcome_for(name: str, settings: Settings) -> Outcome:
    """The outcome object for a configured name."""
    return outcome_spec(name).make(settings)
