"""The production model trained with :mod:`lightgbm.dask`: risk.model.gbm's parameters and temporal scheme.

Every fit is LightGBM's data-parallel training on the cluster's workers, with
:data:`risk.model.gbm.PARAMS` (stumps, monotone constraints, bagging, seed), each
worker with its own threads, boosted from the same logistic prior
(:class:`risk.model.gbm.LinearPrior`, fitted on the client) given as ``init_score``.
The scheme is :func:`risk.model.gbm.train`'s: a probe fit on the older origins
picks the number of rounds on the two newest origins and calibrates there,
then a refit on every origin. LightGBM's early stopping cannot run in
distributed training (each worker would judge its own share of the validation
rows), so the probe runs all rounds and the round :func:`lightgbm.early_stopping`
would have kept is read off the validation log-loss of every round, here.

Rows reach the workers in a fixed layout (positives and negatives dealt in
turn to the partitions, partition i to the i-th worker, which is LightGBM's
machine i), so the same data and cluster size give the same model file. It is
not the local engine's model: each worker bags its own share of the rows and
finds the bins of its share of the features from them. The tests bound the gap.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import lightgbm as lgb
import numpy as np
import pandas as pd

from risk.model.gbm import (
    EARLY_STOP,
    MAX_ROUNDS,
    LinearPrior,
    TrainedModel,
    TrainingRows,
    lgb_params,
)
from risk.model.gbm import train as model_train

if TYPE_CHECKING:
    from distributed import Client

ROUNDS_PER_BLOCK = 100
"""Rounds scored at a time when reading the validation curve (bounds memory at national size)."""
_RANDOM_PARAMS = ("[machines:", "[local_listen_port:")
"""Model-file lines that name the ports of one training session: dropped, so that a model file is reproducible."""
NETWORK_TIMEOUT_MIN = 120
"""Minutes LightGBM's machines wait for each other (lightgbm.dask's default)."""


def train(rows: list[TrainingRows], features: list[str], seed: int, *, client: Client,
          npartitions: int, prior_features: list[str] | None = None) -> TrainedModel:
    """:func:`risk.model.gbm.train` on the cluster: the same scheme and prior, LightGBM's data-parallel fits."""
    def fit(X: pd.DataFrame, y: np.ndarray, seed: int, rounds: int,
            valid: tuple[pd.DataFrame, np.ndarray] | None = None,
            prior_columns: list[str] | None = None) -> tuple[lgb.Booster, LinearPrior]:
        return _fit(client, npartitions, seed, X, y, rounds, valid=valid, prior_columns=prior_columns)

    return model_train(rows, features, seed, fit=fit, where=f"on a Dask cluster of {len(client.nthreads())} "
                                                          "worker(s)", prior_features=prior_features)


def _fit(client: Client, npartitions: int, seed: int, X: pd.DataFrame, y: np.ndarray, rounds: int,
         valid: tuple[pd.DataFrame, np.ndarray] | None = None,
         prior_columns: list[str] | None = None) -> tuple[lgb.Booster, LinearPrior]:
    """:func:`risk.model.gbm._fit` on the cluster: stumps boosted from the logistic prior, early-stopped on ``valid``.

    The prior (a logistic regression) is fitted here, on the client; with a
    validation set the fit runs every round and ``best_iteration`` is set to
    the round LightGBM's early stopping would have kept.
    """
    prior = LinearPrior.fit(X[prior_columns] if prior_columns else X, y, seed)
    stop = valid is not None and len(np.unique(valid[1])) >= 2
    params = {**lgb_params(seed, list(X.columns)), "n_estimators": MAX_ROUNDS if stop else rounds,
              "tree_learner": "data"}
    text = _data_parallel(client, params, _placed(client, X, y, prior(X), npartitions)).model_to_string()
    booster = lgb.Booster(model_str="\n".join(ln for ln in text.split("\n") if not ln.startswith(_RANDOM_PARAMS)))
    if stop:
        assert valid is not None
        booster.best_iteration = early_stopping_round(booster, valid[0], valid[1], prior(valid[0]))
    return booster, prior


def _data_parallel(client: Client, params: dict[str, object], parts: dict[str, list[dict]]) -> lgb.Booster:
    """LightGBM's data-parallel training, one LightGBM machine per worker, ranked in the order of ``parts``.

    This is :class:`lightgbm.dask.DaskLGBMClassifier`'s own worker routine and
    port set-up; only the ranks are ours. That class ranks the workers in the
    order of a Python set of task keys, which changes from run to run, and a
    machine's rank decides which features' histogram bins it finds from its
    own rows: the same data would give a different model file each time.
    """
    from lightgbm import LGBMClassifier
    from lightgbm.dask import _assign_open_ports_to_workers, _train_part

    workers = list(parts)
    sockets, ports = _assign_open_ports_to_workers(client=client, workers=workers)
    machines = ",".join(f"{urlparse(w).hostname}:{ports[w]}" for w in workers)
    threads = client.nthreads()
    futures = [client.submit(_train_part, model_factory=LGBMClassifier,
                             params={**params, "num_threads": threads[w]},  # each worker with its own threads
                             list_of_parts=parts[w], machines=machines, local_listen_port=ports[w],
                             num_machines=len(workers), time_out=NETWORK_TIMEOUT_MIN, remote_socket=sockets[w],
                             return_model=rank == 0, workers=[w], allow_other_workers=False, pure=False)
               for rank, w in enumerate(workers)]
    return client.gather(futures)[0].booster_


def _placed(client: Client, X: pd.DataFrame, y: np.ndarray, init: np.ndarray,
            npartitions: int) -> dict[str, list[dict]]:
    """The rows on the workers in a fixed layout: partition i on the i-th worker (in address order).

    Positives and negatives are dealt in turn to the partitions, so every
    partition holds both classes (each worker encodes its own labels) and a
    similar share of each.
    """
    y = np.asarray(y)
    classes = [np.flatnonzero(y == c) for c in np.unique(y)]
    n = max(1, min([npartitions, *(len(c) for c in classes)]))
    part = np.empty(len(y), dtype=np.int64)
    for members in classes:
        part[members] = np.arange(len(members)) % n
    workers = sorted(client.nthreads())
    out: dict[str, list[dict]] = {}
    for p in range(n):
        rows = np.flatnonzero(part == p)
        on = workers[p % len(workers)]
        pieces = {"data": X.iloc[rows], "label": pd.Series(y[rows], index=X.index[rows]),
                  "init_score": pd.Series(init[rows], index=X.index[rows])}
        out.setdefault(on, []).append({k: client.scatter(v, workers=[on]) for k, v in pieces.items()})
    return out


def early_stopping_round(booster: lgb.Booster, X: pd.DataFrame, y: np.ndarray, init: np.ndarray) -> int:
    """The best round :func:`lightgbm.early_stopping` (``EARLY_STOP`` rounds, binary log-loss) would keep,
    for a validation set whose scores start at ``init``."""
    best, best_round = np.inf, 0
    for i, loss in enumerate(_logloss_by_round(booster, X, np.asarray(y, dtype="float64"), init)):
        if loss < best:
            best, best_round = loss, i
        elif i - best_round >= EARLY_STOP:
            break
    return best_round + 1


def _logloss_by_round(booster: lgb.Booster, X: pd.DataFrame, y: np.ndarray, init: np.ndarray) -> Iterator[float]:
    """Binary log-loss of the scores after each round, as LightGBM's metric computes it."""
    values = _leaf_values(booster)
    raw = np.array(init, dtype="float64")
    eps = 1e-15
    for start in range(0, len(values), ROUNDS_PER_BLOCK):
        leaves = booster.predict(X, pred_leaf=True, start_iteration=start, num_iteration=ROUNDS_PER_BLOCK)
        leaves = np.asarray(leaves).reshape(len(y), -1)
        for j in range(leaves.shape[1]):
            raw += values[start + j][leaves[:, j]]
            p = 1.0 / (1.0 + np.exp(-raw))
            yield float(np.mean(np.where(y > 0, -np.log(np.maximum(p, eps)), -np.log(np.maximum(1 - p, eps)))))
        if start == 0 and not np.allclose(raw - init, booster.predict(X, raw_score=True, num_iteration=leaves.shape[1]),
                                          rtol=0, atol=1e-9):
            raise RuntimeError("the per-round scores do not add up to LightGBM's own raw scores")


def _leaf_values(booster: lgb.Booster) -> list[np.ndarray]:
    """Per tree, its leaf outputs by leaf index."""
    out = []
    for tree in booster.dump_model()["tree_info"]:
        found: dict[int, float] = {}

        def walk(node: dict) -> None:
            if "leaf_value" in node:
                found[int(node.get("leaf_index", 0))] = float(node["leaf_value"])
            else:
                walk(node["left_child"])
                walk(node["right_child"])

        walk(tree["tree_structure"])
        values = np.zeros(max(found) + 1)
        values[list(found)] = list(found.values())
        out.append(values)
    return out
