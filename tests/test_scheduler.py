"""`risk schedule`: real scheduler processes on a real SQLite job store, with a trigger every few seconds."""

from __future__ import annotations

import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from jobproc import job_config

from risk.core.store import engine_for
from risk.service.history import list_runs

RISK = Path(sys.executable).with_name("risk")


def _start(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(RISK), "--config", str(config), "schedule"], stdout=log.open("a"),
                            stderr=subprocess.STDOUT)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120)


@pytest.mark.slow
def test_two_schedulers_never_overlap_a_restart_keeps_the_job_and_sigterm_ends_cleanly(
        tmp_path: Path, trained_job: Path) -> None:
    config = job_config(tmp_path, recipients=[], sections={"schedule": {"every_s": 2, "lock_stale_s": 30}})
    shutil.copytree(trained_job / "models", tmp_path / "models")
    engine = engine_for(tmp_path / "state" / "risk.sqlite")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [_start(config, logs[0]), _start(config, logs[1])]

    def finished() -> list[dict]:
        return [r for r in list_runs(engine, 1000) if r["status"] == "finished"]

    _wait_for(lambda: len(finished()) >= 4, 240, "four finished runs")
    assert [_stop(p) for p in procs] == [0, 0]

    runs = sorted(list_runs(engine, 1000), key=lambda r: r["started_at"])
    ends = [r["finished_at"] for r in runs]
    assert all(e is not None for e in ends), "a run was left unfinished by SIGTERM"
    for before, after in zip(runs, runs[1:]):
        assert after["started_at"] >= before["finished_at"], f"runs {before['id']} and {after['id']} overlap"
    text = logs[0].read_text() + logs[1].read_text()
    assert "skipped this run: another run holds the lock" in text
    assert text.count("scheduler stopped") == 2 and "Traceback" not in text

    with sqlite3.connect(tmp_path / "state" / "risk.sqlite") as conn:
        assert conn.execute("SELECT id FROM apscheduler_jobs").fetchall() == [("risk-weekly-run",)]
    time.sleep(8)  # four trigger times pass while no scheduler runs
    before = len(finished())
    again = _start(config, tmp_path / "c.log")
    _wait_for(lambda: len(finished()) > before, 120, "a run after the restart")
    assert _stop(again) == 0
    log = (tmp_path / "c.log").read_text()
    assert "kept the stored job" in log
    started = datetime.strptime(re.search(r"^(\S+ \S+) INFO apscheduler.scheduler: Scheduler started", log,
                                          re.M).group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone()
    scheduled = [datetime.fromisoformat(m) for m in re.findall(r"Running job .*\(scheduled at ([^)]+)\)", log)]
    missed = [s for s in scheduled if s < started]
    assert len(missed) == 1, f"the runs missed while down should run once at start-up, not {len(missed)} times"
