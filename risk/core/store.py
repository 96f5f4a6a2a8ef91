"""The database of runs, scores and drivers (SQLAlchemy Core; SQLite by default, or PostgreSQL).

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

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
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
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, CursorResult, ExceptionContext, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from risk.core.errors import (
    DatabaseBusyError,
    DatabaseCorruptError,
    OutputError,
    RiskError,
)
from risk.core.files import atomic_path

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
    Column("unranked", Text),
    # why the tract is not ranked (too small to score, mostly group quarters); NULL when it is ranked
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


DEFAULT_BUSY_TIMEOUT_S = 30.0
"""The default of ``paths.database_busy_timeout_s``, for callers without settings at hand."""

REPAIR_ADVICE = ("restore the database from its last backup (`risk db backup PATH` makes one) and check it "
                 "with `risk db check`")
_SCHEMA_LOCK = 0x7269736B  # any fixed key: PostgreSQL advisory lock taken while creating tables
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26


def engine_for(url_or_path: str | Path, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S, *,
               quick_check: bool = False, create: bool = True) -> Engine:
    """An engine for a SQLAlchemy URL or a SQLite file path; tables are created if missing.

    Waits up to ``busy_timeout_s`` for a lock another process holds, then raises
    :class:`DatabaseBusyError`; a damaged database raises :class:`DatabaseCorruptError`
    (from any statement, not only here). ``quick_check`` first runs SQLite's
    ``PRAGMA quick_check`` on an existing file; ``create=False`` leaves the schema alone."""
    text = str(url_or_path)
    label = text.split("://", 1)[0] + "://..." if "://" in text else text  # until parsed: no password shown
    try:
        if "://" not in text:
            Path(text).parent.mkdir(parents=True, exist_ok=True)
            text = f"sqlite:///{text}"
        url = make_url(text)
        label = _url_label(url)
        engine = create_engine(url, connect_args=_timeout_args(url, busy_timeout_s))
    except ImportError as e:
        raise OutputError(f"cannot open the database {label}: its driver is not installed ({e}); for PostgreSQL "
                          "install the `postgres` extra (pip install -e '.[postgres]') and write the URL as "
                          "postgresql+psycopg://...") from e
    except (OSError, SQLAlchemyError, ValueError) as e:
        raise OutputError(f"cannot open the database {label}: {first_line(e)}") from e
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:  # noqa: ANN001
            # WAL lets the web page read while the job writes; foreign keys are off by default in SQLite
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "handle_error")
    def _explain(context: ExceptionContext) -> None:
        # raised here, the error reaches the CLI past every ``except SQLAlchemyError`` that would call it exit 4/1;
        # the listener holds no reference to the engine, so a dropped engine is freed with its connections
        error = _user_error(context.dialect.name, label, context.original_exception, busy_timeout_s)
        if error is not None:
            raise error from context.sqlalchemy_exception

    if quick_check and engine.dialect.name == "sqlite" and _has_data(engine):
        problems = integrity_problems(engine)
        if problems:
            raise DatabaseCorruptError(f"the database {database_label(engine)} is damaged ({problems[0]}); "
                                       f"nothing was run: {REPAIR_ADVICE}")
    if create:
        try:
            _create_tables(engine)
        except SQLAlchemyError as e:
            reason = first_line(getattr(e, "orig", None) or e)
            raise OutputError(f"cannot open the database {label}: {reason}") from e
    return engine


def _timeout_args(url: URL, busy_timeout_s: float) -> dict[str, object]:
    """The driver's own way of waiting for another process's lock."""
    if url.get_backend_name() == "sqlite":
        return {"timeout": busy_timeout_s}
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("psycopg", "psycopg2"):
        return {"options": f"-c lock_timeout={max(1, round(busy_timeout_s * 1000))}"}
    return {}


def database_label(engine: Engine) -> str:
    """The database as messages name it: a SQLite file's path, or the URL without its password."""
    return _url_label(engine.url)


def _url_label(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.render_as_string(hide_password=True)


def user_error(engine: Engine, error: BaseException, busy_timeout_s: float) -> RiskError | None:
    """What a driver error means for the user: the database busy or damaged; None for anything else."""
    return _user_error(engine.dialect.name, database_label(engine), error, busy_timeout_s)


def _user_error(dialect: str, label: str, error: BaseException, busy_timeout_s: float) -> RiskError | None:
    reason = first_line(error)
    busy = DatabaseBusyError(f"the database {label} is busy: another process has held a lock on it for more than "
                             f"{busy_timeout_s:g} s (paths.database_busy_timeout_s); try again once it has "
                             "finished")
    damaged = DatabaseCorruptError(f"the database {label} is damaged ({reason}): {REPAIR_ADVICE}")
    if dialect == "sqlite" and isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)  # the extended code; its low byte is the primary one
        primary = code & 0xFF if isinstance(code, int) else None
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or primary is None and "database is locked" in reason:
            return busy
        if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or primary is None and "malformed" in reason:
            return damaged
    elif dialect == "postgresql":
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if state == "55P03":  # lock_not_available: lock_timeout ran out
            return busy
        if state in ("XX001", "XX002"):  # data_corrupted, index_corrupted
            return damaged
    return None


def first_line(error: BaseException) -> str:
    """The first line of a driver's message (its class name when it has none)."""
    message = str(error).strip()
    return message.splitlines()[0] if message else type(error).__name__


def _has_data(engine: Engine) -> bool:
    path = engine.url.database
    return bool(path) and path != ":memory:" and Path(path).is_file() and Path(path).stat().st_size > 0


def integrity_problems(engine: Engine, full: bool = False) -> list[str]:
    """What SQLite's ``quick_check`` (``integrity_check`` if ``full``) reports; empty when the file is sound.

    On other databases every table of ours is read through (a sequential ``count(*)`` visits each of its
    pages, so a damaged one raises). A database too damaged to run the check at all is reported as one
    problem; one that cannot be reached raises :class:`OutputError`."""
    pragma = "integrity_check" if full else "quick_check"
    try:
        if engine.dialect.name != "sqlite":
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    for plan in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
                        conn.exec_driver_sql(f"SET LOCAL {plan} = off")  # count(*) from the table, not an index
                present = set(inspect(conn).get_table_names())
                for table in metadata.sorted_tables:
                    if table.name in present:
                        conn.execute(select(func.count()).select_from(table)).scalar()
            return []
        with engine.connect() as conn:
            rows = [str(r[0]) for r in conn.exec_driver_sql(f"PRAGMA {pragma}")]
        return [] if rows == ["ok"] else rows
    except DatabaseCorruptError as e:  # raised by the engine's handler, from the driver's error
        cause = e.__cause__
        return [first_line(getattr(cause, "orig", None) or cause or e)]
    except SQLAlchemyError as e:
        raise _unreadable(engine, e) from e


def _unreadable(engine: Engine, error: SQLAlchemyError) -> OutputError:
    return OutputError(f"cannot read the database {database_label(engine)}: "
                       f"{first_line(getattr(error, 'orig', None) or error)}")


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows in each of our tables that exist."""
    try:
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
                    for t in metadata.sorted_tables if t.name in present}
    except SQLAlchemyError as e:
        raise _unreadable(engine, e) from e


def backup_database(engine: Engine, target: Path, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> int:
    """Copy a SQLite database to ``target`` with SQLite's online backup; returns its size in bytes.

    The copy is consistent while other processes write, is checked before it
    replaces ``target``, and a damaged database is never copied over a good backup."""
    if engine.dialect.name != "sqlite":
        raise RiskError(f"`risk db backup` copies SQLite databases; back up {database_label(engine)} with pg_dump")
    source_path = engine.url.database
    if not _has_data(engine):
        raise RiskError(f"no database at {source_path} to back up (a first `risk run` creates it)")
    with atomic_path(target) as tmp:
        try:
            with contextlib.closing(sqlite3.connect(source_path, timeout=busy_timeout_s)) as source, \
                    contextlib.closing(sqlite3.connect(tmp)) as copy:
                source.backup(copy)
                rows = [str(r[0]) for r in copy.execute("PRAGMA quick_check")]
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        except sqlite3.Error as e:
            error = user_error(engine, e, busy_timeout_s)
            if not isinstance(error, DatabaseCorruptError):
                raise error or OutputError(f"cannot back up {source_path}: {first_line(e)}") from e
            rows = [first_line(e)]  # too damaged to copy at all
        if rows != ["ok"]:
            raise DatabaseCorruptError(f"the database {source_path} is damaged ({rows[0]}); no backup was written "
                                       f"and {target} is unchanged: {REPAIR_ADVICE}")
    return target.stat().st_size


def _create_tables(engine: Engine, attempts: int = 3) -> None:
    """Create missing tables and columns; two processes starting together may race, so retry."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    # DDL is transactional there: one process at a time creates, the next finds the tables made
                    conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
                metadata.create_all(conn)
                _add_missing_columns(conn)
            return
        except OperationalError as e:
            if attempt == attempts - 1 or "already exists" not in str(e) and "duplicate column" not in str(e):
                raise
            time.sleep(0.2)


def _add_missing_columns(conn: Connection) -> None:
    """Add columns that newer versions define to tables an older version created (nullable columns only)."""
    existing = inspect(conn)
    for table in metadata.sorted_tables:
        if not existing.has_table(table.name):
            continue
        have = {c["name"] for c in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
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
        rows = _frame(conn.execute(select(scores).where(scores.c.run_id == last)))
    return rows.set_index("geoid")


def save_scores(engine: Engine, run_id: int, model_id: str, table: pd.DataFrame, driver_rows: pd.DataFrame) -> None:
    """Store a run's scores and drivers and mark it ``scored``, all in one transaction."""
    try:
        with engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(status="scored", model_id=model_id))
            _insert_rows(conn, scores, table.reset_index().assign(run_id=run_id))
            if not driver_rows.empty:
                _insert_rows(conn, drivers, driver_rows.assign(run_id=run_id))
    except SQLAlchemyError as e:
        raise OutputError(f"cannot store the run in the database: {e.__class__.__name__}: {e.args[0]}") from e


def _insert_rows(conn: Connection, table: Table, frame: pd.DataFrame) -> None:
    """Insert a frame's rows through the driver's own ``executemany`` with plain tuples: a national run stores
    half a million driver rows, and SQLAlchemy's per-row parameter handling took seconds of it."""
    columns = [c.name for c in table.columns]
    marks = "?" if conn.dialect.paramstyle == "qmark" else "%s"  # SQLite; psycopg
    sql = (f"INSERT INTO {conn.dialect.identifier_preparer.format_table(table)} "
           f"({', '.join(conn.dialect.identifier_preparer.quote(c) for c in columns)}) "
           f"VALUES ({', '.join([marks] * len(columns))})")
    values = frame[columns].astype(object).where(frame[columns].notna(), None)
    conn.exec_driver_sql(sql, list(values.itertuples(index=False, name=None)))


def run_scores(engine: Engine, run_id: int) -> pd.DataFrame:
    """Scores of one run, indexed by GEOID."""
    with engine.connect() as conn:
        rows = _frame(conn.execute(select(scores).where(scores.c.run_id == run_id)))
    return rows.set_index("geoid") if len(rows) else pd.DataFrame()


def run_drivers(engine: Engine, run_id: int) -> pd.DataFrame:
    """Driver rows of one run."""
    with engine.connect() as conn:
        rows = _frame(conn.execute(select(drivers).where(drivers.c.run_id == run_id)))
    return rows if len(rows) else pd.DataFrame()


def _frame(result: CursorResult[Any]) -> pd.DataFrame:
    """A query's rows as a frame, built from plain tuples (a national run's half a million driver rows as
    mappings took seconds)."""
    columns = list(result.keys())
    return pd.DataFrame([tuple(r) for r in result.all()], columns=columns)


def latest_run(engine: Engine) -> dict | None:
    """The newest run whose alerts were decided (normally finished)."""
    with engine.connect() as conn:
        row = conn.execute(select(runs).where(alerted()).order_by(runs.c.id.desc())
                           .limit(1)).mappings().first()
    return dict(row) if row else None
