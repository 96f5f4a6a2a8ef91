"""PNG pictures for the pages, drawn on demand with :mod:`risk.scoring.explain` and kept per run.

matplotlib's pyplot state is global, so drawing is serialised; a picture is
drawn once per run (and tract) and then served from memory.
"""

from __future__ import annotations

import functools
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from risk.scoring.explain import (
    Explanation,
    bar_png,
    beeswarm_png,
    contributions,
    waterfall_png,
)
from risk.web.data import RunView, WebData

_draw_lock = threading.Lock()


def _drawn(draw: Callable[..., Path], *args: Any) -> bytes:
    """PNG bytes of ``draw(*args, path)``, one drawing at a time."""
    with _draw_lock, tempfile.TemporaryDirectory(prefix="risk-web-") as tmp, warnings.catch_warnings():
        # a family missing for every tract (no rent series configured) is an all-NaN column: shap draws it grey
        # and numpy warns on every picture, which would only fill the server log
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        path = Path(tmp) / "picture.png"
        draw(*args, path)
        return path.read_bytes()


def tract_waterfall(data: WebData, view: RunView, geoid: str) -> bytes:
    """The tract's SHAP waterfall in this run."""
    def build() -> bytes:
        features = view.explainable()
        expl = contributions(view.model(), features.loc[[geoid]])
        probability = float(view.table.loc[geoid, "probability"])  # the one the page shows
        return _drawn(functools.partial(waterfall_png, probability=probability), expl, geoid)

    return data.memo(("waterfall", view.run_id, geoid), build)


def _all_contributions(data: WebData, view: RunView) -> Explanation:
    return data.memo(("contributions", view.run_id), lambda: contributions(view.model(), view.explainable()))


def importance(data: WebData, view: RunView) -> bytes:
    """Mean |SHAP| per feature over every tract of the run."""
    return data.memo(("importance", view.run_id), lambda: _drawn(bar_png, _all_contributions(data, view)))


def beeswarm(data: WebData, view: RunView) -> bytes:
    """Every tract's contributions of the most important features, coloured by the feature's value."""
    return data.memo(("beeswarm", view.run_id), lambda: _drawn(beeswarm_png, _all_contributions(data, view)))
