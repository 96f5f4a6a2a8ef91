"""Every error a user can cause, the exit code the CLI gives each, and what each code means.

Every :class:`RiskError` subclass is defined here, whichever stage raises it, so
the exit codes live in one file and :data:`EXIT_CODES` (the README's table)
can be checked against them. Only :mod:`risk.cli.common` turns these into exit
codes and one-line messages, and only :mod:`risk.web.common` into HTTP
statuses; every other module raises them (``raise ... from e``) and lets them
travel up.
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
    more: tuple[tuple[int | None, str], ...] = ()
    """The rows a summary problem ("... and 7 more rows") stands for, as (line, message): `risk validate --all`
    and `--json` list them all."""

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.column is not None:
            parts.append(f"column '{self.column}'")
        return f"{', '.join(parts)}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (the rows a summary stands for as ``more``: [{"line", "message"}])."""
        out = asdict(self)
        out["more"] = [{"line": line, "message": message} for line, message in self.more]
        return out


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


class OutcomeError(RiskError):
    """An outcome cannot be computed from the configured data."""

    exit_code = 3


class BacktestError(RiskError):
    """The outcome cannot be backtested (too few origins) or fails its null check (nothing to train on)."""

    exit_code = 3


class RegistryError(RiskError):
    """A model that does not exist, or a registry that cannot be read."""

    exit_code = 5


class ModelExistsError(RegistryError):
    """A model of the same id is registered already: the same data and settings gave the same model."""


class ExplanationError(RiskError):
    """Contributions cannot be computed, or do not add up to the model's raw score."""

    exit_code = 1


class SynthError(RiskError):
    """The requested synthetic world cannot be generated."""

    exit_code = 1


class AccountError(RiskError):
    """A user name, role, password or decision that cannot be accepted; the message names the field."""

    exit_code = 1

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class NoRunYet(RiskError):
    """The database holds no finished scoring run."""

    exit_code = 1


class UnknownTract(RiskError):
    """A GEOID that is not in the newest run."""

    exit_code = 1


class UnknownArea(RiskError):
    """An area filter that names no area."""

    exit_code = 1

    def __init__(self, area: str) -> None:
        self.area = area
        super().__init__("area: no such area")


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "any other error the user can fix",
    2: "a configuration error (or a command line that does not parse)",
    3: "invalid input data (or an outcome the data cannot support, or a `required` source that is stale)",
    4: "an output could not be written (or the database is damaged)",
    5: "a model that does not exist (or a model registry that cannot be read, or no closed outcome window to "
       "train on)",
    6: "another run holds the database's run lock (or another process kept the database locked for longer than "
       "`paths.database_busy_timeout_s`)",
    7: "stopped by SIGTERM/SIGINT between two stages",
}
"""What each exit code of ``risk`` means; the README's exit-code table is this mapping, and every
:class:`RiskError` subclass's ``exit_code`` is one of its keys (``tests/test_errors.py`` checks both)."""
