"""One real job run on the bundled sample, shared by every web test module, and logged-in test clients.

The weekly job runs twice (so tracts have a history): the first run trains a
model (about 20-40 s on 2 cores), the second reuses it. Pytest would build a
session fixture imported into several modules once per module, so the state is
memoised here instead.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from conftest import bundled_config_copy
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete

from risk.core.settings import Settings, load_settings
from risk.core.store import run_scores
from risk.service.pipeline import run
from risk.web import accounts

SECRET = "test-secret-key-that-is-long-enough-0123456789"
SECRET_ENV = "RISK_WEB_SECRET"
PASSWORDS = {"ada": "admin-password-1", "pat": "planner-password-1", "val": "viewer-password-1",
             "lou": "locked-password-1"}
ROLE_OF = {"ada": "admin", "pat": "planner", "val": "viewer", "lou": "viewer"}
USER_FOR_ROLE = {"admin": "ada", "planner": "pat", "viewer": "val"}
FIRST_AS_OF = date(2016, 9, 1)  # a year of eviction counts before AS_OF: tiers change between the runs
AS_OF = date(2019, 3, 1)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class WebState:
    """The job's outputs in a temporary folder, with users."""

    folder: Path
    config: Path
    settings: Settings
    engine: Engine
    run_ids: tuple[int, int]
    high: list[str]
    """High-tier tracts of the second run, most likely first (without ``alerting``)."""
    low: list[str]
    alerting: str
    """A tract newly in the high tier in the second run: it alerts."""


_STATE: WebState | None = None


def web_config(folder: Path, **web: object) -> Path:
    """The bundled config with its state in ``folder`` and quick backtest settings; ``web`` keys replaced."""
    path = bundled_config_copy(folder)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["model"] = {**data["model"], "bootstrap": 50, "null_simulations": 5}
    data["web"] = {**data.get("web", {}), **web}
    data["delivery"] = {**data["delivery"], "outbox_dir": str(folder / "outbox")}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def build_state(tmp_path_factory: pytest.TempPathFactory) -> WebState:
    """Run the job twice and add one user per role (once per test session)."""
    global _STATE
    if _STATE is None:
        folder = tmp_path_factory.mktemp("web-state")
        config = web_config(folder)
        settings = load_settings(config)
        first = run(settings, as_of=FIRST_AS_OF)
        second = run(settings, as_of=AS_OF)
        engine = accounts.open_database(settings.paths.database)
        for name, role in ROLE_OF.items():
            accounts.add_user(engine, name, role, PASSWORDS[name], actor="test")
        accounts.set_access(engine, "lou", "viewer", False, actor="test")
        scores = run_scores(engine, second.run_id).sort_values("probability", ascending=False)
        previous = run_scores(engine, first.run_id)
        newly_high = [g for g in scores.index[scores["tier"] == "high"] if previous.loc[g, "tier"] != "high"]
        assert newly_high, "the fixture needs a tract newly in the high tier (it alerts)"
        alerting = newly_high[0]  # kept out of ``high`` so that no other test records a decision on it
        _STATE = WebState(folder, config, settings, engine, (int(first.run_id), int(second.run_id)),
                          [g for g in scores.index[scores["tier"] == "high"] if g != alerting],
                          list(scores.index[scores["tier"] == "low"]), alerting)
    return _STATE


def csrf_of(html: str) -> str:
    """The CSRF token in a page's form."""
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def login(client: TestClient, name: str, password: str | None = None) -> TestClient:
    """Log a test client in through the real form."""
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"name": name, "password": password or PASSWORDS[name], "next": "/",
                                           "csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return client


def token(client: TestClient) -> str:
    """The logged-in session's CSRF token (every page carries it in the log-out form)."""
    return csrf_of(client.get("/api/docs").text)


def app_for(state: WebState, **web: object) -> FastAPI:
    """A fresh application on the shared database, with ``web`` settings replaced.

    The secret is in the environment only while the application is made: it reads the key once."""
    from risk.web import create_app

    settings = state.settings
    if web:
        settings = settings.model_copy(update={"web": settings.web.model_copy(update=web)})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SECRET_ENV, SECRET)
        return create_app(settings)


def client_for(app: FastAPI, name: str | None = None) -> TestClient:
    """A test client of ``app``, logged in as ``name`` if given; server errors come back as 500 pages."""
    client = TestClient(app, raise_server_exceptions=False)
    return login(client, name) if name else client


def forget_login_attempts(engine: Engine) -> None:
    """Clear the counted login attempts (they live in the database every test here shares)."""
    with engine.begin() as conn:
        conn.execute(delete(accounts.login_failures))


@pytest.fixture(autouse=True)
def fresh_login_counts(state: WebState) -> Iterator[None]:
    """Each test starts with no failed login counted against any name or address (imported: autouse)."""
    forget_login_attempts(state.engine)
    yield


# ---------------------------------------------------------------- a real server


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[int]:
    """``app`` served by uvicorn as `risk serve` configures it, on a free loopback port, in a thread; the port."""
    import uvicorn

    from risk.web.server import server_config

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(server_config(app, app.state.settings, "127.0.0.1", port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class Answer:
    """A real server's answer: status, body and the session cookie it set (if any)."""

    status: int
    text: str
    cookie: str | None


def http_request(port: int, method: str, path: str, form: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> Answer:
    """One request over a fresh loopback connection (the standard library's client: no connection reuse)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = urlencode(form) if form is not None else None
        sent = dict(headers or {})
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        cookie = response.getheader("set-cookie")
        return Answer(response.status, response.read().decode("utf-8", "replace"),
                      cookie.split(";", 1)[0] if cookie else None)
    finally:
        conn.close()


def login_form(port: int) -> tuple[str, str]:
    """A fresh visitor's session cookie and the login form's CSRF token."""
    page = http_request(port, "GET", "/login")
    assert page.cookie is not None
    return page.cookie, csrf_of(page.text)


def try_login(port: int, name: str, password: str, cookie: str, csrf: str,
              forwarded_for: str | None = None) -> Answer:
    """POST the login form over a real connection, optionally with an X-Forwarded-For header."""
    headers = {"Cookie": cookie}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return http_request(port, "POST", "/login", {"name": name, "password": password, "next": "/",
                                                 "csrf_token": csrf}, headers)
