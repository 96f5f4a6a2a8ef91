"""The database of runs, scores and drivers (SQLAlchemy Core; SQLite by default, any URL works).

A run row is written when a run starts (``running``); its scores and drivers
are written in one transaction that also marks it ``scored``, so a run's
scores are stored whole or not at all. Its messages are queued in one
transaction that also sets ``alerted_at``: from then on the run is "the
previous run" that the next one compares against, even if the process dies
before it is ``finished``, so next week's run does not alert the same
changes again. A run killed before that changes nothing the next run compares
against.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from risk.errors import OutputError

metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("as_of", Date, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(20), nullable=False),
    Column("model_id", String(200)),
    Column("outcome", String(50)),
    Column("owner", String(200)),
    Column("stage", String(20)),
    Column("retrained", Boolean),
    Column("stage_seconds", JSON),
    Column("data_hashes", JSON),
    Column("counts", JSON),
    Column("coverage", JSON),
    Column("notes", JSON),
    Column("error", Text),
    Column("alerted_at", DateTime(timezone=True)),
)


def alerted() -> ColumnElement[bool]:
    """Runs whose alerts were decided and queued: the ones later runs compare against."""
    return runs.c.alerted_at.is_not(None) | (runs.c.status == "finished")

locks = Table(
    "locks", metadata,
    Column("name", String(50), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)

scores = Table(
    "scores", metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("geoid", String(11), primary_key=True),
    Column("probability", Float, nullable=False),
    Column("percentile", Float, nullable=False),
    Column("tier", String(10), nullable=False),
    Column("probability_change", Float),
    Column("percentile_change", Float),
)

drivers = Table(
    "drivers", metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("geoid", String(11), primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("feature", String(100), nullable=False),
    Column("value", Float),
    Column("contribution", Float, nullable=False),
    Column("sentence", Text, nullable=False),
)


outbox = Table(
    "outbox", metadata,
    Column("key", String(64), primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("week", String(10), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("subject", Text, nullable=False),
    Column("message_id", String(300), nullable=False),
    Column("eml", Text, nullable=False),
    Column("state", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
)

reviews = Table(
    "reviews", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("geoid", String(11), nullable=False, index=True),
    Column("decision", String(20), nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("follow_up", Date),
    Column("percentile", Float, nullable=False),
    Column("user", String(100), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
)


def latest_decisions(engine: Engine) -> pd.DataFrame:
    """The newest review decision per tract (index GEOID: decision, percentile, decided_at)."""
    with engine.connect() as conn:
        rows = conn.execute(select(reviews).order_by(reviews.c.id)).mappings().all()
    if not rows:
        return pd.DataFrame(columns=["decision", "percentile", "decided_at"])
    return pd.DataFrame(rows).groupby("geoid").last()[["decision", "percentile", "decided_at"]]


def engine_for(url_or_path: str | Path) -> Engine:
    """An engine for a SQLAlchemy URL or a SQLite file path; tables are created if missing."""
    text = str(url_or_path)
    try:
        if "://" not in text:
            Path(text).parent.mkdir(parents=True, exist_ok=True)
            text = f"sqlite:///{text}"
        engine = create_engine(text)
    except (OSError, SQLAlchemyError, ImportError, ValueError) as e:
        raise OutputError(f"cannot open the database {text}: {e}") from e
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:  # noqa: ANN001
            # WAL lets the web page read while the job writes; foreign keys are off by default in SQLite
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
    try:
        _create_tables(engine)
    except SQLAlchemyError as e:
        raise OutputError(f"cannot open the database {text}: {e.__class__.__name__}: {e.args[0]}") from e
    return engine


def _create_tables(engine: Engine, attempts: int = 3) -> None:
    """Create missing tables and columns; two processes starting together may race, so retry."""
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            _add_missing_columns(engine)
            return
        except OperationalError as e:
            if attempt == attempts - 1 or "already exists" not in str(e) and "duplicate column" not in str(e):
                raise
            time.sleep(0.2)


def _add_missing_columns(engine: Engine) -> None:
    """Add columns that newer versions define to tables an older version created (nullable columns only)."""
    existing = inspect(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            if not existing.has_table(table.name):
                continue
            have = {c["name"] for c in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have and column.nullable:
                    kind = column.type.compile(dialect=engine.dialect)
                    conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))


def previous_scores(engine: Engine, before_run: int | None = None) -> pd.DataFrame:
    """Scores of the newest alerted run (before ``before_run`` if given), indexed by GEOID."""
    with engine.connect() as conn:
        query = select(runs.c.id).where(alerted())
        if before_run is not None:
            query = query.where(runs.c.id < before_run)
        last = conn.execute(query.order_by(runs.c.id.desc()).limit(1)).scalar()
        if last is None:
            return pd.DataFrame(columns=["probability", "percentile"])
        rows = conn.execute(select(scores).where(scores.c.run_id == last)).mappings().all()
    return pd.DataFrame(rows).set_index("geoid")


def save_scores(engine: Engine, run_id: int, model_id: str, table: pd.DataFrame, driver_rows: pd.DataFrame) -> None:
    """Store a run's scores and drivers and mark it ``scored``, all in one transaction."""
    try:
        with engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(status="scored", model_id=model_id))
            records = table.reset_index().assign(run_id=run_id)
            conn.execute(insert(scores), _records(records, scores))
            if not driver_rows.empty:
                conn.execute(insert(drivers), _records(driver_rows.assign(run_id=run_id), drivers))
    except SQLAlchemyError as e:
        raise OutputError(f"cannot store the run in the database: {e.__class__.__name__}: {e.args[0]}") from e


def _records(frame: pd.DataFrame, table: Table) -> list[dict]:
    columns = [c.name for c in table.columns]
    out = frame[columns].astype(object).where(frame[columns].notna(), None)
    return out.to_dict("records")


def run_scores(engine: Engine, run_id: int) -> pd.DataFrame:
    """Scores of one run, indexed by GEOID."""
    with engine.connect() as conn:
        rows = conn.execute(select(scores).where(scores.c.run_id == run_id)).mappings().all()
    return pd.DataFrame(rows).set_index("geoid") if rows else pd.DataFrame()


def run_drivers(engine: Engine, run_id: int) -> pd.DataFrame:
    """Driver rows of one run."""
    with engine.connect() as conn:
        rows = conn.execute(select(drivers).where(drivers.c.run_id == run_id)).mappings().all()
    return pd.DataFrame(rows)


def latest_run(engine: Engine) -> dict | None:
    """The newest run whose alerts were decided (normally finished)."""
    with engine.connect() as conn:
        row = conn.execute(select(runs).where(alerted()).order_by(runs.c.id.desc())
                           .limit(1)).mappings().first()
    return dict(row) if row else None
