"""Crash safety and exactly-once delivery: `risk run` killed (SIGKILL) at crash points in every stage.

Two weeks of the weekly job on the bundled data deliver to a real SMTP server
(aiosmtpd on loopback). Each week the job is killed at a chain of crash
points, one kill per process, and then run to the end. After every kill the
model registry and the stored scores must be valid; after each week every
message a clean run would send must have arrived exactly once.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from jobproc import job_config, run_until
from smtp import SmtpServer

from risk.alerts.rules import week_of
from risk.core.settings import load_settings
from risk.core.store import engine_for
from risk.delivery.outbox import outbox_rows
from risk.model.registry import Registry
from risk.service.pipeline import run

KING_TRACTS = 397
WEEKS = ("2017-03-06", "2018-03-05")
# week one trains the first model; every stage has at least one point; deliver.claimed#n is the n-th message
# claimed by that process, so a chain of them walks through the outbox (every recipient gets a digest each
# week, even an empty one, so each week has at least four messages)
POINTS = {
    "2017-03-06": ["validate.done", "features.written", "features.done", "registry.renaming",
                   "train.done", "score.done", "explain.done", "store.done", "alerts.composed", "alerts.done",
                   "deliver.claimed#1", "deliver.marked#1", "deliver.claimed#2", "deliver.done", "run.finishing"],
    "2018-03-05": ["features.written", "score.done", "store.done", "alerts.composed", "deliver.claimed#1",
                   "deliver.claimed#3", "deliver.marked#2", "deliver.done", "run.finishing"],
}
RECIPIENTS = [
    {"name": "Housing team", "email": "housing@example.org", "areas": ["all"], "empty_digest": True},
    {"name": "Seattle planners", "email": "planners@example.org", "areas": ["Seattle"], "immediate": True,
     "empty_digest": True},
    {"name": "County desk", "email": "county@example.org", "areas": ["King County outside Seattle"],
     "immediate": True, "empty_digest": True},
    {"name": "Council office", "email": "council@example.org", "areas": ["53033"], "empty_digest": True},
]


def _config(folder: Path, delivery: dict) -> Path:
    return job_config(folder, delivery=delivery, recipients=RECIPIENTS)


def _assert_state_valid(folder: Path) -> None:
    """The registry loads, every stored run has all its scores, and the database is sound."""
    registry = Registry(folder / "models")
    for record in registry.list():
        record.load()
    champion = registry.champion("eviction_surge")
    if champion is not None:
        champion.load()
    db = folder / "state" / "risk.sqlite"
    if not db.exists():
        return
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = pd.read_sql("SELECT r.id, r.status, COUNT(s.geoid) AS n FROM runs r LEFT JOIN scores s "
                             "ON s.run_id = r.id GROUP BY r.id", conn)
    assert counts["n"].isin([0, KING_TRACTS]).all(), counts  # a run's scores are stored whole or not at all
    assert (counts.loc[counts["status"].isin(["scored", "finished"]), "n"] == KING_TRACTS).all(), counts
    assert (counts.loc[counts["status"] == "running", "n"] == 0).all(), counts


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[str, str]]]:
    """(recipient, subject) of every message clean runs queue, per week (file transport, in-process)."""
    folder = tmp_path_factory.mktemp("reference")
    settings = load_settings(_config(folder, {"transport": "file"}))
    expected: dict[str, set[tuple[str, str]]] = {}
    for week in WEEKS:
        run(settings, as_of=pd.Timestamp(week).date())
        rows = outbox_rows(engine_for(settings.paths.database))
        expected[week] = {(r["recipient"], r["subject"]) for r in rows if r["week"] == _week(week)}
    return expected


def _week(as_of: str) -> str:
    return week_of(pd.Timestamp(as_of).date())


@pytest.mark.slow
def test_a_run_killed_at_any_point_loses_no_message_and_sends_none_twice(
        tmp_path: Path, reference: dict[str, set[tuple[str, str]]]) -> None:
    kills = 0
    with SmtpServer() as server:
        config = _config(tmp_path / "job", {"transport": "smtp", "smtp": {
            "host": server.host, "port": server.port, "security": "none", "timeout_s": 5}})
        for week in WEEKS:
            for point in POINTS[week]:
                outcome = run_until(config, ["run", "--as-of", week], point, tmp_path / "reached")
                assert outcome.killed, f"{week}: the run ended ({outcome.exit_code}) before reaching {point}"
                kills += 1
                _assert_state_valid(tmp_path / "job")
                arrived = Counter(str(m.message["Message-ID"]) for m in server.messages)
                assert max(arrived.values(), default=1) == 1, f"a message arrived twice after a kill at {point}"
            final = run_until(config, ["run", "--as-of", week], None, tmp_path / "reached")
            assert final.exit_code == 0
            _assert_state_valid(tmp_path / "job")
            rows = [r for r in outbox_rows(engine_for(tmp_path / "job" / "state" / "risk.sqlite"))]
            this_week = [r for r in rows if r["week"] == _week(week)]
            assert {(r["recipient"], r["subject"]) for r in this_week} == reference[week]
            assert {r["state"] for r in this_week} == {"sent"}
            arrived = Counter(str(m.message["Message-ID"]) for m in server.messages)
            assert {r["message_id"] for r in this_week} <= set(arrived)
            assert set(arrived.values()) == {1}
    assert kills >= 20


def test_a_message_the_server_accepted_just_before_a_kill_is_sent_again_with_the_same_id(
        tmp_path: Path, trained_job: Path) -> None:
    # the one window no SMTP client can close (see risk/delivery/outbox.py): at least once, never lost
    import shutil

    with SmtpServer() as server:
        config = job_config(tmp_path / "job", recipients=RECIPIENTS[:1], delivery={"transport": "smtp", "smtp": {
            "host": server.host, "port": server.port, "security": "none", "timeout_s": 5}})
        shutil.copytree(trained_job / "models", tmp_path / "job" / "models")
        assert run_until(config, ["run", "--as-of", WEEKS[1]], "deliver.sent", tmp_path / "reached").killed
        assert run_until(config, ["run", "--as-of", WEEKS[1]], None, tmp_path / "reached").exit_code == 0
        ids = [str(m.message["Message-ID"]) for m in server.messages]
    assert len(ids) == 2 and ids[0] == ids[1]


def _damaged(db: Path) -> bool:
    """Whether SQLite itself finds the file damaged (its check may also fail outright on a bad page)."""
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("PRAGMA integrity_check").fetchall() != [("ok",)]
    except sqlite3.DatabaseError:
        return True


def test_a_damaged_database_is_refused_before_any_stage_and_db_check_reports_it(
        tmp_path: Path, trained_job: Path) -> None:
    import shutil
    import subprocess
    import sys

    from click.testing import CliRunner

    from risk.cli.main import main

    def cli(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["--config", str(config), *args])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result.exit_code, result.output

    config = job_config(tmp_path / "job", recipients=RECIPIENTS[:1])
    shutil.copytree(trained_job / "models", tmp_path / "job" / "models")
    assert run_until(config, ["run", "--as-of", WEEKS[1]], None, tmp_path / "reached").exit_code == 0
    db = tmp_path / "job" / "state" / "risk.sqlite"
    code, output = cli("db", "check")
    assert code == 0 and f"{db}: ok (PRAGMA integrity_check; rows: " in output and f"scores {KING_TRACTS}" in output
    backup = tmp_path / "backup.sqlite"
    assert cli("db", "backup", str(backup)) == (0, f"backed up {db} to {backup} ({backup.stat().st_size:,} bytes)\n")

    with sqlite3.connect(db) as conn:  # everything into the main file, so the damage below is what is read
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size, pages = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count"))
    with db.open("r+b") as f:  # one page in the middle of the file overwritten, as a failing disk might
        f.seek(page_size * (pages // 2))
        f.write(b"\xff" * page_size)
    assert _damaged(db)
    features = {p: p.stat().st_mtime_ns for p in (tmp_path / "job" / "state" / "features").iterdir()}
    sent = sorted(p.name for p in (tmp_path / "job" / "outbox").iterdir())

    proc = subprocess.run([str(Path(sys.executable).with_name("risk")), "--config", str(config), "run", "--as-of",
                           "2018-03-12"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert f"error: the database {db} is damaged (" in proc.stderr and "nothing was run" in proc.stderr
    assert "restore the database from its last backup" in proc.stderr and "`risk db check`" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and len(proc.stderr.strip().splitlines()) == 1
    # refused before the first stage: no features written, no message sent
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "job" / "state" / "features").iterdir()} == features
    assert sorted(p.name for p in (tmp_path / "job" / "outbox").iterdir()) == sent

    code, output = cli("db", "check")
    assert code == 4 and f"error: the database {db} is damaged: " in output and "PRAGMA integrity_check" in output
    code, output = cli("db", "backup", str(backup))
    assert code == 4 and f"no backup was written and {backup} is unchanged" in output
    assert not _damaged(backup)

    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):  # what the message says
        stale.unlink(missing_ok=True)
    shutil.copy(backup, db)
    assert cli("db", "check")[0] == 0
