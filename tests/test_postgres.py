"""The weekly job, the run lock, crash safety, the scheduler and the review pages on a real PostgreSQL server.

A server from Debian's ``postgresql`` package starts once for the session in a
temporary folder on loopback (``tests/postgres.py``); each test gets a fresh
database on it. The model comes from the session's ``trained_job``
(SQLite), so no test here trains.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest
from click.testing import CliRunner
from jobproc import _CTX, _child, job_config, run_until
from postgres import Server, postgres_server
from smtp import SmtpServer
from sqlalchemy import Engine, func, inspect, select, text

from risk.cli.main import main
from risk.core.crashpoints import POINT_ENV, SIGNAL_ENV
from risk.core.store import engine_for, run_scores, runs, scores
from risk.delivery.outbox import outbox_rows
from risk.model.registry import Registry
from risk.service.history import list_runs

AS_OF = "2018-03-05"
KING_TRACTS = 397
RISK = Path(sys.executable).with_name("risk")
RECIPIENTS = [  # every one gets a digest, even an empty one: enough messages for kills between two sends
    {"name": "Housing team", "email": "housing@example.org", "areas": ["all"], "empty_digest": True},
    {"name": "Seattle planners", "email": "planners@example.org", "areas": ["Seattle"], "immediate": True,
     "empty_digest": True},
    {"name": "Council office", "email": "council@example.org", "areas": ["53033"], "empty_digest": True},
]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    """A PostgreSQL server for the session (skipped, with the reason, where PostgreSQL is not installed)."""
    with postgres_server() as server:
        yield server


@dataclass(frozen=True)
class Job:
    """A job folder with a trained model whose first `risk run` stored into a PostgreSQL database."""

    folder: Path
    config: Path
    url: str
    summary: str


def _cli(config: Path, *args: str) -> tuple[int, str]:
    """`risk ARGS` in this process; an exception other than the CLI's own exit would be a traceback."""
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _job(folder: Path, models: Path, url: str, **sections: dict) -> Path:
    """A job folder on database ``url`` with a trained registry copied in, so no run trains."""
    config = job_config(folder, recipients=RECIPIENTS, sections={"paths": {"database": url}, **sections})
    shutil.copytree(models, folder / "models")
    return config


@pytest.fixture(scope="module")
def job(postgres: Server, trained_job: Path, tmp_path_factory: pytest.TempPathFactory) -> Job:
    """`risk run` once on the bundled data into a PostgreSQL database: scores, drivers, alerts, e-mails.

    The model comes from the session's ``trained_job`` (training writes files only, not to the database)."""
    folder = tmp_path_factory.mktemp("pg-job")
    url = postgres.create_database()
    config = _job(folder, trained_job / "models", url)
    code, output = _cli(config, "run", "--as-of", AS_OF, "--json")
    assert code == 0, output
    return Job(folder, config, url, output[output.index("{"):])


def _assert_state_valid(engine: Engine, folder: Path) -> None:
    """The registry loads and every run's scores are stored whole or not at all."""
    for record in Registry(folder / "models").list():
        record.load()
    query = (select(runs.c.id, runs.c.status, func.count(scores.c.geoid).label("n"))
             .select_from(runs.outerjoin(scores, scores.c.run_id == runs.c.id)).group_by(runs.c.id, runs.c.status))
    with engine.connect() as conn:
        counts = conn.execute(query).all()
    for run_id, status, n in counts:
        assert n in (0, KING_TRACTS), (run_id, status, n)
        assert n == KING_TRACTS or status not in ("scored", "finished"), (run_id, status, n)


def test_the_weekly_job_stores_its_run_scores_and_outbox_in_postgresql(job: Job) -> None:
    summary = json.loads(job.summary)
    assert summary["retrained"] is False and summary["tracts_scored"] == KING_TRACTS
    engine = engine_for(job.url)
    assert engine.dialect.name == "postgresql"
    [row] = list_runs(engine)
    assert row["status"] == "finished" and row["as_of"] == date.fromisoformat(AS_OF)
    assert row["started_at"].tzinfo is not None and row["counts"]["tracts_scored"] == KING_TRACTS
    assert len(run_scores(engine, row["id"])) == KING_TRACTS
    sent = outbox_rows(engine)
    assert len(sent) == summary["emails_queued"] >= len(RECIPIENTS) and {r["state"] for r in sent} == {"sent"}
    assert sorted(p.stem for p in (job.folder / "outbox").glob("*.eml")) == sorted(r["key"] for r in sent)
    code, listing = _cli(job.config, "runs", "list", "--json")
    assert code == 0 and [r["status"] for r in json.loads(listing)] == ["finished"]
    code, checked = _cli(job.config, "db", "check")
    assert code == 0 and ": ok (every table read through; rows: " in checked and f"scores {KING_TRACTS}" in checked


def test_a_second_run_compares_against_the_first_and_queues_nothing_twice(
        postgres: Server, job: Job, tmp_path: Path) -> None:
    url = postgres.create_database()
    config = _job(tmp_path, job.folder / "models", url)
    assert _cli(config, "run", "--as-of", AS_OF)[0] == 0
    assert _cli(config, "run", "--as-of", AS_OF)[0] == 0  # the same week again: every key already queued
    engine = engine_for(url)
    first, second = sorted(list_runs(engine), key=lambda r: r["id"])
    assert second["counts"]["emails_queued"] == 0 and second["counts"]["alerts"] == 0
    stored = run_scores(engine, second["id"])
    ranked = stored["unranked"].isna()
    changes = stored.loc[ranked, "percentile_change"]
    assert changes.notna().all() and (changes == 0).all()
    assert list(stored.index[~ranked]) == ["53033005302"]  # group quarters: not ranked, so no rank change
    assert stored.loc[~ranked, "percentile_change"].isna().all()


def _start_paused(config: Path, point: str, signal_file: Path) -> BaseProcess:
    """`risk run` in its own process, stopped (alive, holding the lock) at a crash point."""
    proc = _CTX.Process(target=_child, args=(str(config), ["run", "--as-of", AS_OF],
                                             {POINT_ENV: point, SIGNAL_ENV: str(signal_file)}))
    proc.start()
    deadline = time.monotonic() + 120
    while not (signal_file.exists() and signal_file.read_text() == point):
        assert proc.is_alive() and time.monotonic() < deadline, f"the run ended before reaching {point}"
        time.sleep(0.02)
    return proc


def test_one_run_at_a_time_across_processes_and_a_dead_holder_is_taken_over(
        postgres: Server, job: Job, tmp_path: Path) -> None:
    url = postgres.create_database()
    config = _job(tmp_path / "job", job.folder / "models", url)
    holder = _start_paused(config, "score.done", tmp_path / "reached")
    try:
        code, output = _cli(config, "run", "--as-of", AS_OF)
        assert code == 6 and "another run holds the lock" in output
        assert run_until(config, ["run", "--as-of", AS_OF], None, tmp_path / "other").exit_code == 6
    finally:
        holder.kill()
        holder.join()
    code, output = _cli(config, "run", "--as-of", AS_OF)  # the holder's process is gone: its lock is taken over
    assert code == 0, output
    engine = engine_for(url)
    assert [r["status"] for r in sorted(list_runs(engine), key=lambda r: r["id"])] == ["abandoned", "finished"]
    _assert_state_valid(engine, tmp_path / "job")


# scores committed, alerts composed but not queued; a message claimed after one was sent; all sent, not finished
KILL_POINTS = ["alerts.composed", "deliver.claimed#2", "run.finishing"]


def test_a_run_killed_at_crash_points_loses_no_message_and_sends_none_twice(
        postgres: Server, job: Job, tmp_path: Path) -> None:
    expected = {(r["recipient"], r["subject"]) for r in outbox_rows(engine_for(job.url))}
    url = postgres.create_database()
    engine = engine_for(url)
    with SmtpServer() as server:
        config = _job(tmp_path / "job", job.folder / "models", url, delivery={"transport": "smtp", "smtp": {
            "host": server.host, "port": server.port, "security": "none", "timeout_s": 5}})
        for point in KILL_POINTS:
            outcome = run_until(config, ["run", "--as-of", AS_OF], point, tmp_path / "reached")
            assert outcome.killed, f"the run ended ({outcome.exit_code}) before reaching {point}"
            _assert_state_valid(engine, tmp_path / "job")
            arrived = Counter(str(m.message["Message-ID"]) for m in server.messages)
            assert max(arrived.values(), default=1) == 1, f"a message arrived twice after a kill at {point}"
        assert run_until(config, ["run", "--as-of", AS_OF], None, tmp_path / "reached").exit_code == 0
        arrived = Counter(str(m.message["Message-ID"]) for m in server.messages)
    _assert_state_valid(engine, tmp_path / "job")
    rows = outbox_rows(engine)
    assert {(r["recipient"], r["subject"]) for r in rows} == expected
    assert {r["state"] for r in rows} == {"sent"} and set(arrived.values()) == {1}
    assert {r["message_id"] for r in rows} == set(arrived)
    statuses = [r["status"] for r in sorted(list_runs(engine), key=lambda r: r["id"])]
    assert statuses == ["abandoned"] * len(KILL_POINTS) + ["finished"]


def test_the_scheduler_keeps_its_job_in_postgresql_and_stops_cleanly(
        postgres: Server, job: Job, tmp_path: Path) -> None:
    url = postgres.create_database()
    config = _job(tmp_path, job.folder / "models", url, schedule={"every_s": 1})
    engine = engine_for(url)
    log = tmp_path / "schedule.log"
    proc = subprocess.Popen([str(RISK), "--config", str(config), "schedule"], stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not any(r["status"] == "finished" for r in list_runs(engine)):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    text_ = log.read_text()
    assert code == 0 and "scheduler stopped" in text_ and "Traceback" not in text_, text_
    with engine.connect() as conn:
        assert inspect(conn).has_table("apscheduler_jobs")
        assert conn.execute(text("SELECT id FROM apscheduler_jobs")).scalars().all() == ["risk-weekly-run"]


def test_the_review_pages_log_in_show_tracts_and_record_a_decision(job: Job,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient
    from web_support import SECRET, SECRET_ENV, login, token

    from risk.core.settings import load_settings
    from risk.core.store import latest_decisions
    from risk.web import accounts, create_app

    settings = load_settings(job.config)
    engine = accounts.open_database(settings.paths.database)
    accounts.add_user(engine, "pat", "planner", "planner-password-1", actor="test")
    monkeypatch.setenv(SECRET_ENV, SECRET)
    client = login(TestClient(create_app(settings), raise_server_exceptions=False), "pat", "planner-password-1")
    [run_row] = list_runs(engine)
    table = run_scores(engine, run_row["id"])
    geoid = str(table["probability"].idxmax())
    home = client.get("/")
    assert home.status_code == 200 and geoid in home.text
    response = client.post(f"/tracts/{geoid}/reviews", data={
        "decision": "escalated", "note": "checked on PostgreSQL", "follow_up": "", "csrf_token": token(client)},
        follow_redirects=False)
    assert response.status_code == 303, response.text
    page = client.get(f"/tracts/{geoid}")
    assert page.status_code == 200 and "checked on PostgreSQL" in page.text
    assert latest_decisions(engine).loc[geoid, "decision"] == "escalated"  # what the alert rules read
    [entry] = accounts.audit_entries(engine, target=geoid)
    assert entry["actor"] == "pat" and entry["after"]["decision"] == "escalated"


def test_a_lock_held_past_the_timeout_stops_the_run_with_exit_6(postgres: Server, job: Job,
                                                                 tmp_path: Path) -> None:
    import psycopg

    url = postgres.create_database()
    config = _job(tmp_path, job.folder / "models", url, paths={"database": url, "database_busy_timeout_s": 0.5})
    engine_for(url)  # the tables
    with psycopg.connect(url.replace("+psycopg", "")) as conn:  # a transaction stays open until the block ends
        conn.execute("LOCK TABLE locks IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        code, output = _cli(config, "run", "--as-of", AS_OF)
        waited = time.monotonic() - started
    assert code == 6, output
    assert f"the database {url} is busy" in output and "paths.database_busy_timeout_s" in output
    assert 0.5 <= waited < 30
    assert list_runs(engine_for(url)) == []


def test_processes_starting_together_create_the_tables_once(postgres: Server) -> None:
    # PostgreSQL would otherwise let two CREATE TABLEs of the same name race into a duplicate-key error
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    url = postgres.create_database()
    barrier = Barrier(4)

    def open_it(_: int) -> str:
        barrier.wait()
        return engine_for(url).dialect.name

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(open_it, range(4))) == ["postgresql"] * 4
    with engine_for(url).connect() as conn:
        assert {"runs", "scores", "drivers", "outbox", "locks", "reviews"} <= set(inspect(conn).get_table_names())


def test_queueing_a_key_another_sender_stored_meanwhile_keeps_the_first(postgres: Server) -> None:
    from datetime import UTC, datetime

    from risk.delivery.outbox import _insert_new

    engine = engine_for(postgres.create_database())
    row = {"key": "k1", "run_id": None, "week": "2018-W10", "kind": "digest", "recipient": "a@example.org",
           "subject": "first", "message_id": "<1@example.org>", "eml": "...", "state": "queued", "attempts": 0,
           "created_at": datetime.now(UTC)}
    with engine.begin() as conn:
        conn.execute(_insert_new(engine), [row])
        conn.execute(_insert_new(engine), [{**row, "subject": "second"}])  # the same key: nothing happens
    assert [(r["key"], r["subject"]) for r in outbox_rows(engine)] == [("k1", "first")]
