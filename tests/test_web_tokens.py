"""Read-only API tokens for scripts: made, listed and revoked with `risk users`, stored hashed, accepted as
`Authorization: Bearer` on /api/ routes only, never for a decision or an admin action."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner, Result
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from web_support import (
    WebState,
    client_for,
    fresh_login_counts,  # noqa: F401 (an autouse fixture)
    token,
)

from risk.cli.main import main
from risk.core.store import reviews
from risk.web import accounts


@pytest.fixture(scope="module")
def anonymous(app: FastAPI) -> TestClient:
    return client_for(app)


def _risk(state: WebState, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(state.config), *args])


def _new_token(state: WebState, name: str, role: str = "viewer") -> str:
    """A user of the test's own and a token made for them by `risk users token`."""
    if accounts.get_user(state.engine, name) is None:
        accounts.add_user(state.engine, name, role, f"{name}-password", actor="test")
    result = _risk(state, "users", "token", name)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_risk_users_token_prints_a_token_once_that_reads_the_api(state: WebState, anonymous: TestClient) -> None:
    result = _risk(state, "users", "token", "tia-reader")  # no such user yet
    assert result.exit_code == 1 and "name: no user named 'tia-reader'" in result.output
    secret = _new_token(state, "tia-reader")
    assert secret.startswith("risk_") and len(secret) >= 40
    listed = anonymous.get("/api/tracts", headers=_bearer(secret))
    assert listed.status_code == 200 and listed.json()["tracts"]
    geoid = listed.json()["tracts"][0]["geoid"]
    assert anonymous.get(f"/api/tracts/{geoid}", headers=_bearer(secret)).status_code == 200
    assert anonymous.get("/api/openapi.json", headers=_bearer(secret)).status_code == 200
    with state.engine.connect() as conn:
        stored = conn.execute(select(accounts.api_tokens.c.token_hash)).scalars().all()
    assert hashlib.sha256(secret.encode()).hexdigest() in stored and secret not in stored
    assert secret not in _risk(state, "users", "tokens", "tia-reader").output  # shown once only


def test_a_token_is_not_a_login_outside_the_api(state: WebState, anonymous: TestClient) -> None:
    secret = _new_token(state, "tia-outside")
    for page in ("/", f"/tracts/{state.high[0]}", "/model", "/export/flagged.csv", "/map/tracts.geojson"):
        assert anonymous.get(page, headers=_bearer(secret), follow_redirects=False).status_code == 401, page


def test_a_token_never_records_a_decision_or_acts_as_an_admin(state: WebState, app: FastAPI) -> None:
    secret = _new_token(state, "ada")  # even an admin's token only reads
    client = client_for(app)
    csrf = token(client_for(app, "ada"))  # a real form token does not help either

    def count() -> int:
        with state.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(reviews)).scalar() or 0)

    before, users_before = count(), len(accounts.list_users(state.engine))
    for path, form in ((f"/tracts/{state.high[11]}/reviews", {"decision": "confirmed", "note": "by token",
                                                               "follow_up": ""}),
                       ("/admin/users", {"name": "made-by-token", "role": "admin", "password": "a-long-password"}),
                       ("/admin/users/val", {"role": "admin", "active": "yes"})):
        response = client.post(path, data={**form, "csrf_token": csrf}, headers=_bearer(secret),
                               follow_redirects=False)
        assert response.status_code in (401, 403), path
    for page in ("/admin/users", "/audit"):
        assert client.get(page, headers=_bearer(secret), follow_redirects=False).status_code == 401
    assert count() == before and len(accounts.list_users(state.engine)) == users_before
    assert accounts.get_user(state.engine, "val").role == "viewer"  # type: ignore[union-attr]


def test_a_revoked_token_stops_working(state: WebState, anonymous: TestClient) -> None:
    secret = _new_token(state, "tia-revoked")
    token_id = accounts.list_tokens(state.engine, "tia-revoked")[-1].id
    assert anonymous.get("/api/tracts", headers=_bearer(secret)).status_code == 200
    result = _risk(state, "users", "revoke-token", str(token_id))
    assert result.exit_code == 0 and f"API token {token_id} of tia-revoked revoked" in result.output
    refused = anonymous.get("/api/tracts", headers=_bearer(secret))
    assert refused.status_code == 401 and "API token is not valid" in refused.json()["detail"]
    assert refused.headers["www-authenticate"].startswith("Bearer")
    listing = _risk(state, "users", "tokens", "tia-revoked").output
    assert str(token_id) in listing and "revoked" in listing
    assert [e["action"] for e in accounts.audit_entries(state.engine, target="tia-revoked")][:2] == \
        ["token.revoke", "token.add"]


def test_a_token_of_a_locked_user_stops_working_for_good(state: WebState, anonymous: TestClient) -> None:
    secret = _new_token(state, "tia-locked")
    accounts.set_access(state.engine, "tia-locked", "viewer", False, actor="test")
    assert anonymous.get("/api/tracts", headers=_bearer(secret)).status_code == 401
    refused = _risk(state, "users", "token", "tia-locked")
    assert refused.exit_code == 1 and "is locked" in refused.output
    accounts.set_access(state.engine, "tia-locked", "viewer", True, actor="test")
    assert anonymous.get("/api/tracts", headers=_bearer(secret)).status_code == 401  # revoked by the lock


def test_a_token_of_a_deleted_user_stops_working(state: WebState, anonymous: TestClient) -> None:
    secret = _new_token(state, "tia-deleted")
    result = _risk(state, "users", "delete", "tia-deleted")
    assert result.exit_code == 0 and "user tia-deleted deleted" in result.output
    assert anonymous.get("/api/tracts", headers=_bearer(secret)).status_code == 401
    accounts.add_user(state.engine, "tia-deleted", "viewer", "tia-deleted-password", actor="test")
    assert anonymous.get("/api/tracts", headers=_bearer(secret)).status_code == 401  # not the new namesake's


@pytest.mark.parametrize("header", ["Bearer nonsense", "Bearer risk_" + "x" * 43, "Bearer ", "bearer  risk_"])
def test_a_wrong_token_is_a_401_that_says_so(anonymous: TestClient, header: str) -> None:
    response = anonymous.get("/api/tracts", headers={"Authorization": header})
    assert response.status_code == 401 and "API token is not valid" in response.json()["detail"]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["users", "revoke-token", "999999"], 1, "id: no API token with id 999999"),
    (["users", "revoke-token", "abc"], 2, "'abc' is not a valid integer"),
    (["users", "delete", "nobody-at-all"], 1, "name: no user named 'nobody-at-all'"),
])
def test_token_and_delete_commands_refuse_bad_input_with_a_message_and_exit_code(
        state: WebState, args: list[str], code: int, message: str) -> None:
    result = _risk(state, *args)
    assert result.exit_code == code and message in result.output and "Traceback" not in result.output
