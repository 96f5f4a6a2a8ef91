"""The choice of the model's features and prior in a pooled backtest, by a rule fixed before the test origins.

The candidates are tried on the earlier (development) half of the test origins; the rule in
:data:`CHOICE_RULE` picks one; every headline figure then comes from the later (held-out) half, and every
candidate's figures on both halves are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from risk.core.settings import Settings
from risk.features.dictionary import BY_NAME, model_feature_names
from risk.model.cases import Case, Progress, Ranks, pairs_for, pr_auc, predictions
from risk.outcomes.base import Outcome

CANDIDATES = ("own_history", "history_and_market", "all_features", "all_features_from_history")
"""Candidates tried, simplest first: the outcome's own family alone; plus rents and permits; every feature; every
feature with the trees boosted from a prior fitted on the outcome's own family alone (the trees start from that
baseline's score and learn only what the other features add)."""
CHOICE_RULE = ("the candidate with the highest pooled LightGBM PR-AUC on the development origins; a simpler "
               "candidate within 0.005 of it is preferred")
CHOICE_TOLERANCE = 0.005
MARKET = ("rent", "permits")


@dataclass
class Candidate:
    """One feature set's pooled LightGBM PR-AUC on the development and the held-out origins."""

    name: str
    features: list[str]
    dev_pr_auc: float | None
    test_pr_auc: float | None
    prior: list[str] | None = None
    """The columns of the trees' logistic prior when not every feature (boosting from a baseline's score)."""


def candidate_features(outcome: Outcome, spatial_lags: bool) -> dict[str, list[str]]:
    """The model columns of each candidate."""
    every = model_feature_names(spatial_lags)
    own = {outcome.reads[0], "coverage"}
    return {"own_history": [f for f in every if BY_NAME[f].family in own],
            "history_and_market": [f for f in every if BY_NAME[f].family in own | set(MARKET)],
            "all_features": every, "all_features_from_history": every}


def candidate_priors(outcome: Outcome, spatial_lags: bool) -> dict[str, list[str] | None]:
    """The columns of each candidate's prior; None: every model column (the default prior)."""
    history = candidate_features(outcome, spatial_lags)["own_history"]
    return {name: (history if name == "all_features_from_history" else None) for name in CANDIDATES}


def choose(cases: list[Case], minimum: int, outcome: Outcome, settings: Settings, ranks: Ranks,
            progress: Progress | None) -> tuple[str, list[Candidate], list[int], list[int], str]:
    """The feature set, chosen on the development origins only; every candidate's figures."""
    pairs = pairs_for(cases, minimum, lambda c: cases)
    years = sorted({t.data.origin.year for t, _ in pairs})
    sets = candidate_features(outcome, settings.features.spatial_lags)
    priors = candidate_priors(outcome, settings.features.spatial_lags)
    if len(years) < 2:
        note = (f"one test origin ({years}) leaves no development origin to choose on: every feature is used")
        return "all_features", [Candidate(n, f, None, None, priors[n]) for n, f in sets.items()], [], years, note
    dev = years[: len(years) // 2]
    held = years[len(years) // 2:]
    seed = settings.model.seed
    results = []
    for name, features in sets.items():
        dev_preds = predictions([p for p in pairs if p[0].data.origin.year in dev], features, seed, ranks, False,
                         progress, f"candidate {name}: ", priors[name])
        results.append(Candidate(name, features, pr_auc(dev_preds), None, priors[name]))
    scored = [c for c in results if c.dev_pr_auc is not None]
    if not scored:
        return "all_features", results, dev, held, "no development origin has both classes: every feature is used"
    best = max(c.dev_pr_auc for c in scored)  # type: ignore[type-var]
    chosen = next(c for c in scored if c.dev_pr_auc >= best - CHOICE_TOLERANCE)  # type: ignore[operator]
    return chosen.name, results, dev, held, ""
