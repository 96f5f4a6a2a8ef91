"""Crontab expressions as people write them, turned into APScheduler triggers."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _cron_days(field: str) -> str:
    """A crontab day-of-week field with numbers as names: cron counts 0 (and 7) as Sunday, APScheduler as Monday."""
    def item(part: str) -> str:
        base, slash, step = part.partition("/")
        return re.sub(r"\d+", lambda m: _DAYS[int(m.group()) % 7], base) + slash + step

    return ",".join(item(p) for p in field.split(","))


def cron_trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A trigger for a standard 5-field crontab expression (day-of-week numbers as cron means them)."""
    fields = expression.split()
    if len(fields) == 5:
        fields[4] = _cron_days(fields[4])
    return CronTrigger.from_crontab(" ".join(fields), timezone=zone)
