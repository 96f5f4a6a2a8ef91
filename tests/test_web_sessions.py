"""Sessions live in the database: logging out, a password change, a role change and a lock end them, and a copy
of the cookie taken before is then worth nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, inspect, select
from web_support import (
    WebState,
    client_for,
    fresh_login_counts,  # noqa: F401 (an autouse fixture)
    login,
    token,
)

from risk.cli.main import main
from risk.core.store import reviews
from risk.web import accounts

READ_PAGES = ("/", "/model", "/audit", "/api/tracts", "/api/docs", "/export/flagged.csv")


@pytest.fixture(scope="module")
def admin(app: FastAPI) -> TestClient:
    return client_for(app, "ada")


def _planner(state: WebState, app: FastAPI, name: str) -> TestClient:
    """A new planner of this test's own, logged in (changing the shared users would disturb other tests)."""
    accounts.add_user(state.engine, name, "planner", f"{name}-password-1", actor="test")
    return login(client_for(app), name, f"{name}-password-1")


def _replay(app: FastAPI, cookie: str) -> TestClient:
    """Another client presenting a captured session cookie."""
    thief = client_for(app)
    thief.cookies.set("risk_session", cookie)
    return thief


def _review_count(state: WebState) -> int:
    with state.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(reviews)).scalar() or 0)


def _assert_worthless(app: FastAPI, state: WebState, cookie: str, csrf: str) -> None:
    """The captured cookie reads no page and records no decision."""
    thief = _replay(app, cookie)
    for page in READ_PAGES:
        assert thief.get(page, follow_redirects=False).status_code == 401, page
    before = _review_count(state)
    response = thief.post(f"/tracts/{state.high[10]}/reviews", data={
        "decision": "confirmed", "note": "with a stolen cookie", "follow_up": "", "csrf_token": csrf},
        follow_redirects=False)
    assert response.status_code == 401
    assert _review_count(state) == before


def test_a_cookie_captured_before_logout_reads_nothing_and_records_no_decision(app: FastAPI,
                                                                                state: WebState) -> None:
    client = _planner(state, app, "sam-logout")
    cookie, csrf = client.cookies["risk_session"], token(client)
    assert _replay(app, cookie).get("/api/tracts").status_code == 200  # the control: a live copy works
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    _assert_worthless(app, state, cookie, csrf)


def test_logging_out_ends_only_that_session(app: FastAPI, state: WebState) -> None:
    laptop = _planner(state, app, "sam-two-devices")
    phone = login(client_for(app), "sam-two-devices", "sam-two-devices-password-1")
    laptop.post("/logout", data={"csrf_token": token(laptop)})
    assert laptop.get("/api/tracts").status_code == 401
    assert phone.get("/api/tracts").status_code == 200


def test_a_password_change_with_risk_users_password_ends_every_session_of_the_user(
        app: FastAPI, state: WebState) -> None:
    client = _planner(state, app, "sam-password")
    other = login(client_for(app), "sam-password", "sam-password-password-1")
    cookie, csrf = client.cookies["risk_session"], token(client)
    result = CliRunner().invoke(main, ["--config", str(state.config), "users", "password", "sam-password"],
                                input="a-brand-new-password\n")
    assert result.exit_code == 0 and "sessions have ended" in result.output, result.output
    _assert_worthless(app, state, cookie, csrf)
    assert other.get("/api/tracts").status_code == 401
    assert login(client_for(app), "sam-password", "a-brand-new-password").get("/api/tracts").status_code == 200
    assert accounts.audit_entries(state.engine, target="sam-password")[0]["action"] == "user.password"


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["users", "password", "nobody-here"], "long-enough-pw\n", "name: no user named 'nobody-here'"),
    (["users", "password", "ada"], "short\n", "password: must be at least 8 characters"),
])
def test_risk_users_password_refuses_bad_input_with_exit_1_naming_the_field(
        state: WebState, args: list[str], stdin: str, message: str) -> None:
    result = CliRunner().invoke(main, ["--config", str(state.config), *args], input=stdin)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_a_role_change_by_an_admin_ends_the_users_sessions(app: FastAPI, state: WebState,
                                                          admin: TestClient) -> None:
    client = _planner(state, app, "sam-role")
    cookie, csrf = client.cookies["risk_session"], token(client)
    response = admin.post("/admin/users/sam-role", data={"role": "viewer", "active": "yes",
                                                         "csrf_token": token(admin)}, follow_redirects=False)
    assert response.status_code == 303
    _assert_worthless(app, state, cookie, csrf)
    again = login(client_for(app), "sam-role", "sam-role-password-1")
    assert again.get("/audit").status_code == 403  # a viewer now


def test_saving_the_access_form_unchanged_keeps_the_session(app: FastAPI, state: WebState,
                                                            admin: TestClient) -> None:
    client = _planner(state, app, "sam-unchanged")
    admin.post("/admin/users/sam-unchanged", data={"role": "planner", "active": "yes", "csrf_token": token(admin)})
    assert client.get("/audit").status_code == 200


def test_locking_a_user_ends_their_sessions_and_unlocking_does_not_revive_them(
        app: FastAPI, state: WebState, admin: TestClient) -> None:
    client = _planner(state, app, "sam-lock")
    cookie, csrf = client.cookies["risk_session"], token(client)
    for active in ("no", "yes"):
        admin.post("/admin/users/sam-lock", data={"role": "planner", "active": active,
                                                  "csrf_token": token(admin)})
        _assert_worthless(app, state, cookie, csrf)


def test_a_database_made_before_sessions_tokens_and_login_counts_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = create_engine(f"sqlite:///{path}")
    new_tables = {"sessions", "api_tokens", "login_failures"}
    accounts.metadata.create_all(old, tables=[t for name, t in accounts.metadata.tables.items()
                                              if name not in new_tables])
    assert not new_tables & set(inspect(old).get_table_names())
    old.dispose()
    engine = accounts.open_database(str(path))
    assert new_tables <= set(inspect(engine).get_table_names())
    accounts.add_user(engine, "old-timer", "viewer", "old-timer-password")
    secret = accounts.open_session(engine, "old-timer", 3600)
    assert accounts.session_user(engine, secret) is not None
    assert accounts.count_login_attempt(engine, "name:old-timer", 0.0, 60, 10) == 1
