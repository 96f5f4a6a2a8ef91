"""What every route shares: the template environment, the errors a request can end in, and formatting."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import jinja2
from fastapi import Request

from risk.alerts.messages import TIER_COLOURS
from risk.core.settings import Settings
from risk.core.templating import environment
from risk.web import accounts


class WebError(Exception):
    """A request that ends in an error page (or a JSON error under /api); the message is shown as is."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(message)


class LoginRequired(WebError):
    """No valid session."""

    status = 401

    def __init__(self) -> None:
        super().__init__("Please log in.")


class Forbidden(WebError):
    """Logged in, but the role does not allow it (or the form's CSRF token is wrong)."""

    status = 403


class NotFound(WebError):
    """Nothing at that address."""

    status = 404


class BadInput(WebError):
    """A form field or query parameter that cannot be accepted; ``field`` names it."""

    status = 400

    def __init__(self, field: str, message: str) -> None:
        self.detail = message
        super().__init__(f"{field}: {message}", field)


def pct(value: float | None, digits: int = 1) -> str:
    """0.1234 -> '12.3%'."""
    return "" if value is None else f"{100 * value:.{digits}f}%"


def signed(value: float | None, digits: int = 0) -> str:
    """A change with its sign ('new' without a previous run); one too small to show is '0', not '-0'."""
    if value is None:
        return "new"
    text = f"{value:+.{digits}f}"
    return "0" if float(text) == 0 else text


def when(value: datetime | date | None) -> str:
    """A date or a UTC time to the minute."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def build_environment(settings: Settings) -> jinja2.Environment:
    """The project's template loader and rules (autoescaped, strict) with the pages' filters.

    A separate environment on the same loader, so these filters never leak into the e-mail templates'."""
    base = environment(settings.alerts.templates)
    env = jinja2.Environment(loader=base.loader, autoescape=base.autoescape, undefined=base.undefined,
                             trim_blocks=base.trim_blocks, lstrip_blocks=base.lstrip_blocks)
    env.filters.update(pct=pct, signed=signed, when=when)
    env.globals.update(decisions=accounts.DECISIONS, tier_colours=TIER_COLOURS, roles=accounts.ROLES)
    return env


def app_state(request: Request) -> Any:
    """The application's shared state (settings, data, pages, throttle)."""
    return request.app.state
