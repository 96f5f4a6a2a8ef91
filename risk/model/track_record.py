"""The model's track record in one plain sentence, for the e-mails and the tract page.

From the backtest figures a registered model carries (:func:`risk.model.training.train_and_register` writes
them into its metadata): how much more often the tracts it ranked in its top tenth saw the outcome than the
other tracts, and the same for the best simple ranking and the UDP typology. With the recall ``r`` of the top
tenth, the top tenth's rate over the other nine tenths' is ``9 r / (1 - r)``; no other figure is needed.
"""

from __future__ import annotations

from typing import Any

from risk.model.baselines import BASELINES

_EVENTS = {"eviction_surge": "eviction-filing surges", "low_income_loss": "losses of low-income households",
           "typology_transition": "moves to a more advanced displacement stage"}
_RANKINGS = {"logistic": "a logistic regression on the same indicators",
             "persistence": "each tract's own recent change", "mean_reversion": "each tract's long-run level against "
             "its recent one", "low_income_share": "the share of low-income households",
             "udp_typology": "the Urban Displacement Project's typology"}
_LEVEL = 0.1
"""Relative difference under which two lifts are 'about as well'."""


def lift(recall: float | None) -> float | None:
    """How many times the top tenth's rate is the other tracts' rate, from the top tenth's recall."""
    if recall is None or not 0 < recall < 1:
        return None
    return 9 * recall / (1 - recall)


def track_record(metadata: dict[str, Any]) -> str:
    """One sentence on how the model did in its backtest against the best simple ranking and the UDP typology;
    says so when the model was never backtested (its scores are unvalidated)."""
    models = metadata.get("backtest") or {}
    origins = metadata.get("backtest_origins") or []
    events = _EVENTS.get(str(metadata.get("outcome")), "the outcome")
    own = lift((models.get("lightgbm") or {}).get("recall_at_10pct"))
    if own is None or not origins:
        return (f"Unvalidated: this model's ranking of {events} has not been tested on past years, so treat its "
                "flags as pointers for review, not evidence.")
    years = f"{origins[0]}" if len(origins) == 1 else f"{origins[0]}-{origins[-1]}"
    text = (f"In tests on {years}, the tracts this model ranked in its top tenth had {own:.1f} times the rate of "
            f"{events} of the other tracts")
    simple = {m: lift((models.get(m) or {}).get("recall_at_10pct")) for m in BASELINES if m != "udp_typology"}
    simple = {m: v for m, v in simple.items() if v is not None}
    if simple:
        best = max(simple, key=lambda m: simple[m])
        text += f"; ranking by {_RANKINGS.get(best, best)} {_compared(own, simple[best])}"
    udp = lift((models.get("udp_typology") or {}).get("recall_at_10pct"))
    if udp is not None:
        text += f", and ranking by the UDP typology {_compared(own, udp)}"
    return text + "."


def _compared(own: float, other: float) -> str:
    if abs(other - own) <= _LEVEL * own:
        return f"did about as well ({other:.1f} times)"
    return f"did {'better' if other > own else 'less well'} ({other:.1f} times)"
