"""What every `risk` command module shares: the consoles, the error handler that turns a RiskError into its
exit code and a one-line message, the settings of the --config file, and date options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from risk.core.errors import ConfigError, DataValidationError, RiskError
from risk.core.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _fail(e: RiskError) -> None:
    """Print a RiskError for a person and exit with its code."""
    if isinstance(e, ConfigError):
        err.print(f"[bold red]config error[/]: {e.path}", highlight=False)
        for issue in e.issues:
            err.print(f"  - {issue}", highlight=False, markup=False)
    elif isinstance(e, DataValidationError):
        err.print(f"[bold red]invalid input[/]: {len(e.problems)} problem(s)", highlight=False)
        for p in e.problems:
            err.print(f"  - {p}", highlight=False, markup=False)
    else:
        err.print(f"[bold red]error[/]: {escape(str(e))}", highlight=False)
    sys.exit(e.exit_code)


def handles_errors(fn: F) -> F:
    """Turn RiskError into a message and exit code; anything else is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RiskError as e:
            _fail(e)

    return wrapper  # type: ignore[return-value]


def settings_of(ctx: click.Context) -> Settings:
    """The settings, loaded once per command from the --config file."""
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = load_settings(obj["config_path"])
    return obj["settings"]


def parse_date(_ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    """A click callback: YYYY-MM-DD as a date, or a message naming the option."""
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as e:
        raise click.BadParameter(f"'{value}' is not a date (YYYY-MM-DD)", param=param) from e
