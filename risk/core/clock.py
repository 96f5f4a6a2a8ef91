"""The one reading of today's date.

Entry points (a command, the scheduler's job, a web request) call :func:`today`
once and pass the date down; no stage reads the clock itself, so one run sees
one date even across midnight, and a test or a replay can give any date.
"""

from __future__ import annotations

from datetime import date


def today() -> date:
    """Today's date on this machine's clock."""
    return date.today()
