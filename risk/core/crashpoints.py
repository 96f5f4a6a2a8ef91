"""Named crash points for fault-injection tests of the weekly job, every one declared in :data:`CRASH_POINTS`.

``checkpoint("alerts.composed")`` does nothing unless the environment variable
``RISK_FAULT_POINT`` names that point (``name`` or ``name#n`` for its n-th
pass). Then the process announces the point by writing its name to the file
in ``RISK_FAULT_SIGNAL`` and waits to be killed (SIGKILL) by the test, or
kills itself when no signal file is given. Production runs never set these
variables, so a checkpoint costs two dictionary lookups.

A name that is not in :data:`CRASH_POINTS` is a programming error:
``checkpoint`` raises ``ValueError`` for it (and for a ``RISK_FAULT_POINT``
naming no declared point), so a misspelt point fails loudly instead of never
firing. This module lives in :mod:`risk.core`, not :mod:`risk.service`,
because crash points sit below the service layer too: the model registry
(:mod:`risk.model.registry`) and the outbox (:mod:`risk.delivery.outbox`)
call ``checkpoint``, and the layers contract lets them import only the
stages beneath them.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

POINT_ENV = "RISK_FAULT_POINT"
SIGNAL_ENV = "RISK_FAULT_SIGNAL"

CRASH_POINTS: dict[str, str] = {
    # in the order a weekly run passes them; "<stage>.done" is passed as each stage of
    # risk.service.pipeline (its STAGES) ends, the others inside a stage
    "validate.done": "the sources are loaded and checked; only the run row is written",
    "features.written": "the feature table is in its temporary file, not yet renamed into place",
    "features.done": "the feature table is in place",
    "train.backtested": "the backtest is done (training runs only); its report is not yet written",
    "registry.renaming": "a new model's folder is complete under its temporary name, not yet renamed into the registry",
    "train.done": "the run's model is chosen (trained and registered, or the champion kept)",
    "score.done": "every tract is scored, in memory only",
    "explain.done": "every tract's SHAP drivers are computed, in memory only",
    "store.done": "the scores and drivers are stored in the database",
    "alerts.composed": "the week's messages are composed, not yet queued in the outbox",
    "alerts.done": "the messages are queued in the outbox",
    "deliver.claimed": "a message is claimed (state 'sending'), not yet handed to the transport",
    "deliver.sent": "the transport took a message, not yet marked sent in the outbox",
    "deliver.marked": "a message's outcome (sent, failed or queued again) is recorded in the outbox",
    "deliver.done": "every queued message was tried",
    "run.finishing": "every stage is done; the run row is not yet marked finished",
}
"""Every crash point's name and what has happened (and what has not) when a process is killed there."""

_passes: Counter[str] = Counter()


def checkpoint(name: str) -> None:
    """A place where a crash is worth testing; see the module docstring. ``ValueError`` for an undeclared name."""
    if name not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {name!r}: declare it in risk.core.crashpoints.CRASH_POINTS")
    wanted = os.environ.get(POINT_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("#")
    if point not in CRASH_POINTS:
        raise ValueError(f"{POINT_ENV}={wanted!r} names no crash point; the points are {', '.join(CRASH_POINTS)}")
    _passes[name] += 1
    if point != name or _passes[name] != int(nth or 1):
        return
    signal_file = os.environ.get(SIGNAL_ENV)
    if signal_file:
        with open(signal_file, "w", encoding="utf-8") as f:
            f.write(wanted)
        time.sleep(120)  # the test kills us here; the timeout only guards against a test that forgot to
    os.kill(os.getpid(), signal.SIGKILL)
