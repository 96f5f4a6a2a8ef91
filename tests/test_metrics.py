"""The tract-cluster bootstrap: each resample's PR-AUC is scikit-learn's on the copied rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from risk.model.metrics import bootstrap, replicate_aps


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tracts, origins = 60, 3
    frame = pd.DataFrame({"geoid": np.tile([f"53033{i:06d}" for i in range(tracts)], origins)})
    frame["y"] = (rng.random(len(frame)) < 0.12).astype(int)
    frame["tied"] = np.round(rng.random(len(frame)) + 0.3 * frame["y"], 1)  # many tied scores
    frame["gappy"] = rng.random(len(frame))
    frame.loc[rng.random(len(frame)) < 0.25, "gappy"] = np.nan  # rows a model cannot score
    frame["flat"] = 0.5
    return frame


def _copied(frame: pd.DataFrame, n: int, seed: int) -> list[pd.DataFrame]:
    """The resamples spelled out: every row of a drawn tract repeated once per draw."""
    rng = np.random.default_rng(seed)
    geoids = frame["geoid"].unique()
    tract = pd.Index(geoids).get_indexer(frame["geoid"])
    out = []
    for _ in range(n):
        copies = np.bincount(rng.choice(len(geoids), size=len(geoids), replace=True), minlength=len(geoids))
        out.append(frame.iloc[np.repeat(np.arange(len(frame)), copies[tract])])
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_each_resample_pr_auc_equals_scikit_learn_on_the_copied_rows(seed: int) -> None:
    frame = _frame(seed)
    models = ["tied", "gappy", "flat"]
    aps, usable = replicate_aps(frame, models, 40, seed)
    for i, rows in enumerate(_copied(frame, 40, seed)):
        assert usable[i] == (0 < rows["y"].sum() < len(rows))
        for m in models:
            scored = rows[rows[m].notna()]
            expected = average_precision_score(scored["y"], scored[m]) if scored["y"].nunique() == 2 else np.nan
            assert aps[m][i] == pytest.approx(expected, abs=1e-12, nan_ok=True), (m, i)


def test_a_model_without_scores_has_no_interval_and_the_ratio_ignores_it() -> None:
    frame = _frame(3).assign(empty=np.nan)
    cis, ratio = bootstrap(frame, ["tied", "gappy", "empty"], 60, 3, "tied", "gappy")
    assert np.isnan(cis["empty"]).all()
    assert cis["tied"][0] < cis["tied"][1] and ratio[0] < ratio[1]


def test_resamples_without_both_classes_are_left_out() -> None:
    frame = _frame(4)
    frame["y"] = 0
    frame.loc[0, "y"] = 1  # one positive tract: most resamples miss it
    aps, usable = replicate_aps(frame, ["tied"], 50, 4)
    assert not usable.all() and np.isnan(aps["tied"][~usable]).all()
