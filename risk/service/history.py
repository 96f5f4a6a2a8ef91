"""Run history: one row per weekly run, from start to finish (or to the point where it stopped).

Statuses: ``running`` (started), ``scored`` (scores stored), ``finished``
(alerts queued and delivery tried), ``failed`` (an error ended it, with the
message), ``stopped`` (a stop signal ended it between stages) and
``abandoned`` (the process died; found by the next run under the lock).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from risk.core.errors import OutputError
from risk.core.store import runs

UNFINISHED = ("running", "scored")


def begin_run(engine: Engine, as_of: date, outcome: str, owner: str, data_hashes: dict[str, str]) -> int:
    """Record the start of a run; returns its id."""
    try:
        with engine.begin() as conn:
            return int(conn.execute(insert(runs).values(
                as_of=as_of, started_at=datetime.now(UTC), status="running", outcome=outcome, owner=owner,
                stage="validate", data_hashes=data_hashes)).inserted_primary_key[0])
    except SQLAlchemyError as e:
        raise OutputError(f"cannot record the run in the database: {e.__class__.__name__}: {e.args[0]}") from e


def update_run(engine: Engine, run_id: int, **values: Any) -> None:
    """Change columns of a run row (the current stage, model id, counts...)."""
    try:
        with engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
    except SQLAlchemyError as e:
        raise OutputError(f"cannot update run {run_id} in the database: {e.__class__.__name__}: {e.args[0]}") from e


def finish_run(engine: Engine, run_id: int, status: str, **values: Any) -> None:
    """Close a run with its final status."""
    update_run(engine, run_id, status=status, finished_at=datetime.now(UTC), **values)


def abandon_unfinished(engine: Engine) -> list[int]:
    """Mark runs left ``running``/``scored`` by a dead process as ``abandoned``; call only under the run lock."""
    with engine.begin() as conn:
        ids = list(conn.execute(select(runs.c.id).where(runs.c.status.in_(UNFINISHED))).scalars())
        if ids:
            conn.execute(update(runs).where(runs.c.id.in_(ids)).values(
                status="abandoned", error="the process ended before the run finished"))
    return [int(i) for i in ids]


def list_runs(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(runs).order_by(runs.c.id.desc()).limit(limit)).mappings().all()
    return [dict(r) for r in rows]


def get_run(engine: Engine, run_id: int) -> dict[str, Any] | None:
    """One run row, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
    return dict(row) if row else None

