"""Backtest over several regions: pooled training, each region's figures, leave-one-region-out, model choice.

Every region keeps its own sources, so features compare a tract with its own
region and labels follow the region's own trend; only the training rows are
pooled. The feature set is chosen on the earlier (development) test origins by
the rule in :data:`CHOICE_RULE`, written down here before any test origin is
scored, and every headline figure comes from the later (held-out) origins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit

from risk.core.errors import BacktestError, OutcomeError
from risk.core.settings import Settings
from risk.features.dictionary import BY_NAME, model_feature_names
from risk.model.backtest import (
    MODELS,
    Backtest,
    OriginData,
    build_panel,
    why_unsupported,
)
from risk.model.baselines import (
    BASELINES,
    RANK_BASELINES,
    calibrate_rank,
    rank_functions,
)
from risk.model.gbm import LinearPrior, TrainingRows, train
from risk.model.metrics import (
    bootstrap,
    calibration_table,
    lead_times,
    model_metrics,
    per_origin,
)
from risk.outcomes.base import Outcome
from risk.outcomes.labels import OriginCounts, label_view, null_check, origin_null_rate
from risk.outcomes.registry import outcome_for, outcome_spec
from risk.sources import Sources

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

CANDIDATES = ("own_history", "history_and_market", "all_features", "all_features_from_history")
"""Candidates tried, simplest first: the outcome's own family alone; plus rents and permits; every feature; every
feature with the trees boosted from a prior fitted on the outcome's own family alone (the trees start from that
baseline's score and learn only what the other features add)."""
CHOICE_RULE = ("the candidate with the highest pooled LightGBM PR-AUC on the development origins; a simpler "
               "candidate within 0.005 of it is preferred")
CHOICE_TOLERANCE = 0.005
MARKET = ("rent", "permits")


@dataclass(frozen=True)
class RegionInput:
    """One region's settings and validated sources."""

    name: str
    settings: Settings
    sources: Sources


@dataclass
class _Case:
    """One region's origin: its features and labels."""

    region: str
    data: OriginData


@dataclass
class RegionFigures:
    """What one region's rows show (``None`` figures carry their reason in ``note``)."""

    n_tracts: int
    n_positive: int
    null_check: dict[str, object] | None
    models: dict[str, dict[str, object] | None] | None
    vs_best: dict[str, object] | None
    vs_udp: dict[str, object] | None
    note: str = ""

    def to_json(self) -> dict[str, object]:
        """The region's entry of ``regions`` in `risk backtest --json`."""
        return {"n_tracts": self.n_tracts, "n_positive": self.n_positive, "null_check": self.null_check,
                "models": self.models, "lightgbm_vs_best_baseline": self.vs_best,
                "lightgbm_vs_udp_typology": self.vs_udp, "note": self.note or None}


@dataclass
class Candidate:
    """One feature set's pooled LightGBM PR-AUC on the development and the held-out origins."""

    name: str
    features: list[str]
    dev_pr_auc: float | None
    test_pr_auc: float | None
    prior: list[str] | None = None
    """The columns of the trees' logistic prior when not every feature (boosting from a baseline's score)."""


@dataclass
class PooledExtras:
    """What a pooled backtest adds to :class:`~risk.model.backtest.Backtest`."""

    regions: dict[str, RegionFigures] = field(default_factory=dict)
    loro: dict[str, object] | None = None
    loro_note: str = ""
    candidates: list[Candidate] = field(default_factory=list)
    chosen: str = "all_features"
    dev_origins: list[int] = field(default_factory=list)
    choice_note: str = ""
    baseline_gaps: dict[str, list[str]] = field(default_factory=dict)
    """Baselines some regions could not compute (their tracts ranked in the middle), by baseline."""
    excluded: dict[str, str] = field(default_factory=dict)
    """Regions left out of training and judging, with the reason."""

    def to_json(self) -> dict[str, object]:
        """The keys a pooled backtest adds to `risk backtest --json`."""
        return {
            "regions": {name: fig.to_json() for name, fig in self.regions.items()},
            "leave_one_region_out": self.loro, "leave_one_region_out_note": self.loro_note or None,
            "model_choice": {
                "rule": CHOICE_RULE, "development_origins": self.dev_origins, "chosen": self.chosen,
                "note": self.choice_note,
                "candidates": {c.name: {"features": len(c.features),
                                        "prior_features": len(c.prior) if c.prior else len(c.features),
                                        "development_pr_auc": c.dev_pr_auc,
                                        "test_pr_auc": c.test_pr_auc} for c in self.candidates}}}


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


def _panels(name: str, regions: list[RegionInput], progress: Progress | None
            ) -> tuple[dict[str, list[OriginData]], dict[str, Outcome], dict[str, str]]:
    """Each region's origins; a region whose outcome cannot be labelled is left out with its reason."""
    panels, outcomes, missing = {}, {}, {}
    for r in regions:
        outcome = outcome_for(name, r.settings)
        try:
            if progress:
                progress(f"{r.name}: features and labels")
            panel = build_panel(outcome, r.sources, r.settings, None)
        except OutcomeError as e:
            missing[r.name] = f"no labels: {e}"
            continue
        if not panel:
            missing[r.name] = "no labels: no origin"
            continue
        panels[r.name], outcomes[r.name] = panel, outcome
    return panels, outcomes, missing


def _null_counts(outcome: Outcome, sources: Sources, panel: list[OriginData], settings: Settings
                 ) -> list[OriginCounts]:
    rows = []
    for d in panel:
        if not len(d.labels):
            continue
        view = label_view(outcome, sources, d.origin)
        null = origin_null_rate(outcome, view, d.origin, settings.model.null_simulations, settings.model.seed)
        positives = int(d.labels["y"].sum())
        rows.append(OriginCounts(d.origin, positives, len(d.labels) - positives, null))
    return rows


def _merged_rows(cases: list[_Case], features: list[str]) -> list[TrainingRows]:
    """One training block per origin year, every region's rows of that year together (the temporal scheme holds
    out the newest years, not one region's newest origin)."""
    by_year: dict[int, list[_Case]] = {}
    for c in cases:
        by_year.setdefault(c.data.origin.year, []).append(c)
    return [TrainingRows(year, pd.concat([c.data.X[features] for c in group]),
                         pd.concat([c.data.labels["y"] for c in group]))
            for year, group in sorted(by_year.items())]


def _merged_panel(cases: list[_Case]) -> list[OriginData]:
    """Every region's origins of a year as one, dated by the latest-closing of them: what the production model
    trains on (an origin counts as closed only once every region's window has closed)."""
    by_year: dict[int, list[_Case]] = {}
    for c in cases:
        by_year.setdefault(c.data.origin.year, []).append(c)
    return [OriginData(max((c.data.origin for c in group), key=lambda o: o.closes),
                       pd.concat([c.data.X for c in group]), pd.concat([c.data.labels for c in group]))
            for _, group in sorted(by_year.items())]


class _Ranks:
    """Each region's rank-baseline scores per origin, computed once."""

    def __init__(self, regions: dict[str, RegionInput], outcomes: dict[str, Outcome]) -> None:
        self.regions, self.fns = regions, {r: rank_functions(o) for r, o in outcomes.items()}
        self.memo: dict[tuple[str, str, int], pd.Series | None] = {}

    def score(self, model: str, case: _Case) -> pd.Series | None:
        key = (model, case.region, case.data.origin.year)
        if key not in self.memo:
            s = self.fns[case.region][model](self.regions[case.region].sources, case.data.origin)
            self.memo[key] = None if s is None else s.reindex(case.data.labels.index).astype("float64")
        return self.memo[key]


def _predict(tests: list[_Case], train_cases: list[_Case], features: list[str], seed: int, ranks: _Ranks,
             with_baselines: bool = True, prior: list[str] | None = None) -> pd.DataFrame:
    """Train once on ``train_cases`` (pooled), score every test case; baselines calibrated on the same rows."""
    rows = _merged_rows(train_cases, features)
    y_train = pd.concat([r.y for r in rows])
    if y_train.nunique() < 2:
        raise BacktestError(f"training rows for {sorted({t.data.origin.year for t in tests})} hold one class only")
    model = train(rows, features, seed, prior_features=prior)
    logistic = model.prior
    if with_baselines and prior:  # the logistic baseline is always fitted on every feature, as it is named
        logistic = LinearPrior.fit(pd.concat([r.X for r in rows]), y_train.to_numpy(), seed)
    parts = []
    for t in tests:
        out = pd.DataFrame({"region": t.region, "origin": t.data.origin.year, "as_of": t.data.origin.as_of,
                            "closes": t.data.origin.closes, "geoid": t.data.labels.index,
                            "y": t.data.labels["y"].to_numpy()})
        out["lightgbm"] = model.predict(t.data.X)
        if with_baselines:
            out["logistic"] = (expit(logistic(t.data.X[features])) if logistic is not None and logistic.columns
                               else np.nan)
            for name in RANK_BASELINES:
                out[name] = _rank_column(name, t, train_cases, ranks)
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def _rank_column(name: str, test: _Case, train_cases: list[_Case], ranks: _Ranks) -> np.ndarray:
    score = ranks.score(name, test)
    if score is None or score.isna().all():
        return np.full(len(test.data.labels), np.nan)
    score = score.fillna(score.median())  # a tract the baseline cannot score is ranked in the middle
    scores = [ranks.score(name, c) for c in train_cases]
    pairs = [(s, c.data.labels["y"]) for s, c in zip(scores, train_cases, strict=True) if s is not None]
    calibrator = calibrate_rank(pd.concat([s for s, _ in pairs], ignore_index=True),
                                pd.concat([y for _, y in pairs], ignore_index=True)) if pairs else None
    # without training scores to calibrate on, a region's percentile rank stands in (comparable across regions)
    return calibrator(score.to_numpy()) if calibrator else score.rank(pct=True).to_numpy()


def _tests(cases: list[_Case], minimum: int, pool: Callable[[_Case], list[_Case]]) -> list[tuple[_Case, list[_Case]]]:
    """Each test case with its training cases: closed by its as-of date, at least ``minimum`` origin years."""
    out = []
    for c in cases:
        train_cases = [d for d in pool(c) if d.data.origin.closes <= c.data.origin.as_of]
        if len({d.data.origin.year for d in train_cases}) >= minimum:
            out.append((c, train_cases))
    return out


def _run(pairs: list[tuple[_Case, list[_Case]]], features: list[str], seed: int, ranks: _Ranks,
         with_baselines: bool = True, progress: Progress | None = None, label: str = "",
         prior: list[str] | None = None) -> pd.DataFrame:
    """Predictions of every test case, training once per distinct training set."""
    groups: dict[tuple, tuple[list[_Case], list[_Case]]] = {}
    for test, train_cases in pairs:
        key = tuple(sorted((d.region, d.data.origin.year) for d in train_cases))
        groups.setdefault(key, ([], train_cases))[0].append(test)
    parts = []
    for tests, train_cases in groups.values():
        if progress:
            progress(f"{label}training on {len(train_cases)} region-origins, scoring "
                     f"{', '.join(sorted({f'{t.region} {t.data.origin.year}' for t in tests}))}")
        parts.append(_predict(tests, train_cases, features, seed, ranks, with_baselines, prior))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True).sort_values(["region", "origin", "geoid"], ignore_index=True)


def _fill_regions(preds: pd.DataFrame) -> dict[str, list[str]]:
    """A baseline some regions cannot compute (no demographics there) ranks those regions' tracts in the middle,
    so that every model is judged on the same rows; returns which regions each baseline could not score."""
    missing = {}
    for m in RANK_BASELINES:
        if m not in preds or preds[m].isna().all() or preds[m].notna().all():
            continue
        absent = preds[m].isna()
        missing[m] = sorted(preds.loc[absent, "region"].unique())
        preds[m] = preds[m].fillna(preds[m].median())
        preds[f"{m}_filled"] = absent
    return missing


def _pr_auc(preds: pd.DataFrame) -> float | None:
    if preds.empty or preds["y"].nunique() < 2:
        return None
    return float(model_metrics(preds, "lightgbm")["pr_auc"])


def _choose(cases: list[_Case], minimum: int, outcome: Outcome, settings: Settings, ranks: _Ranks,
            progress: Progress | None) -> tuple[str, list[Candidate], list[int], list[int], str]:
    """The feature set, chosen on the development origins only; every candidate's figures."""
    pairs = _tests(cases, minimum, lambda c: cases)
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
        dev_preds = _run([p for p in pairs if p[0].data.origin.year in dev], features, seed, ranks, False,
                         progress, f"candidate {name}: ", priors[name])
        results.append(Candidate(name, features, _pr_auc(dev_preds), None, priors[name]))
    scored = [c for c in results if c.dev_pr_auc is not None]
    if not scored:
        return "all_features", results, dev, held, "no development origin has both classes: every feature is used"
    best = max(c.dev_pr_auc for c in scored)  # type: ignore[type-var]
    chosen = next(c for c in scored if c.dev_pr_auc >= best - CHOICE_TOLERANCE)  # type: ignore[operator]
    return chosen.name, results, dev, held, ""


def _figures(preds: pd.DataFrame, settings: Settings, name: str) -> tuple[dict, dict, str, tuple, dict, dict]:
    """Metrics, intervals, best baseline and the two ratios of one set of predictions."""
    usable = [m for m in MODELS if m in preds and preds[m].notna().any()]
    metrics = {m: model_metrics(preds, m) for m in usable}
    if not metrics.get("lightgbm"):
        raise BacktestError(f"{name}: the test rows hold {int(preds['y'].sum())} positives of {len(preds)}")
    baselines = [m for m in BASELINES if m in usable and metrics.get(m)]
    if not baselines:
        raise BacktestError(f"{name}: no baseline could be scored on the test origins")
    best = max(baselines, key=lambda m: metrics[m]["pr_auc"])
    cis, ratio_ci = bootstrap(preds, usable, settings.model.bootstrap, settings.model.seed, "lightgbm", best)
    udp = {"ratio": None, "ci95": None}
    if "udp_typology" in usable and metrics["udp_typology"]["pr_auc"] > 0:
        _, udp_ci = bootstrap(preds, ["lightgbm", "udp_typology"], settings.model.bootstrap, settings.model.seed,
                              "lightgbm", "udp_typology")
        udp = {"ratio": metrics["lightgbm"]["pr_auc"] / metrics["udp_typology"]["pr_auc"], "ci95": list(udp_ci)}
    vs_best = {"baseline": best, "ratio": metrics["lightgbm"]["pr_auc"] / metrics[best]["pr_auc"],
               "ci95": list(ratio_ci)}
    return metrics, cis, best, ratio_ci, vs_best, udp


def _models_json(metrics: dict, cis: dict) -> dict[str, dict[str, object] | None]:
    return {m: None if m not in metrics else {
        "pr_auc": metrics[m]["pr_auc"], "roc_auc": metrics[m]["roc_auc"],
        "precision_at_10pct": metrics[m]["precision_at_10pct"], "recall_at_10pct": metrics[m]["recall_at_10pct"],
        "pr_auc_ci95": list(cis.get(m, (float("nan"),) * 2))} for m in MODELS}


def _region_figures(preds: pd.DataFrame, counts: dict[str, list[OriginCounts]], gate: dict[str, str],
                    missing: dict[str, str], regions: list[RegionInput], ratio: float, settings: Settings
                    ) -> dict[str, RegionFigures]:
    out = {}
    for r in regions:
        if r.name in missing:
            out[r.name] = RegionFigures(0, 0, None, None, None, None, missing[r.name])
            continue
        observed, null, ok = null_check(counts[r.name], ratio)
        check = {"observed": observed, "null": null, "passes": ok}
        rows = preds[preds["region"] == r.name] if not preds.empty else preds
        n_tracts, n_pos = (int(rows["geoid"].nunique()), int(rows["y"].sum())) if len(rows) else (0, 0)
        if r.name in gate:
            out[r.name] = RegionFigures(n_tracts, n_pos, check, None, None, None, gate[r.name])
            continue
        rows = rows.copy()
        for m in RANK_BASELINES:
            if f"{m}_filled" in rows and rows[f"{m}_filled"].all():
                rows[m] = np.nan  # the baseline could not score this region at all
        try:
            metrics, cis, _, _, vs_best, udp = _figures(rows, settings, r.name)
        except (BacktestError, KeyError) as e:
            out[r.name] = RegionFigures(n_tracts, n_pos, check, None, None, None,
                                        f"no figures on its own rows: {e}" if len(rows) else "no test rows")
            continue
        out[r.name] = RegionFigures(n_tracts, n_pos, check, _models_json(metrics, cis), vs_best, udp)
    return out


def run_pooled_backtest(settings: Settings, regions: list[RegionInput], outcome_name: str | None = None,
                        progress: Progress | None = None) -> Backtest:
    """Pooled, per-region and leave-one-region-out backtest of one outcome over several regions."""
    name = outcome_name or settings.model.outcome
    panels, outcomes, missing = _panels(name, regions, progress)
    spec = outcome_spec(name)
    counts = {r: _null_counts(outcomes[r], next(x for x in regions if x.name == r).sources, p,
                              settings) for r, p in panels.items()}
    for r, rows in list(counts.items()):
        if not sum(c.positives + c.negatives for c in rows):  # every label read data found broken
            why = "; ".join(dict.fromkeys(w for d in panels[r] for w in d.excluded))
            missing[r] = f"every label left out (broken source data): {why}"[:600]
            del counts[r], panels[r]
    gate = {}
    for r, rows in counts.items():
        observed, null, ok = null_check(rows, spec.null_ratio)
        if not ok:
            gate[r] = (f"null check fails: {100 * null:.2f}% positives in no-change worlds against "
                       f"{100 * observed:.2f}% observed; not used to train or judge")
    origin_gate = _origin_gate(counts, gate, spec.null_ratio)
    cases = [_Case(r, d) for r, panel in panels.items() if r not in gate for d in panel
             if len(d.labels) and (r, d.origin.year) not in origin_gate]
    if not cases:
        raise BacktestError(f"{name}: no region has labels that pass the null check ({missing | gate})")
    by_name = {r.name: r for r in regions}
    ranks = _Ranks(by_name, outcomes)
    minimum = spec.min_train_origins(settings)
    chosen, candidates, dev, held, note = _choose(cases, minimum, outcomes[cases[0].region], settings, ranks,
                                                  progress)
    features, prior = next((c.features, c.prior) for c in candidates if c.name == chosen)
    pairs = [p for p in _tests(cases, minimum, lambda c: cases) if p[0].data.origin.year in held]
    if not pairs:
        raise BacktestError(f"{name}: no origin has {minimum} closed training origin(s) before it")
    preds = _run(pairs, features, settings.model.seed, ranks, True, progress, "pooled: ", prior)
    filled = _fill_regions(preds)
    for c in candidates:  # reported after the choice, never used for it
        c.test_pr_auc = _pr_auc(preds) if c.name == chosen else _pr_auc(
            _run(pairs, c.features, settings.model.seed, ranks, False, progress, f"candidate {c.name}: ", c.prior))
    result = _pooled_result(name, outcomes[cases[0].region], settings, preds, counts, gate, features, panels)
    extras = PooledExtras(candidates=candidates, chosen=chosen, dev_origins=dev, choice_note=note,
                          baseline_gaps=filled, excluded=gate | missing)
    extras.regions = _region_figures(preds, counts, gate, missing, regions, spec.null_ratio, settings)
    extras.loro, extras.loro_note = _leave_one_out(cases, minimum, held, features, settings, ranks, progress, prior)
    result.pooled = extras
    result.features = features
    result.prior_features = list(prior or [])
    result.excluded_labels = list(dict.fromkeys([*(f"{r}: {why}" for r, panel in panels.items() for d in panel
                                                  for why in d.excluded), *origin_gate.values()]))
    result.panel = _merged_panel(cases)
    result.region = ", ".join(r.name for r in regions)
    return result


def _origin_gate(counts: dict[str, list[OriginCounts]], gate: dict[str, str], ratio: float
                 ) -> dict[tuple[str, int], str]:
    """Origins of the regions that pass whose own null check fails: left out of training and judging, each with
    its reason (an origin with no labelled tract has nothing to check)."""
    out = {}
    for r, rows in counts.items():
        if r in gate:
            continue
        for c in rows:
            observed, null, ok = null_check([c], ratio)
            if not ok and c.positives + c.negatives:
                out[(r, c.origin.year)] = (f"{r}: origin {c.origin.year}: null check fails ({100 * null:.2f}% "
                                           f"positives in no-change worlds against {100 * observed:.2f}% observed); "
                                           "not used to train or judge")
    return out


def _leave_one_out(cases: list[_Case], minimum: int, held: list[int], features: list[str], settings: Settings,
                   ranks: _Ranks, progress: Progress | None, prior: list[str] | None = None
                   ) -> tuple[dict[str, object] | None, str]:
    """Each region's held-out origins scored by a model trained on the other regions only."""
    names = sorted({c.region for c in cases})
    if len(names) < 2:
        return None, "one region with labels: there is no other region to train on"
    pairs = [p for p in _tests(cases, minimum, lambda c: [d for d in cases if d.region != c.region])
             if p[0].data.origin.year in held]
    preds = _run(pairs, features, settings.model.seed, ranks, True, progress, "leave one region out: ", prior)
    _fill_regions(preds)
    if preds.empty:
        return None, "no region has held-out origins with enough training origins in the others"
    try:
        metrics, cis, _, _, vs_best, udp = _figures(preds, settings, "leave-one-region-out")
    except BacktestError as e:
        return None, str(e)
    return {"models": _models_json(metrics, cis), "lightgbm_vs_best_baseline": vs_best,
            "lightgbm_vs_udp_typology": udp, "regions": sorted(set(preds["region"]))}, ""


def _pooled_result(name: str, outcome: Outcome, settings: Settings, preds: pd.DataFrame,
                   counts: dict[str, list[OriginCounts]], gate: dict[str, str], features: list[str],
                   panels: dict[str, list[OriginData]]) -> Backtest:
    metrics, cis, best, ratio_ci, _, udp = _figures(preds, settings, name)
    unsupported = {m: why_unsupported(m, outcome) for m in BASELINES if m not in metrics}
    for m in RANK_BASELINES:
        if m in metrics and m in preds:
            metrics[m]["brier"] = float("nan")  # calibrated per pool, compared by ranking
    used = [c for r, rows in counts.items() if r not in gate for c in rows
            if c.origin.year in set(preds["origin"])]
    observed, null, ok = null_check(used, outcome_spec(name).null_ratio)
    train_x = [d.X[features] for r, p in panels.items() if r not in gate for d in p]
    presence = sum(x.notna().sum() for x in train_x) / sum(len(x) for x in train_x)
    usable = [m for m in MODELS if m in metrics]
    bt = Backtest(
        outcome=name, description=outcome.description, test_origins=sorted(int(o) for o in preds["origin"].unique()),
        preds=preds, metrics=metrics, pr_auc_ci=cis, best_baseline=best,
        ratio=metrics["lightgbm"]["pr_auc"] / metrics[best]["pr_auc"], ratio_ci=ratio_ci, null_rate=null,
        observed_rate=observed, null_ok=ok, unsupported=unsupported, presence=presence,
        lead=lead_times(preds, "lightgbm"),
        calibration={m: calibration_table(preds, m) for m in ("lightgbm", "logistic") if m in usable},
        by_origin={m: per_origin(preds, m) for m in usable})
    bt.udp_ratio = udp
    return bt

