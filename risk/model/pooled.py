"""Backtest over several regions: pooled training, each region's figures, leave-one-region-out.

Every region keeps its own sources, so features compare a tract with its own
region and labels follow the region's own trend; only the training rows are
pooled (:mod:`risk.model.cases`). The features and prior are chosen on the
earlier (development) test origins by the rule of :mod:`risk.model.choice`,
and every headline figure comes from the later (held-out) origins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from risk.core.errors import BacktestError, OutcomeError
from risk.core.files import frame_hash
from risk.core.settings import Settings
from risk.model.backtest import (
    MODELS,
    Backtest,
    OriginData,
    build_panel,
    feature_presence,
    label_summary_for,
    why_unsupported,
)
from risk.model.baselines import (
    BASELINES,
    RANK_BASELINES,
)
from risk.model.cache import WorkCache, work_cache
from risk.model.cases import (
    Case,
    Ranks,
    RegionInput,
    fill_regions,
    merged_panel,
    pairs_for,
    pr_auc,
    predictions,
)
from risk.model.choice import CHOICE_RULE, Candidate, choose
from risk.model.metrics import (
    bootstrap,
    calibration_table,
    lead_times,
    model_metrics,
    per_origin,
)
from risk.outcomes.base import Outcome
from risk.outcomes.labels import OriginCounts, null_check, null_failure
from risk.outcomes.registry import outcome_for, outcome_spec

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

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


def _panels(name: str, regions: list[RegionInput], progress: Progress | None, caches: dict[str, WorkCache | None]
            ) -> tuple[dict[str, list[OriginData]], dict[str, Outcome], dict[str, str]]:
    """Each region's origins; a region whose outcome cannot be labelled is left out with its reason."""
    panels, outcomes, missing = {}, {}, {}
    for r in regions:
        outcome = outcome_for(name, r.settings)
        try:
            if progress:
                progress(f"{r.name}: features and labels")
            panel = build_panel(outcome, r.sources, r.settings, None, caches.get(r.name))
        except OutcomeError as e:
            missing[r.name] = f"no labels: {e}"
            continue
        if not panel:
            missing[r.name] = "no labels: no origin"
            continue
        panels[r.name], outcomes[r.name] = panel, outcome
    return panels, outcomes, missing




def _figures(preds: pd.DataFrame, settings: Settings, name: str, cache: WorkCache | None = None,
             digest: str | None = None) -> tuple[dict, dict, str, tuple, dict, dict]:
    """:func:`_measured`, reused from the work cache for the same predictions (``digest``: their
    :func:`~risk.core.files.frame_hash`, when known); the bootstrap is the slow part."""
    if cache is None:
        return _measured(preds, settings, name)
    key = cache.key("pooled-figures", digest or frame_hash(preds), name)
    stored = cache.frames(key)
    if stored is not None:
        m, cis, best, ratio_ci, vs_best, udp = stored[1]
        return m, {k: tuple(v) for k, v in cis.items()}, best, tuple(ratio_ci), vs_best, udp
    found = _measured(preds, settings, name)
    cache.put_frames(key, {}, list(found))
    return found


def _measured(preds: pd.DataFrame, settings: Settings, name: str) -> tuple[dict, dict, str, tuple, dict, dict]:
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
    udp = _vs_udp(preds, settings) if "udp_typology" in usable else {"ratio": None, "ci95": None}
    vs_best = {"baseline": best, "ratio": metrics["lightgbm"]["pr_auc"] / metrics[best]["pr_auc"],
               "ci95": list(ratio_ci)}
    return metrics, cis, best, ratio_ci, vs_best, udp


def _vs_udp(preds: pd.DataFrame, settings: Settings) -> dict[str, object]:
    """LightGBM against the UDP typology on the tracts the typology ranks: a region without it (its tracts
    ranked in the middle to keep every model on the same rows) would flatter LightGBM here."""
    if "udp_typology_filled" in preds:
        preds = preds[~preds["udp_typology_filled"].astype(bool)]
    if preds["y"].nunique() < 2:
        return {"ratio": None, "ci95": None}
    lgbm, udp = model_metrics(preds, "lightgbm")["pr_auc"], model_metrics(preds, "udp_typology")["pr_auc"]
    if not udp:
        return {"ratio": None, "ci95": None}
    _, ci = bootstrap(preds, ["lightgbm", "udp_typology"], settings.model.bootstrap, settings.model.seed,
                      "lightgbm", "udp_typology")
    return {"ratio": lgbm / udp, "ci95": list(ci)}


def _models_json(metrics: dict, cis: dict) -> dict[str, dict[str, object] | None]:
    return {m: None if m not in metrics else {
        "pr_auc": metrics[m]["pr_auc"], "roc_auc": metrics[m]["roc_auc"],
        "precision_at_10pct": metrics[m]["precision_at_10pct"], "recall_at_10pct": metrics[m]["recall_at_10pct"],
        "pr_auc_ci95": list(cis.get(m, (float("nan"),) * 2))} for m in MODELS}


def _region_figures(preds: pd.DataFrame, counts: dict[str, list[OriginCounts]], gate: dict[str, str],
                    missing: dict[str, str], regions: list[RegionInput], ratio: float, settings: Settings,
                    cache: WorkCache | None = None) -> dict[str, RegionFigures]:
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
            metrics, cis, _, _, vs_best, udp = _figures(rows, settings, r.name, cache)
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
    caches = {r.name: work_cache(r.settings, r.sources) for r in regions}
    panels, outcomes, missing = _panels(name, regions, progress, caches)
    spec = outcome_spec(name)
    by_name = {r.name: r for r in regions}
    counts = {r: label_summary_for(outcomes[r], by_name[r].sources, [d for d in p if len(d.labels)], settings,
                                   caches[r]) for r, p in panels.items()}
    for r, rows in list(counts.items()):
        if not sum(c.positives + c.negatives for c in rows):  # every label read data found broken
            why = "; ".join(dict.fromkeys(w for d in panels[r] for w in d.excluded))
            missing[r] = f"every label left out (broken source data): {why}"[:600]
            del counts[r], panels[r]
    gate = {r: why for r, rows in counts.items() if (why := null_failure(rows, spec.null_ratio))}
    origin_gate = _origin_gate(counts, gate, spec.null_ratio)
    cases = [Case(r, d) for r, panel in panels.items() if r not in gate for d in panel
             if len(d.labels) and (r, d.origin.year) not in origin_gate]
    if not cases:
        raise BacktestError(f"{name}: no region has labels that pass the null check ({missing | gate})")
    ranks = Ranks(by_name, outcomes, caches[regions[0].name])
    minimum = spec.min_train_origins(settings)
    chosen, candidates, dev, held, note = choose(cases, minimum, outcomes[cases[0].region], settings, ranks,
                                                  progress)
    features, prior = next((c.features, c.prior) for c in candidates if c.name == chosen)
    pairs = [p for p in pairs_for(cases, minimum, lambda c: cases) if p[0].data.origin.year in held]
    if not pairs:
        raise BacktestError(f"{name}: no origin has {minimum} closed training origin(s) before it")
    preds = predictions(pairs, features, settings.model.seed, ranks, True, progress, "pooled: ", prior)
    filled = fill_regions(preds)
    for c in candidates:  # reported after the choice, never used for it
        c.test_pr_auc = pr_auc(preds) if c.name == chosen else pr_auc(
            predictions(pairs, c.features, settings.model.seed, ranks, False, progress, f"candidate {c.name}: ",
                        c.prior))
    result = _pooled_result(name, outcomes[cases[0].region], settings, preds, counts, gate, features, panels,
                            ranks.cache)
    extras = PooledExtras(candidates=candidates, chosen=chosen, dev_origins=dev, choice_note=note,
                          baseline_gaps=filled, excluded=gate | missing)
    extras.regions = _region_figures(preds, counts, gate, missing, regions, spec.null_ratio, settings, ranks.cache)
    extras.loro, extras.loro_note = _leave_one_out(cases, minimum, held, features, settings, ranks, progress, prior)
    result.pooled = extras
    result.features = features
    result.prior_features = list(prior or [])
    result.excluded_labels = list(dict.fromkeys([*(f"{r}: {why}" for r, panel in panels.items() for d in panel
                                                  for why in d.excluded), *origin_gate.values()]))
    result.panel = merged_panel(cases)
    result.region = ", ".join(r.name for r in regions)
    return result


def _origin_gate(counts: dict[str, list[OriginCounts]], gate: dict[str, str], ratio: float
                 ) -> dict[tuple[str, int], str]:
    """Origins of the regions that pass whose own null check fails: left out of training and judging, each with
    its reason (an origin with no labelled tract has nothing to check)."""
    return {(r, c.origin.year): f"{r}: origin {c.origin.year}: {why}" for r, rows in counts.items() if r not in gate
            for c in rows if (why := null_failure([c], ratio))}


def _leave_one_out(cases: list[Case], minimum: int, held: list[int], features: list[str], settings: Settings,
                   ranks: Ranks, progress: Progress | None, prior: list[str] | None = None
                   ) -> tuple[dict[str, object] | None, str]:
    """Each region's held-out origins scored by a model trained on the other regions only."""
    names = sorted({c.region for c in cases})
    if len(names) < 2:
        return None, "one region with labels: there is no other region to train on"
    pairs = [p for p in pairs_for(cases, minimum, lambda c: [d for d in cases if d.region != c.region])
             if p[0].data.origin.year in held]
    preds = predictions(pairs, features, settings.model.seed, ranks, True, progress, "leave one region out: ", prior)
    fill_regions(preds)
    if preds.empty:
        return None, "no region has held-out origins with enough training origins in the others"
    try:
        metrics, cis, _, _, vs_best, udp = _figures(preds, settings, "leave-one-region-out", ranks.cache)
    except BacktestError as e:
        return None, str(e)
    return {"models": _models_json(metrics, cis), "lightgbm_vs_best_baseline": vs_best,
            "lightgbm_vs_udp_typology": udp, "regions": sorted(set(preds["region"]))}, ""


def _pooled_result(name: str, outcome: Outcome, settings: Settings, preds: pd.DataFrame,
                   counts: dict[str, list[OriginCounts]], gate: dict[str, str], features: list[str],
                   panels: dict[str, list[OriginData]], cache: WorkCache | None = None) -> Backtest:
    digest = frame_hash(preds)
    metrics, cis, best, ratio_ci, _, udp = _figures(preds, settings, name, cache, digest)
    unsupported = {m: why_unsupported(m, outcome) for m in BASELINES if m not in metrics}
    for m in RANK_BASELINES:
        if m in metrics and m in preds:
            metrics[m]["brier"] = float("nan")  # calibrated per pool, compared by ranking
    used = [c for r, rows in counts.items() if r not in gate for c in rows
            if c.origin.year in set(preds["origin"])]
    observed, null, ok = null_check(used, outcome_spec(name).null_ratio)
    presence = feature_presence([d for r, p in panels.items() if r not in gate for d in p], features, cache)
    usable = [m for m in MODELS if m in metrics]
    bt = Backtest(
        outcome=name, description=outcome.description, test_origins=sorted(int(o) for o in preds["origin"].unique()),
        preds=preds, metrics=metrics, pr_auc_ci=cis, best_baseline=best,
        ratio=metrics["lightgbm"]["pr_auc"] / metrics[best]["pr_auc"], ratio_ci=ratio_ci, null_rate=null,
        observed_rate=observed, null_ok=ok, unsupported=unsupported, presence=presence,
        **_tables(preds, usable, cache.key("pooled-tables", digest, usable) if cache else "", cache))
    bt.udp_ratio = udp
    return bt


def _tables(preds: pd.DataFrame, usable: list[str], key: str, cache: WorkCache | None) -> dict[str, object]:
    """Lead times, calibration and per-origin tables of the predictions; from the work cache under ``key``."""
    stored = cache.frames(key) if cache is not None and key else None
    if stored is not None:
        frames, lead = stored
        return {"lead": lead, "calibration": {m: frames[f"calibration-{m}"] for m in usable
                                              if f"calibration-{m}" in frames},
                "by_origin": {m: frames[f"origin-{m}"] for m in usable}}
    calibration = {m: calibration_table(preds, m) for m in ("lightgbm", "logistic") if m in usable}
    by_origin = {m: per_origin(preds, m) for m in usable}
    lead = lead_times(preds, "lightgbm")
    if cache is not None and key:
        cache.put_frames(key, {**{f"calibration-{m}": f for m, f in calibration.items()},
                               **{f"origin-{m}": f for m, f in by_origin.items()}}, lead)
    return {"lead": lead, "calibration": calibration, "by_origin": by_origin}

