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
    """Whether each row is in the model's top ``share`` of its origin (ties broken by GEOID for stability).

    One sort of every row (origin, then score descending, then GEOID) instead of one per origin: at national
    scale the string comparisons of per-origin sorts cost seconds per call."""
    origin = frame["origin"].to_numpy()
    geoid_rank = pd.factorize(frame["geoid"], sort=True)[0]
    score = -frame[model].to_numpy(dtype="float64")
    order = np.lexsort((geoid_rank, np.where(np.isnan(score), np.inf, score), origin))
    sorted_origin = origin[order]
    starts = np.flatnonzero(np.r_[True, sorted_origin[1:] != sorted_origin[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    position = np.arange(len(order)) - np.repeat(starts, sizes)
    keep = np.repeat([math.ceil(share * n) for n in sizes], sizes)
    flags = np.empty(len(order), dtype=bool)
    flags[order] = position < keep
    return pd.Series(flags, index=frame.index)


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


_BLOCK_CELLS = 10_000_000
"""Replicates x rows computed together (each such float array is 80 MB): few rows, many replicates at once."""


def _ranked(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows with a score, best first, and the last position of each group of tied scores."""
    rows = np.flatnonzero(~np.isnan(p))
    order = rows[np.argsort(-p[rows], kind="mergesort")]
    s = p[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    return order, y[order].astype("float64"), ends


def _weighted_ap(weights: np.ndarray, y: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Average precision of each row of ``weights`` (copies of each ranked row), as scikit-learn computes it
    on the resampled rows; NaN where the replicate has no positive or no negative."""
    tp = np.cumsum(weights * y, axis=1)[:, ends]
    fp = np.cumsum(weights, axis=1)[:, ends] - tp
    total = tp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        ap = (np.diff(tp, axis=1, prepend=0.0) * precision).sum(axis=1) / total
    return np.where((total > 0) & (fp[:, -1] > 0), ap, np.nan)


def bootstrap(frame: pd.DataFrame, models: list[str], n: int, seed: int, reference: str,
              against: str) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """95% intervals of each model's pooled PR-AUC and of the PR-AUC ratio reference/against.

    Whole tracts are resampled (all their origins together), because a tract's
    rows across origins are not independent. A resample is a count of copies
    per tract, so each model's rows are ranked once and every replicate's
    average precision is a weighted cumulative sum (the same figure as
    scikit-learn's on the copied rows, in a fraction of the time).
    """
    rng = np.random.default_rng(seed)
    geoids = frame["geoid"].unique()
    tract = pd.Index(geoids).get_indexer(frame["geoid"])
    y_all = frame["y"].to_numpy(dtype=int)
    ranked = {m: _ranked(y_all, frame[m].to_numpy(dtype="float64")) for m in models}
    aps = {m: np.full(n, np.nan) for m in models}
    usable = np.zeros(n, dtype=bool)
    block = max(1, _BLOCK_CELLS // max(1, len(frame)))
    for lo in range(0, n, block):
        size = min(block, n - lo)
        counts = np.stack([np.bincount(rng.choice(len(geoids), size=len(geoids), replace=True),
                                       minlength=len(geoids)) for _ in range(size)])
        copies = counts[:, tract].astype("float64")  # replicates x rows
        positives = copies @ y_all
        usable[lo:lo + size] = (positives > 0) & (positives < copies.sum(axis=1))
        for m, (order, y, ends) in ranked.items():
            if len(order):
                aps[m][lo:lo + size] = _weighted_ap(copies[:, order], y, ends)
    draws = {m: aps[m][usable & ~np.isnan(aps[m])] for m in models}
    ratios = np.array([])
    if reference in aps and against in aps:
        ok = usable & ~np.isnan(aps[reference]) & ~np.isnan(aps[against]) & (aps[against] > 0)
        ratios = aps[reference][ok] / aps[against][ok]

    def ci(v: np.ndarray) -> tuple[float, float]:
        return (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if len(v) else (float("nan"), float("nan"))

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
