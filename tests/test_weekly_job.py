"""The weekly job as a service: run history, the database run lock, retraining policy, data freshness,
and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from jobproc import job_config
from sqlalchemy import insert

from risk.cli.main import main
from risk.core.errors import LockBusyError, RiskError, StaleDataError
from risk.core.settings import load_settings
from risk.core.store import engine_for, locks
from risk.model.registry import ModelRecord
from risk.service.history import get_run, list_runs
from risk.service.lock import RunLock, host_identity
from risk.service.pipeline import retrain_reason, run

AS_OF = date(2018, 3, 5)
RISK = Path(sys.executable).with_name("risk")


def _job(folder: Path, trained_job: Path, **kwargs: object) -> Path:
    """A job folder whose registry already holds a champion for the bundled data."""
    config = job_config(folder, **kwargs)  # type: ignore[arg-type]
    shutil.copytree(trained_job / "models", folder / "models")
    return config


def _optional_evictions(config: Path) -> Path:
    """The config with evictions no longer required."""
    text = config.read_text()
    assert "required: true" in text
    config.write_text(text.replace("required: true", "required: false"))
    return config


def _cli(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def test_a_run_is_recorded_with_its_stages_counts_hashes_and_model(tmp_path: Path, trained_job: Path) -> None:
    config = _job(tmp_path, trained_job)
    code, output = _cli(config, "run", "--as-of", str(AS_OF), "--json")
    assert code == 0, output
    summary = json.loads(output[output.index("{"):])
    row = get_run(engine_for(tmp_path / "state" / "risk.sqlite"), summary["run_id"])
    assert row is not None and row["status"] == "finished" and row["as_of"] == AS_OF
    assert set(row["stage_seconds"]) == {"validate", "features", "train", "score", "explain", "store", "alerts",
                                         "deliver"}
    assert row["counts"]["tracts_scored"] == summary["tracts_scored"] == 397
    assert row["model_id"] == summary["model_id"] and row["retrained"] is False
    assert len(row["data_hashes"]) == 6 and all(len(h) == 64 for h in row["data_hashes"].values())
    assert row["finished_at"] >= row["started_at"]


def test_runs_list_and_show_read_the_history(tmp_path: Path, trained_job: Path) -> None:
    config = _job(tmp_path, trained_job)
    assert _cli(config, "run", "--as-of", str(AS_OF))[0] == 0
    code, listing = _cli(config, "runs", "list", "--json")
    assert code == 0 and [r["status"] for r in json.loads(listing)] == ["finished"]
    code, shown = _cli(config, "runs", "show", str(json.loads(listing)[0]["id"]))
    assert code == 0 and json.loads(shown)["as_of"] == str(AS_OF)
    code, missing = _cli(config, "runs", "show", "999")
    assert code == 1 and "no run 999" in missing


def test_a_run_refuses_to_start_while_another_holds_the_lock(tmp_path: Path, trained_job: Path) -> None:
    settings = load_settings(_job(tmp_path, trained_job))
    engine = engine_for(settings.paths.database)
    with RunLock(engine, stale_s=600), pytest.raises(LockBusyError, match="another run holds the lock"):
        run(settings, as_of=AS_OF)
    assert list_runs(engine) == []


def test_the_cli_exits_6_when_the_lock_is_held(tmp_path: Path, trained_job: Path) -> None:
    config = _job(tmp_path, trained_job)
    with RunLock(engine_for(tmp_path / "state" / "risk.sqlite"), stale_s=600):
        code, output = _cli(config, "run", "--as-of", str(AS_OF))
    assert code == 6 and "another run holds the lock" in output


def _plant_lock(engine: object, host: str, pid: int, beat: datetime) -> None:
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(insert(locks).values(name="weekly", owner=f"{host}:{pid}:dead", host=host, pid=pid,
                                          acquired_at=beat, heartbeat_at=beat))


def test_a_lock_left_by_a_killed_process_on_this_host_is_taken_over(tmp_path: Path) -> None:
    engine = engine_for(tmp_path / "risk.sqlite")
    gone = subprocess.Popen(["true"])
    gone.wait()
    _plant_lock(engine, host_identity(), gone.pid, datetime.now(UTC))
    with RunLock(engine, stale_s=600) as lock, engine.connect() as conn:
        assert conn.execute(locks.select()).mappings().one()["owner"] == lock.owner


def test_a_lock_on_another_host_is_taken_over_only_once_stale(tmp_path: Path) -> None:
    engine = engine_for(tmp_path / "risk.sqlite")
    _plant_lock(engine, "elsewhere", 1, datetime.now(UTC))
    with pytest.raises(LockBusyError):
        RunLock(engine, stale_s=60).acquire()
    with engine.begin() as conn:
        conn.execute(locks.delete())
    _plant_lock(engine, "elsewhere", 1, datetime.now(UTC) - timedelta(seconds=120))
    lock = RunLock(engine, stale_s=60)
    lock.acquire()
    lock.release()


def _record(metadata: dict) -> ModelRecord:
    return ModelRecord("m", Path("."), metadata)


def test_retraining_follows_the_configured_policy(tmp_path: Path, bundled_sources: object) -> None:
    from risk.features.dictionary import feature_names

    def settings(policy: str) -> object:
        return load_settings(job_config(tmp_path / policy, sections={"model": {"retrain": {
            "policy": policy, "every_weeks": 4}}}))

    names = feature_names(True)
    hashes = bundled_sources.file_hashes  # type: ignore[attr-defined]
    same = _record({"features": names, "data_hashes": hashes, "as_of": "2018-03-05"})
    changed = _record({"features": names, "data_hashes": {**hashes, "x": "0"}, "as_of": "2018-03-05"})
    assert retrain_reason(settings("never"), None, None, bundled_sources, AS_OF) == "no champion yet"
    assert retrain_reason(settings("never"), changed, None, bundled_sources, AS_OF) is None
    assert "other features" in retrain_reason(settings("never"), _record({"features": ["a"]}), None, bundled_sources,
                                              AS_OF)
    assert retrain_reason(settings("data_changed"), same, None, bundled_sources, AS_OF) is None
    assert "changed" in retrain_reason(settings("data_changed"), changed, None, bundled_sources, AS_OF)
    weekly = settings("every_n_weeks")
    assert retrain_reason(weekly, same, None, bundled_sources, AS_OF + timedelta(weeks=3)) is None
    assert "4 weeks" in retrain_reason(weekly, same, None, bundled_sources, AS_OF + timedelta(weeks=4))
    # a challenger trained on this data but not promoted counts: the next run does not train it again
    assert retrain_reason(settings("data_changed"), changed, same, bundled_sources, AS_OF) is None
    assert retrain_reason(weekly, changed, same, bundled_sources, AS_OF + timedelta(weeks=1)) is None


def test_a_required_source_that_is_stale_fails_the_run_naming_it(tmp_path: Path, trained_job: Path) -> None:
    config = _job(tmp_path, trained_job)
    settings = load_settings(config)
    assert settings.sources.evictions.required  # as in the bundled config
    with pytest.raises(StaleDataError, match=r"evictions: stale, newest record 2017-03-01"):
        run(settings, as_of=date(2022, 1, 3))
    code, output = _cli(config, "run", "--as-of", "2022-01-03")
    assert code == 3 and "required source(s) unusable at 2022-01-03" in output
    assert [r["status"] for r in list_runs(engine_for(settings.paths.database))] == ["failed", "failed"]


def test_a_stale_optional_source_is_dropped_and_reported_in_the_summary(tmp_path: Path, trained_job: Path) -> None:
    settings = load_settings(_optional_evictions(_job(tmp_path, trained_job)))
    result = run(settings, as_of=date(2022, 1, 3))
    assert result.coverage["evictions"] == 0
    assert any(n.startswith("evictions: stale, newest record 2017-03-01") for n in result.data_notes)
    assert any(n.startswith("rent: not configured") for n in result.data_notes)


def test_a_sharp_drop_in_coverage_since_the_last_run_is_reported(tmp_path: Path, trained_job: Path) -> None:
    settings = load_settings(_optional_evictions(_job(tmp_path, trained_job)))
    run(settings, as_of=AS_OF)
    later = run(settings, as_of=date(2022, 1, 3))  # evictions stale by then: coverage 397 -> 0
    assert any("evictions: tract coverage fell from 397 to 0" in n for n in later.data_notes)


@pytest.mark.slow
def test_sigterm_ends_a_run_at_the_next_stage_boundary_and_keeps_the_last_good_outputs(tmp_path: Path,
                                                                                       trained_job: Path) -> None:
    config = _job(tmp_path, trained_job)
    assert _cli(config, "run", "--as-of", str(AS_OF))[0] == 0
    shutil.rmtree(tmp_path / "models")  # the next run must train, which takes long enough to signal it
    engine = engine_for(tmp_path / "state" / "risk.sqlite")
    proc = subprocess.Popen([str(RISK), "--config", str(config), "run", "--as-of", "2018-03-12"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(r["stage"] == "train" for r in list_runs(engine)
                                                  if r["status"] == "running"):
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 7, stderr
    assert "SIGTERM" in stderr and "stopped before the score stage" in stderr
    newest = list_runs(engine)[0]
    assert newest["status"] == "stopped" and "score" in newest["error"]
    assert [r["status"] for r in list_runs(engine)][1:] == ["finished"]


@pytest.mark.slow
def test_replay_runs_weeks_over_history_without_storing_or_sending(tmp_path: Path) -> None:
    config = job_config(tmp_path)
    code, output = _cli(config, "replay", "--from", "2014-01-06", "--to", "2014-02-03", "--every", "1w", "--json")
    assert code == 0, output
    result = json.loads(output[output.index("{"):])
    weeks = result["weeks"]
    assert [w["as_of"] for w in weeks] == ["2014-01-06", "2014-01-13", "2014-01-20", "2014-01-27", "2014-02-03"]
    assert all(w["flagged"] == 20 for w in weeks)  # the top 5% of 397 tracts
    assert weeks[0]["churn"] is None and all(0 <= w["churn"] <= 1 for w in weeks[1:])
    assert weeks[0]["alerts"] >= 20  # the first week has no previous week: every high-tier tract is new
    assert {w["model_origin"] for w in weeks} == {"2005-2009"}  # window of 2010 closes 2013-12-31 + 60 days
    assert not (tmp_path / "state").exists() and not (tmp_path / "outbox").exists() and not (tmp_path / "models").exists()


def test_replay_rejects_a_bad_step_naming_the_option(tmp_path: Path) -> None:
    code, output = _cli(job_config(tmp_path), "replay", "--from", "2014-01-06", "--to", "2014-02-03",
                        "--every", "7x")
    assert code == 2 and "--every" in output and "'7x' is not a step" in output


def test_the_heartbeat_keeps_the_lock_fresh_and_a_taken_lock_is_noticed(tmp_path: Path) -> None:
    engine = engine_for(tmp_path / "risk.sqlite")
    lock = RunLock(engine, stale_s=10)  # a heartbeat every 1.25 s
    lock.acquire()
    with engine.connect() as conn:
        first = conn.execute(locks.select()).mappings().one()["heartbeat_at"]
    time.sleep(2)
    with engine.connect() as conn:
        assert conn.execute(locks.select()).mappings().one()["heartbeat_at"] > first
    with engine.begin() as conn:
        conn.execute(locks.update().values(owner="someone-else"))
    deadline = time.monotonic() + 10
    while not lock.lost.is_set() and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(RiskError, match="lost the database run lock"):
        lock.check()
    lock.release()
    with engine.connect() as conn:
        assert conn.execute(locks.select()).mappings().one()["owner"] == "someone-else"  # not ours to delete


def _stored(db: Path) -> tuple[list, int, list, list]:
    """Runs, the number of scores, the outbox and the lock rows, read with SQLite itself."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        return (conn.execute("SELECT id, status, finished_at FROM runs ORDER BY id").fetchall(),
                conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0],
                conn.execute("SELECT key, state, sent_at FROM outbox ORDER BY key").fetchall(),
                conn.execute("SELECT * FROM locks").fetchall())


def test_a_database_another_process_keeps_locked_stops_the_run_with_exit_6_after_the_timeout(
        tmp_path: Path, trained_job: Path) -> None:
    import sqlite3

    config = _job(tmp_path, trained_job, sections={"paths": {"database_busy_timeout_s": 1}})
    assert _cli(config, "run", "--as-of", str(AS_OF))[0] == 0  # the good state that must survive
    db = tmp_path / "state" / "risk.sqlite"
    before = _stored(db)
    champion = (tmp_path / "models" / "champion.json").read_text()
    holder = sqlite3.connect(db, isolation_level=None)  # its own connection: SQLite locks it like another process
    holder.execute("BEGIN IMMEDIATE")  # the write lock, held until the ROLLBACK
    try:
        started = time.monotonic()
        proc = subprocess.run([str(RISK), "--config", str(config), "run", "--as-of", "2018-03-12"],
                              capture_output=True, text=True, timeout=120)
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 6, proc.stderr
    assert f"error: the database {db} is busy: another process has held a lock on it for more than 1 s " \
           "(paths.database_busy_timeout_s)" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and len(proc.stderr.strip().splitlines()) == 1
    assert waited >= 1
    assert _stored(db) == before  # the last run, its scores and the outbox as they were; no lock left behind
    assert (tmp_path / "models" / "champion.json").read_text() == champion
