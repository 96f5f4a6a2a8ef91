"""CLI commands for the database itself: `risk db check` and `risk db backup PATH`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from risk.cli.common import err, handles_errors, out, settings_of

if TYPE_CHECKING:
    from sqlalchemy import Engine

SHOWN_PROBLEMS = 20
"""Most lines of an integrity report printed; SQLite stops at 100 on its own."""


@click.group()
def db() -> None:
    """Check or back up the database in paths.database."""


def _engine(ctx: click.Context) -> Engine:
    """The configured database, which must exist, opened without creating anything in it."""
    from risk.core.errors import RiskError
    from risk.core.store import engine_for

    paths = settings_of(ctx).paths
    if "://" not in paths.database and not Path(paths.database).is_file():
        raise RiskError(f"no database at {paths.database} yet (the first `risk run` creates it)")
    return engine_for(paths.database, paths.database_busy_timeout_s, create=False)


@db.command("check")
@click.pass_context
@handles_errors
def db_check(ctx: click.Context) -> None:
    """Check the whole database (SQLite: PRAGMA integrity_check; PostgreSQL: read every table); exit 4 if damaged."""
    from risk.core.errors import DatabaseCorruptError
    from risk.core.store import (
        REPAIR_ADVICE,
        database_label,
        integrity_problems,
        table_counts,
    )

    engine = _engine(ctx)
    label = database_label(engine)
    sqlite = engine.dialect.name == "sqlite"
    how = "PRAGMA integrity_check" if sqlite else "every table read through"
    with err.status(f"checking {label}"):
        problems = integrity_problems(engine, full=True)
    if problems:
        for line in problems[:SHOWN_PROBLEMS]:
            err.print(f"  {line}", highlight=False, markup=False)
        if len(problems) > SHOWN_PROBLEMS:
            err.print(f"  ... and {len(problems) - SHOWN_PROBLEMS} more", highlight=False)
        raise DatabaseCorruptError(f"the database {label} is damaged: {len(problems)} problem(s) found by {how}; "
                                   f"{REPAIR_ADVICE}")
    counts = table_counts(engine)
    rows = ", ".join(f"{name} {n:,}" for name, n in counts.items()) or "no tables yet"
    out.print(f"{label}: ok ({how}; rows: {rows})", highlight=False, markup=False)


@db.command("backup")
@click.argument("target", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
@handles_errors
def db_backup(ctx: click.Context, target: Path) -> None:
    """Copy a SQLite database to TARGET while it is in use (SQLite's online backup), checked before it is kept."""
    from risk.core.store import backup_database, database_label

    engine = _engine(ctx)
    with err.status(f"backing up {database_label(engine)}"):
        size = backup_database(engine, target, settings_of(ctx).paths.database_busy_timeout_s)
    out.print(f"backed up {database_label(engine)} to {target} ({size:,} bytes)",
              highlight=False, markup=False)


COMMANDS = (db,)
"""Added to the `risk` group by :mod:`risk.cli.main`."""
