"""Logging in and out, sessions, API tokens, roles, CSRF tokens and slowing down password guessing.

The session cookie is Starlette's signed cookie (itsdangerous, HttpOnly,
SameSite=Lax) holding a session id and a per-session CSRF token; the session
itself is a row in the database (:data:`risk.web.accounts.sessions`), read with
its user on every request. Logging out, a password change, a role change or a
lock deletes the row, so a copy of the cookie taken before is worth nothing.
Every POST carries the CSRF token in a hidden field.

Scripts use read-only API tokens (``Authorization: Bearer ...``), accepted on
``/api/`` routes only and never for anything but reading.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import math
import os
import secrets
import time
from collections.abc import Callable
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from risk.core.errors import ConfigError, ConfigIssue
from risk.core.settings import Settings, WebSettings
from risk.web import accounts
from risk.web.accounts import Role, User
from risk.web.common import BadInput, BadToken, Forbidden, LoginRequired, app_state

MIN_SECRET = 32
MAX_FORM_FIELDS = 20
NO_CAP = 2_000_000_000
"""The count cap when slowing down is off: never reached, and within a 32-bit integer column."""

router = APIRouter()
_UNKNOWN = object()
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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


# ---------------------------------------------------------------- sessions, tokens and roles


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def _bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header on an ``/api/`` route (elsewhere it is ignored)."""
    if not request.url.path.startswith("/api/"):
        return None
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def by_token(request: Request) -> bool:
    """Whether this request came with an API token rather than a session."""
    return bool(getattr(request.state, "by_token", False))


def session_user(request: Request) -> User | None:
    """The user of the request's API token or session, if it is still valid and the user active; else None.

    A token's user acts as a viewer whatever their role: tokens only read."""
    known = getattr(request.state, "user", _UNKNOWN)  # looked up once per request
    if known is not _UNKNOWN:
        return cast(User | None, known)
    state = app_state(request)
    engine = state.data.engine
    token = _bearer(request)
    user: User | None = None
    if token is not None:
        request.state.by_token = True
        found = accounts.token_user(engine, token)
        user = dataclasses.replace(found, role="viewer") if found else None
    else:
        sid = request.session.get("sid")
        session = accounts.session_user(engine, sid) if isinstance(sid, str) else None
        if session is not None:
            user, since = session
            # measured from the login: the cookie is signed again whenever the session changes
            if time.time() - since.timestamp() > state.settings.web.session_max_age_s:
                accounts.end_session(engine, cast(str, sid))
                user = None
        if user is None and sid is not None:
            request.session.pop("sid", None)
    request.state.user = user
    return user


def require(role: Role) -> Callable[[Request], User]:
    """A dependency: the user, if logged in with ``role`` or higher (401 if not logged in, 403 if too low).

    An API token passes only a viewer's GET: it can never record a decision or manage users."""
    def dependency(request: Request) -> User:
        user = session_user(request)
        if user is None:
            raise BadToken() if by_token(request) else LoginRequired()
        if by_token(request) and (role != "viewer" or request.method not in ("GET", "HEAD")):
            raise Forbidden("API tokens can only read; log in to do this.")
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


# ---------------------------------------------------------------- client addresses


def trusted_networks(web: WebSettings) -> tuple[Network, ...]:
    """``web.trusted_proxies`` parsed (the settings have checked each entry)."""
    return tuple(ipaddress.ip_network(p, strict=False) for p in web.trusted_proxies)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(request: Request, trusted: tuple[Network, ...]) -> str:
    """The client's address: the connection's peer, or, when the peer is a trusted proxy, the nearest
    address in ``X-Forwarded-For`` that is not a trusted proxy.

    Read from the right: each trusted proxy appends the address it was connected from, so everything left
    of the first untrusted hop may have been written by the client itself."""
    address = request.client.host if request.client else ""
    peer = _ip(address)
    if not trusted or peer is None or not any(peer in net for net in trusted):
        return address
    hops = [h for line in request.headers.getlist("x-forwarded-for") for h in line.split(",") if h.strip()]
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:  # not an address: stop at the last one a trusted proxy vouched for
            break
        address = str(ip)
        if not any(ip in net for net in trusted):
            break
    return address


# ---------------------------------------------------------------- slowing down guesses


class LoginThrottle:
    """Login attempts per user name and per client address, counted in the database.

    Each attempt is counted before its password is checked (and taken back if it was right), in one atomic
    statement: parallel attempts cannot all read the same count and all pass. Past a limit each attempt
    waits ``login_delay_s``, doubling; one that would wait longer than ``login_max_delay_s`` is refused
    without checking its password, until ``login_window_s`` after the last counted attempt.
    """

    def __init__(self, engine: Engine, web: WebSettings, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.web = web
        self.clock = clock
        self.limits = {"name": web.login_max_failures, "addr": web.login_max_failures_per_address}
        self.slowed = self._slowed_attempts()

    def _slowed_attempts(self) -> int:
        """How many attempts past a limit are slowed down rather than refused."""
        delay, most = self.web.login_delay_s, self.web.login_max_delay_s
        if delay == 0:
            return NO_CAP
        slowed = 0
        while delay * 2.0 ** slowed <= most:  # a loop, not log2: no rounding at the exact edge
            slowed += 1
        return slowed

    def _delay(self, count: int, limit: int) -> float | None:
        excess = count - limit
        if excess <= 0:
            return 0.0
        if excess > self.slowed:
            return None
        return self.web.login_delay_s * 2.0 ** (excess - 1)

    def _subjects(self, name: str, address: str) -> dict[str, str]:
        subjects = {"addr": f"addr:{address[:100]}"}
        if name:
            subjects["name"] = f"name:{name.lower()}"
        return subjects

    def attempt(self, name: str, address: str) -> float | None:
        """Count an attempt; the seconds it must wait before its password is checked, None if refused."""
        now = self.clock()
        waits = []
        for kind, subject in self._subjects(name, address).items():
            limit = self.limits[kind]
            cap = min(NO_CAP, limit + self.slowed)
            count = accounts.count_login_attempt(self.engine, subject, now, self.web.login_window_s, cap)
            waits.append(self._delay(count, limit))
        return None if None in waits else max(cast(list[float], waits))

    def succeeded(self, name: str, address: str) -> None:
        """The password was right: forget the name's failures and take this attempt back from the address's."""
        subjects = self._subjects(name, address)
        accounts.uncount_login_attempt(self.engine, subjects["name"], forget=True)
        accounts.uncount_login_attempt(self.engine, subjects["addr"])

    @property
    def refusal(self) -> str:
        """What a refused attempt is told."""
        minutes = max(1, math.ceil(self.web.login_window_s / 60))
        return (f"Too many failed logins for this user name or from this address. Try again in {minutes} "
                f"minute{'s' if minutes != 1 else ''}.")


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
    engine = state.data.engine
    name = text_field(form, "name", 100).strip()
    password = text_field(form, "password", accounts.MAX_PASSWORD)
    target = safe_next(text_field(form, "next", 2000))
    address = client_address(request, state.trusted_proxies)
    throttle: LoginThrottle = state.throttle
    wait = await run_in_threadpool(throttle.attempt, name, address)
    if wait is None:
        return state.pages.render(request, "login.html.j2", status=429, next=target, name=name,
                                  error=throttle.refusal)
    if wait > 0:
        await asyncio.sleep(wait)
    user = await run_in_threadpool(accounts.authenticate, engine, name, password) if name else None
    if user is None:
        return state.pages.render(request, "login.html.j2", status=401, next=target, name=name,
                                  error="Unknown user name or wrong password.")
    await run_in_threadpool(throttle.succeeded, name, address)
    previous = request.session.get("sid")
    if isinstance(previous, str):
        await run_in_threadpool(accounts.end_session, engine, previous)
    sid = await run_in_threadpool(accounts.open_session, engine, user.name, state.settings.web.session_max_age_s)
    request.session.clear()  # a fresh session: nothing from before the login carries over
    request.session.update(sid=sid, csrf=secrets.token_urlsafe(32))
    request.state.user = user
    return RedirectResponse(target, status_code=303)


@router.post("/logout", include_in_schema=False)
def logout(request: Request, form: CheckedForm) -> Response:
    """End the session, in the database too: the cookie no longer opens anything, wherever a copy of it is."""
    sid = request.session.get("sid")
    if isinstance(sid, str):
        accounts.end_session(app_state(request).data.engine, sid)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
