"""Ranking and calibration metrics, tract-cluster bootstrap intervals and lead time.

``preds`` throughout is one row per (origin, geoid) test case with the label
``y`` and one probability column per model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
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
"""Tracts (or positive groups) x replicates computed together: each such float array is 80 MB."""


@dataclass(frozen=True)
class _Ranking:
    """One model's ranking reduced to what a replicate's average precision needs.

    Only tie groups holding a positive add to average precision, so every scored row is filed under the first
    such group at or below it: ``rows`` counts each tract's rows per filing, ``positives`` its positive rows
    per group. A replicate's copies per tract then give, by two sparse products, the weight gained by each
    group and the true positives it adds.
    """

    rows: sparse.csr_matrix
    positives: sparse.csr_matrix
    scored: np.ndarray
    """Scored rows per tract (a replicate with no negative among them has no average precision)."""


def _ranking(tract: np.ndarray, n_tracts: int, y: np.ndarray, p: np.ndarray) -> _Ranking:
    rows = np.flatnonzero(~np.isnan(p))
    order = rows[np.argsort(-p[rows], kind="mergesort")]
    s = p[order]
    group = np.zeros(len(s), dtype=int)  # tie group of each ranked row
    group[1:] = np.cumsum(s[1:] != s[:-1])
    hit = y[order] == 1
    groups = np.unique(group[hit])
    filing = np.searchsorted(groups, group)  # the first positive group at or below each row
    kept = filing < len(groups)  # rows below the last positive add nothing

    def counts(select: np.ndarray) -> sparse.csr_matrix:
        return sparse.csr_matrix((np.ones(int(select.sum())), (filing[select], tract[order][select])),
                                 shape=(len(groups), n_tracts))

    return _Ranking(counts(kept), counts(hit), np.bincount(tract[rows], minlength=n_tracts).astype("float64"))


def _replicate_ap(ranking: _Ranking, copies: np.ndarray) -> np.ndarray:
    """Average precision of each replicate (columns of ``copies``: copies per tract), as scikit-learn computes it
    on the resampled rows; NaN where the replicate has no positive or no negative."""
    gained = np.cumsum(ranking.rows @ copies, axis=0)  # rows down to each positive group
    added = ranking.positives @ copies  # true positives each positive group adds
    tp = np.cumsum(added, axis=0)
    if not len(tp):
        return np.full(copies.shape[1], np.nan)
    total = tp[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(gained > 0, tp / gained, 0.0)
        ap = (added * precision).sum(axis=0) / total
    return np.where((total > 0) & (ranking.scored @ copies > total), ap, np.nan)


def replicate_aps(frame: pd.DataFrame, models: list[str], n: int, seed: int
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each model's pooled PR-AUC in ``n`` tract-cluster resamples, and which resamples hold both classes.

    Whole tracts are resampled (all their origins together), because a tract's rows across origins are not
    independent. A resample is a count of copies per tract; its average precision is scikit-learn's figure on
    the copied rows to rounding (1e-12), computed from per-tract sums instead of the copied rows.
    """
    rng = np.random.default_rng(seed)
    geoids = frame["geoid"].unique()
    tract = pd.Index(geoids).get_indexer(frame["geoid"])
    y_all = frame["y"].to_numpy(dtype=int)
    rankings = {m: _ranking(tract, len(geoids), y_all, frame[m].to_numpy(dtype="float64")) for m in models}
    per_tract = np.bincount(tract, minlength=len(geoids)).astype("float64")
    positive_per_tract = np.bincount(tract, weights=y_all, minlength=len(geoids))
    aps = {m: np.full(n, np.nan) for m in models}
    usable = np.zeros(n, dtype=bool)
    largest = max([len(geoids), *(r.rows.shape[0] for r in rankings.values())])
    block = max(1, _BLOCK_CELLS // max(1, largest))
    for lo in range(0, n, block):
        size = min(block, n - lo)
        copies = np.stack([np.bincount(rng.choice(len(geoids), size=len(geoids), replace=True),
                                       minlength=len(geoids)) for _ in range(size)], axis=1).astype("float64")
        positives = positive_per_tract @ copies
        usable[lo:lo + size] = (positives > 0) & (positives < per_tract @ copies)
        for m, ranking in rankings.items():
            aps[m][lo:lo + size] = _replicate_ap(ranking, copies)
    return aps, usable


def bootstrap(frame: pd.DataFrame, models: list[str], n: int, seed: int, reference: str,
              against: str) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """95% intervals of each model's pooled PR-AUC and of the PR-AUC ratio reference/against
    (tract-cluster resamples: :func:`replicate_aps`)."""
    aps, usable = replicate_aps(frame, models, n, seed)
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
