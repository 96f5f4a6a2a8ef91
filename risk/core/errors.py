"""The errors a user can cause, and the exit code the CLI gives each.

Only :mod:`risk.cli.main` turns these into exit codes and one-line messages; every
other module raises them (``raise ... from e``) and lets them travel up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal


class RiskError(Exception):
    """Base class of every error that is the user's to fix."""

    exit_code: int = 1


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in ``config.yaml``: the dotted key, its line and what is wrong."""

    key: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.key}{where}: {self.message}"


class ConfigError(RiskError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = 2

    def __init__(self, path: str, issues: list[ConfigIssue]) -> None:
        self.path = path
        self.issues = issues
        n = len(issues)
        head = f"{path}: {n} configuration problem{'s' if n != 1 else ''}"
        super().__init__(head + "".join(f"\n  - {i}" for i in issues))


@dataclass(frozen=True)
class Problem:
    """One problem found in an input file, named by file, line and column.

    ``line`` is the 1-based line of the file (the header is line 1), or for
    non-tabular files the feature number; ``None`` when the whole file is at fault.
    """

    file: str
    message: str
    line: int | None = None
    column: str | None = None
    severity: Literal["error", "warning"] = "error"
    family: str = ""

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.column is not None:
            parts.append(f"column '{self.column}'")
        return f"{', '.join(parts)}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


class DataValidationError(RiskError):
    """Input data failed validation; carries every problem found, not just the first."""

    exit_code = 3

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = [p for p in problems if p.severity == "error"]
        self.warnings = [p for p in problems if p.severity == "warning"]
        n = len(self.problems)
        first = f": first: {self.problems[0]}" if self.problems else ""
        super().__init__(f"input data has {n} problem{'s' if n != 1 else ''}{first}")


class OutputError(RiskError):
    """An output could not be written; the previous output is left as it was."""

    exit_code = 4


class StaleDataError(RiskError):
    """A source marked ``required`` is stale or missing at the run's as-of date."""

    exit_code = 3


class LockBusyError(RiskError):
    """Another process holds the run lock on this database."""

    exit_code = 6


class DatabaseBusyError(LockBusyError):
    """Another process held a lock on the database for longer than ``paths.database_busy_timeout_s``."""

    exit_code = 6


class DatabaseCorruptError(OutputError):
    """The database is damaged (a corrupted SQLite page, a PostgreSQL data-corruption error)."""

    exit_code = 4


class StoppedError(RiskError):
    """A stop signal (SIGTERM/SIGINT) ended the run between two stages; nothing was left half-written."""

    exit_code = 7
