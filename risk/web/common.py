"""What every route shares: the template environment, the errors a request can end in and the HTTP status of
each (:data:`HTTP_STATUS`), and formatting."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import jinja2
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from risk.alerts.messages import TIER_COLOURS
from risk.core.errors import (
    AccountError,
    NoRunYet,
    RiskError,
    UnknownArea,
    UnknownTract,
)
from risk.core.settings import Settings
from risk.core.templating import environment
from risk.web import accounts


class WebError(Exception):
    """A request that ends in an error page (or a JSON error under /api); the message is shown as is.

    Its HTTP status is not an attribute: :data:`HTTP_STATUS` gives every error class's status.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(message)


class LoginRequired(WebError):
    """No valid session."""

    def __init__(self) -> None:
        super().__init__("Please log in.")


class BadToken(WebError):
    """An ``Authorization: Bearer`` header on an API route whose token is unknown, revoked or of a locked user."""

    def __init__(self) -> None:
        super().__init__("The API token is not valid: it was revoked, or its user is locked or deleted.")


class Forbidden(WebError):
    """Logged in, but the role does not allow it (or the form's CSRF token is wrong)."""


class NotFound(WebError):
    """Nothing at that address."""


class BadInput(WebError):
    """A form field or query parameter that cannot be accepted; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.detail = message
        super().__init__(f"{field}: {message}", field)


HTTP_STATUS: dict[type[Exception], int] = {
    WebError: 400,
    BadInput: 400,
    AccountError: 400,
    UnknownArea: 400,
    LoginRequired: 401,
    BadToken: 401,
    Forbidden: 403,
    NotFound: 404,
    UnknownTract: 404,
    RequestValidationError: 422,
    NoRunYet: 503,
    RiskError: 503,  # a missing run, model or feature file: nothing to show until `risk run` has run
    Exception: 500,
}
"""The HTTP status of a request that ended in each error class; a class not listed takes its nearest listed
base's (:func:`http_status`). Every error handler and every route that answers an error itself uses this
table, so it is the one place a status is chosen."""


def http_status(error: Exception) -> int:
    """The status for ``error``: its own for a Starlette ``HTTPException``, else its nearest class in the table."""
    if isinstance(error, StarletteHTTPException):
        return error.status_code
    return next(HTTP_STATUS[c] for c in type(error).__mro__ if c in HTTP_STATUS)


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
