"""Named crash points for fault-injection tests of the weekly job.

``checkpoint("alerts.queued")`` does nothing unless the environment variable
``RISK_FAULT_POINT`` names that point (``name`` or ``name#n`` for its n-th
pass). Then the process announces the point by writing its name to the file
in ``RISK_FAULT_SIGNAL`` and waits to be killed (SIGKILL) by the test, or
kills itself when no signal file is given. Production runs never set these
variables, so a checkpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

POINT_ENV = "RISK_FAULT_POINT"
SIGNAL_ENV = "RISK_FAULT_SIGNAL"
_passes: Counter[str] = Counter()


def checkpoint(name: str) -> None:
    """A place where a crash is worth testing; see the module docstring."""
    wanted = os.environ.get(POINT_ENV)
    if not wanted:
        return
    _passes[name] += 1
    point, _, nth = wanted.partition("#")
    if point != name or _passes[name] != int(nth or 1):
        return
    signal_file = os.environ.get(SIGNAL_ENV)
    if signal_file:
        with open(signal_file, "w", encoding="utf-8") as f:
            f.write(wanted)
        time.sleep(120)  # the test kills us here; the timeout only guards against a test that forgot to
    os.kill(os.getpid(), signal.SIGKILL)
