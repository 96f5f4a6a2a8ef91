"""Logging in and out, sessions, roles, CSRF tokens and slowing down password guessing.

The session is Starlette's signed cookie (itsdangerous, HttpOnly, SameSite=Lax)
holding the user name and a per-session CSRF token; the user and role are read
from the database on every request, so a role change or a locked account
takes effect at once. Every POST carries the token in a hidden field.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from risk import accounts
from risk.accounts import Role, User
from risk.errors import ConfigError, ConfigIssue
from risk.settings import Settings
from risk.web.common import BadInput, Forbidden, LoginRequired, app_state

MIN_SECRET = 32
MAX_DELAY_S = 30.0
MAX_FORM_FIELDS = 20

router = APIRouter()
_UNKNOWN = object()


def secret_key(settings: Settings) -> str:
    """The session signing key from the environment variable named in ``web.secret_key_env``."""
    name = settings.web.secret_key_env
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(str(settings.config_path), [ConfigIssue(
            "web.secret_key_env", f"the environment variable {name} is not set; set it to a long random string, "
            "e.g. export " + name + "=\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')\"")])
    if len(value) < MIN_SECRET:
        raise ConfigError(str(settings.config_path), [ConfigIssue(
            "web.secret_key_env", f"the key in {name} is {len(value)} characters; use at least {MIN_SECRET}")])
    return value


# ---------------------------------------------------------------- sessions and roles


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def session_user(request: Request) -> User | None:
    """The logged-in, still active user, or None."""
    known = getattr(request.state, "user", _UNKNOWN)  # looked up once per request
    if known is not _UNKNOWN:
        return cast(User | None, known)
    name = request.session.get("user")
    since = request.session.get("since")
    state = app_state(request)
    user = accounts.get_user(state.data.engine, name) if isinstance(name, str) else None
    # the cookie is signed again whenever the session changes, which would stretch a login forever; this
    # bounds it from the moment of logging in
    expired = not isinstance(since, int | float) or time.time() - since > state.settings.web.session_max_age_s
    if user is not None and (not user.active or expired):
        user = None
    if user is None and name is not None:
        request.session.pop("user", None)
    request.state.user = user
    return user


def require(role: Role) -> Callable[[Request], User]:
    """A dependency: the user, if logged in with ``role`` or higher (401 if not logged in, 403 if too low)."""
    def dependency(request: Request) -> User:
        user = session_user(request)
        if user is None:
            raise LoginRequired()
        if not user.can(role):
            raise Forbidden(f"This needs the {role} role; you are logged in as a {user.role}.")
        return user

    dependency.__name__ = f"require_{role}"
    return dependency


Viewer = Annotated[User, Depends(require("viewer"))]
Planner = Annotated[User, Depends(require("planner"))]
Admin = Annotated[User, Depends(require("admin"))]


async def checked_form(request: Request) -> FormData:
    """The POSTed form, refused (403) unless its ``csrf_token`` matches the session's."""
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    sent = form.get("csrf_token")
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not isinstance(expected, str) or not secrets.compare_digest(sent, expected):
        raise Forbidden("This form has expired or did not come from this site (CSRF check failed). "
                        "Reload the page and try again.")
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


def text_field(form: FormData, name: str, max_length: int = 2000) -> str:
    """A text field of a form ('' when absent); a clear error naming it if it is too long."""
    value = form.get(name, "")
    if not isinstance(value, str):
        raise BadInput(name, "must be text")
    if len(value) > max_length:
        raise BadInput(name, f"must be at most {max_length} characters")
    return value


# ---------------------------------------------------------------- slowing down guesses


class LoginThrottle:
    """Failed logins per (user name, address); past ``max_failures`` each answer waits longer (doubling)."""

    def __init__(self, max_failures: int, delay_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.delay_s = delay_s
        self.clock = clock
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()

    def delay(self, key: tuple[str, str]) -> float:
        """Seconds to wait before answering this attempt."""
        with self._lock:
            count, _ = self._failures.get(key, (0, 0.0))
        excess = count - self.max_failures
        return 0.0 if excess < 0 else min(MAX_DELAY_S, self.delay_s * 2.0 ** excess)

    def failed(self, key: tuple[str, str]) -> None:
        """Count a failure."""
        now = self.clock()
        with self._lock:
            count, _ = self._failures.get(key, (0, now))
            self._failures[key] = (count + 1, now)
            if len(self._failures) > 10_000:  # forget the quiet ones so guessing many names cannot fill memory
                cutoff = now - 3600
                self._failures = {k: v for k, v in self._failures.items() if v[1] >= cutoff}

    def succeeded(self, key: tuple[str, str]) -> None:
        """Forget the failures of a name and address that got in."""
        with self._lock:
            self._failures.pop(key, None)


def safe_next(target: str | None) -> str:
    """A local path to go to after logging in; anything else (another site, a scheme) becomes '/'."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target if all(32 < ord(c) < 127 for c in target) else "/"


# ---------------------------------------------------------------- routes


@router.get("/login", include_in_schema=False)
def login_page(request: Request, next: str = "/") -> Response:
    """The login form (or straight on, if already logged in)."""
    if session_user(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return app_state(request).pages.render(request, "login.html.j2", next=safe_next(next), error=None, name="")


@router.post("/login", include_in_schema=False)
async def login(request: Request, form: CheckedForm) -> Response:
    """Check the password; a new session (and CSRF token) on success."""
    state = app_state(request)
    name = text_field(form, "name", 100).strip()
    password = text_field(form, "password", accounts.MAX_PASSWORD)
    target = safe_next(text_field(form, "next", 2000))
    key = (name.lower(), request.client.host if request.client else "")
    wait = state.throttle.delay(key)
    if wait > 0:
        await asyncio.sleep(wait)
    user = await run_in_threadpool(accounts.authenticate, state.data.engine, name, password) if name else None
    if user is None:
        state.throttle.failed(key)
        return state.pages.render(request, "login.html.j2", status=401, next=target, name=name,
                                  error="Unknown user name or wrong password.")
    state.throttle.succeeded(key)
    request.session.clear()  # a fresh session: nothing from before the login carries over
    request.session.update(user=user.name, csrf=secrets.token_urlsafe(32), since=int(time.time()))
    request.state.user = user
    return RedirectResponse(target, status_code=303)


@router.post("/logout", include_in_schema=False)
def logout(request: Request, form: CheckedForm) -> Response:
    """End the session."""
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
