"""Ranking and calibration metrics, tract-cluster bootstrap intervals and lead time.

``preds`` throughout is one row per (origin, geoid) test case with the label
``y`` and one probability column per model.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def _top(frame: pd.DataFrame, model: str, share: float) -> pd.Series:
    """Whether each row is in the model's top ``share`` of its origin (ties broken by GEOID for stability)."""
    flags = []
    for _, group in frame.groupby("origin"):
        k = math.ceil(share * len(group))
        order = group.sort_values([model, "geoid"], ascending=[False, True]).index[:k]
        flags.append(pd.Series(group.index.isin(order), index=group.index))
    return pd.concat(flags).reindex(frame.index)


def at_top(frame: pd.DataFrame, model: str, share: float) -> tuple[float, float]:
    """Pooled precision and recall when each origin flags its top ``share`` of tracts."""
    rows = frame[frame[model].notna()]
    top = _top(rows, model, share)
    hits = int(rows.loc[top, "y"].sum())
    flagged, positives = int(top.sum()), int(rows["y"].sum())
    return (hits / flagged if flagged else float("nan"), hits / positives if positives else float("nan"))


def model_metrics(frame: pd.DataFrame, model: str) -> dict[str, float]:
    """Pooled ROC-AUC, PR-AUC, precision/recall at 10% and 20%, Brier."""
    rows = frame[frame[model].notna()]
    y, p = rows["y"].to_numpy(dtype=int), rows[model].to_numpy(dtype="float64")
    if len(rows) == 0 or y.min() == y.max():
        return {}
    p10, r10 = at_top(rows, model, 0.10)
    p20, r20 = at_top(rows, model, 0.20)
    return {"pr_auc": float(average_precision_score(y, p)), "roc_auc": float(roc_auc_score(y, p)),
            "precision_at_10pct": p10, "recall_at_10pct": r10, "precision_at_20pct": p20, "recall_at_20pct": r20,
            "brier": float(brier_score_loss(y, np.clip(p, 0, 1))), "n": int(len(rows)), "positives": int(y.sum())}


def per_origin(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    """Metrics of each test origin."""
    out = {origin: model_metrics(group, model) for origin, group in frame.groupby("origin")}
    return pd.DataFrame(out).T


def calibration_table(frame: pd.DataFrame, model: str, bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability against the observed rate, by decile of prediction."""
    rows = frame[frame[model].notna()]
    q = pd.qcut(rows[model].rank(method="first"), q=min(bins, len(rows)), labels=False)
    return rows.groupby(q).agg(predicted=(model, "mean"), observed=("y", "mean"), n=("y", "size"))


def bootstrap(frame: pd.DataFrame, models: list[str], n: int, seed: int, reference: str,
              against: str) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """95% intervals of each model's pooled PR-AUC and of the PR-AUC ratio reference/against.

    Whole tracts are resampled (all their origins together), because a tract's
    rows across origins are not independent.
    """
    rng = np.random.default_rng(seed)
    geoids = frame["geoid"].unique()
    by_tract = {g: idx for g, idx in frame.groupby("geoid").indices.items()}
    draws: dict[str, list[float]] = {m: [] for m in models}
    ratios: list[float] = []
    y_all = frame["y"].to_numpy(dtype=int)
    values = {m: frame[m].to_numpy(dtype="float64") for m in models}
    for _ in range(n):
        pick = np.concatenate([by_tract[g] for g in rng.choice(geoids, size=len(geoids), replace=True)])
        y = y_all[pick]
        if y.min() == y.max():
            continue
        scores = {}
        for m in models:
            p = values[m][pick]
            ok = ~np.isnan(p)
            if ok.sum() and y[ok].min() != y[ok].max():
                scores[m] = average_precision_score(y[ok], p[ok])
                draws[m].append(scores[m])
        if reference in scores and against in scores and scores[against] > 0:
            ratios.append(scores[reference] / scores[against])

    def ci(v: list[float]) -> tuple[float, float]:
        return (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if v else (float("nan"), float("nan"))

    return {m: ci(v) for m, v in draws.items()}, ci(ratios)


def lead_times(frame: pd.DataFrame, model: str, share: float = 0.10) -> dict[str, float]:
    """How early positives were flagged: years from the first of an unbroken run of top-share flags to the
    outcome window's close.

    ``frame`` needs ``as_of`` and ``closes`` dates per origin. A positive at origin
    t flagged at t, the origin before, ..., s without a gap has a lead of
    closes(t) - as_of(s). Positives not flagged at t count as missed.
    """
    rows = frame[frame[model].notna()].copy()
    rows["top"] = _top(rows, model, share)
    origins = sorted(rows["origin"].unique())
    as_of = rows.groupby("origin")["as_of"].first()
    flagged = {(o, g) for o, g, t in rows[["origin", "geoid", "top"]].itertuples(index=False) if t}
    leads = []
    positives = rows[rows["y"] == 1]
    for origin, geoid, closes in positives[["origin", "geoid", "closes"]].itertuples(index=False):
        if (origin, geoid) not in flagged:
            continue
        i = origins.index(origin)
        while i > 0 and (origins[i - 1], geoid) in flagged:
            i -= 1
        leads.append((pd.Timestamp(closes) - pd.Timestamp(as_of[origins[i]])).days / 365.25)
    total = len(positives)
    return {"positives": total, "flagged": len(leads), "share_flagged": len(leads) / total if total else float("nan"),
            "median_lead_years": round(float(np.median(leads)), 2) if leads else float("nan"),
            "max_lead_years": round(float(max(leads)), 2) if leads else float("nan")}
