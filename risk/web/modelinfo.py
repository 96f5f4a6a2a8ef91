"""What the model page says: backtest figures against the baselines, the data and its freshness, limitations."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any

import pandas as pd

from risk.core.settings import Settings
from risk.features.dictionary import FEATURES
from risk.model.backtest import MODELS
from risk.model.registry import ModelRecord
from risk.model.report import LABELS
from risk.service.artifacts import backtest_report
from risk.sources import Sources
from risk.sources.registry import families

GENERAL_LIMITATIONS = [
    "A score ranks tracts against each other; it is not the chance that any household will be displaced, and "
    "it says nothing about any person or landlord.",
    "The backtest below is the honest measure of skill. Where the model's PR-AUC is close to the base rate, its "
    "ranking is little better than chance and should only point to where to look, never decide anything.",
    "The outcomes are rare once chance variation is accounted for, so the model learns from a few dozen positive "
    "cases per year and its probabilities are uncertain.",
    "Census and ACS figures are survey estimates with sampling error, published a year or more after "
    "collection; small tracts move by chance.",
    "Explanations show what moved the model's score, not what causes displacement.",
]


def limitations(sources: Sources, as_of: date) -> list[str]:
    """The model's known limitations in plain words, with the ones this data adds."""
    out = list(GENERAL_LIMITATIONS)
    if sources.evictions is not None and not sources.evictions.empty:
        known = sources.evictions[sources.evictions["available"] <= pd.Timestamp(as_of)]
        if not known.empty:
            out.append(f"The newest eviction counts are for {int(known['year'].max())}: changes since then are "
                       "not in the data.")
    if any("low-flag" in str(w) for w in sources.warnings):
        out.append("Eviction Lab flags these eviction counts as lower than reality (court records are incomplete).")
    if sources.permit_coverage is not None:
        out.append(f"Building permits cover {len(sources.permit_coverage)} of {len(sources.tracts)} tracts (the "
                   "permit office's jurisdiction); elsewhere the permit indicators are missing, not zero.")
    if sources.rent is None:
        out.append("No market rent series is configured: rents come from the Census/ACS releases only, which lag "
                   "the market by years.")
    return out


def backtest_table(record: ModelRecord | None) -> list[dict[str, Any]]:
    """One row per model in the champion's backtest: PR-AUC with its 95% interval and the other metrics."""
    if record is None:
        return []
    found = record.metadata.get("backtest") or {}
    rows = []
    for name in MODELS:
        m = found.get(name)
        ci = (m or {}).get("pr_auc_ci95") or [None, None]
        rows.append({"name": LABELS.get(name, name), "key": name, "available": m is not None,
                     "pr_auc": (m or {}).get("pr_auc"), "ci_low": ci[0], "ci_high": ci[1],
                     "roc_auc": (m or {}).get("roc_auc"), "precision": (m or {}).get("precision_at_10pct"),
                     "recall": (m or {}).get("recall_at_10pct"), "brier": (m or {}).get("brier")})
    return rows


def backtest_summary(record: ModelRecord | None, settings: Settings) -> dict[str, Any]:
    """The comparison in words: the best baseline, LightGBM's ratio to it, and the base rate."""
    rows = [r for r in backtest_table(record) if r["available"] and r["pr_auc"] is not None]
    meta = record.metadata if record else {}
    summary: dict[str, Any] = {"origins": meta.get("backtest_origins", []), "best": None, "ratio": None,
                               "base_rate": None, "cases": None, "positives": None,
                               "training_origins": meta.get("training_origins", []), "scheme": meta.get("scheme", ""),
                               "outcome": meta.get("outcome", settings.model.outcome)}
    lgbm = next((r for r in rows if r["key"] == "lightgbm"), None)
    baselines = [r for r in rows if r["key"] != "lightgbm"]
    if lgbm and baselines:
        best = max(baselines, key=lambda r: r["pr_auc"])
        summary["best"] = best["name"]
        summary["ratio"] = lgbm["pr_auc"] / best["pr_auc"] if best["pr_auc"] else None
    predictions = backtest_report(settings, summary["outcome"]) / "predictions.csv"
    if predictions.exists():
        y = pd.read_csv(predictions, usecols=["y"])["y"]
        summary.update(base_rate=float(y.mean()), cases=len(y), positives=int(y.sum()))
    return summary


def _ratio(figure: dict[str, Any] | None) -> dict[str, Any] | None:
    """A ratio with its interval, or None when the backtest could not support it."""
    if not figure or figure.get("ratio") is None:
        return None
    ci = figure.get("ci95") or [None, None]
    return {"ratio": figure["ratio"], "low": ci[0], "high": ci[1], "baseline": LABELS.get(
        str(figure.get("baseline")), figure.get("baseline"))}


def region_rows(record: ModelRecord | None) -> list[dict[str, Any]]:
    """Each region's own backtest figures (a project of several regions), in the order configured."""
    regions = (record.metadata.get("backtest_regions") if record else None) or {}
    rows = []
    for name, r in regions.items():
        models = r.get("models") or {}
        check = r.get("null_check") or {}
        rows.append({"name": name, "tracts": r.get("n_tracts", 0), "positives": r.get("n_positive", 0),
                     "null_passes": check.get("passes"), "pr_auc": (models.get("lightgbm") or {}).get("pr_auc"),
                     "vs_best": _ratio(r.get("lightgbm_vs_best_baseline")),
                     "vs_udp": _ratio(r.get("lightgbm_vs_udp_typology")), "note": r.get("note") or ""})
    return rows


def transfer_figures(record: ModelRecord | None) -> dict[str, Any]:
    """What a planner compares with: LightGBM against the UDP typology ranking, pooled, and the figures of a new
    city (each region scored by a model trained on the others); None where the backtest could not support one."""
    meta = record.metadata if record else {}
    loro = meta.get("backtest_leave_one_region_out") or {}
    choice = meta.get("backtest_model_choice") or {}
    return {"vs_udp": _ratio(meta.get("backtest_lightgbm_vs_udp_typology")),
            "loro_vs_best": _ratio(loro.get("lightgbm_vs_best_baseline")),
            "loro_vs_udp": _ratio(loro.get("lightgbm_vs_udp_typology")), "loro_regions": loro.get("regions") or [],
            "chosen": choice.get("chosen"), "choice_rule": choice.get("rule"),
            "candidates": choice.get("candidates") or {}}


def pr_curves_path(settings: Settings, outcome: str) -> Any:
    """The backtest report's precision-recall picture, if the report exists."""
    path = backtest_report(settings, outcome) / "pr_curves.png"
    return path if path.exists() else None


def dictionary_rows() -> list[dict[str, Any]]:
    """Every feature of the dictionary."""
    return [asdict(f) for f in FEATURES]


def _newest(frame: pd.DataFrame | None, column: str, as_of: date) -> date | None:
    if frame is None or frame.empty:
        return None
    known = frame.loc[frame[column] <= pd.Timestamp(as_of), column]
    return None if known.empty else known.max().date()


def data_sources(settings: Settings, sources: Sources, as_of: date) -> list[dict[str, Any]]:
    """Each family: its files, attribution, the newest record known at the run and whether that is fresh."""
    out = []
    for family in families():
        section = family.section(settings)
        paths = family.files(section) if section is not None else []
        when = _newest(sources.table(family.name), family.known, as_of) if family.known else None
        limit = sources.max_age.get(family.name) if family.series else None
        if not paths:
            status = "not configured"
        elif not family.series:  # the boundaries and the demographic vintages stay in use however old
            status = "in use"
        elif when is None:
            status = "no data by the run date"
        else:
            status = "fresh" if limit is None or pd.Timestamp(as_of) - pd.Timestamp(when) <= limit else "stale"
        out.append({"family": family.name, "files": [p.name for p in paths], "attribution": family.attribution,
                    "newest": when, "age_days": None if when is None else (as_of - when).days,
                    "limit_days": None if limit is None else limit.days, "status": status})
    return out
