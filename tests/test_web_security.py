"""Security of the review pages: CSRF, XSS and SQL injection in every field and parameter, sessions, secrets,
slowed-down password guessing and error pages without stack traces."""

from __future__ import annotations

import base64
import json
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import func, inspect, select
from web_support import (
    PASSWORDS,
    SECRET,
    WebState,
    app_for,
    client_for,
    csrf_of,
    fresh_login_counts,  # noqa: F401 (an autouse fixture)
    login,
    token,
    web_config,
)

from risk.core.errors import ConfigError
from risk.core.settings import load_settings
from risk.core.store import reviews
from risk.web import accounts

XSS = ['<script>alert("xss")</script>', '"><img src=x onerror=alert(1)>', "'><svg onload=alert(1)>",
       "javascript:alert(1)//</textarea><script>alert(2)</script>"]
SQLI = ["' OR '1'='1", "'; DROP TABLE reviews; --", "1 UNION SELECT name, password_hash FROM users --",
        "x\" OR \"\"=\"", "53033000100' --"]
RAW_MARKUP = ("<script>alert", "<img src=x", "<svg onload", "</textarea><script>")


def _no_raw_markup(text: str) -> None:
    for raw in RAW_MARKUP:
        assert raw not in text, f"unescaped {raw!r} in the response"


@pytest.fixture(scope="module")
def planner(app: FastAPI) -> TestClient:
    return client_for(app, "pat")


@pytest.fixture(scope="module")
def admin(app: FastAPI) -> TestClient:
    return client_for(app, "ada")


def _counts(state: WebState) -> dict[str, int]:
    with state.engine.connect() as conn:
        return {t: int(conn.execute(select(func.count()).select_from(accounts.metadata.tables[t])).scalar() or 0)
                for t in ("runs", "scores", "drivers", "reviews", "users", "audit")}


# ---------------------------------------------------------------- CSRF

POSTS = [
    ("/tracts/{geoid}/reviews", {"decision": "monitoring", "note": "csrf", "follow_up": ""}, "planner"),
    ("/admin/users", {"name": "csrf-victim", "role": "admin", "password": "csrf-password"}, "admin"),
    ("/admin/users/val", {"role": "admin", "active": "yes"}, "admin"),
    ("/logout", {}, "planner"),
]


@pytest.mark.parametrize("sent", ["missing", "wrong", "another session's"])
@pytest.mark.parametrize(("path", "form", "who"), POSTS, ids=[p for p, _, _ in POSTS])
def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
        app: FastAPI, state: WebState, path: str, form: dict[str, str], who: str, sent: str) -> None:
    client = client_for(app, {"planner": "pat", "admin": "ada"}[who])
    other = csrf_of(client_for(app).get("/login").text)
    data = dict(form, csrf_token={"missing": None, "wrong": "x" * 43, "another session's": other}[sent])
    data = {k: v for k, v in data.items() if v is not None}
    before = _counts(state)
    response = client.post(path.replace("{geoid}", state.high[5]), data=data, follow_redirects=False)
    assert response.status_code == 403 and "CSRF check failed" in response.text
    assert _counts(state) == before
    assert client.get("/api/tracts").status_code == 200  # still logged in: the refused logout did nothing


def test_the_login_form_needs_its_csrf_token_too(app: FastAPI) -> None:
    client = client_for(app)
    response = client.post("/login", data={"name": "pat", "password": PASSWORDS["pat"], "next": "/"})
    assert response.status_code == 403
    assert client.get("/api/tracts").status_code == 401


# ---------------------------------------------------------------- XSS


@pytest.mark.parametrize("payload", XSS)
def test_markup_in_a_note_is_shown_as_text_on_every_page(planner: TestClient, state: WebState,
                                                         payload: str) -> None:
    geoid = state.high[6]
    response = planner.post(f"/tracts/{geoid}/reviews", data={
        "decision": "monitoring", "note": payload, "follow_up": "", "csrf_token": token(planner)})
    assert response.status_code == 200  # followed the redirect to the tract page
    for page in (f"/tracts/{geoid}", "/audit", "/", "/?status=monitoring"):
        _no_raw_markup(planner.get(page).text)
    assert str(escape(payload)) in planner.get(f"/tracts/{geoid}").text
    assert planner.get(f"/api/tracts/{geoid}").json()["reviews"][0]["note"] == payload  # stored as written
    assert planner.get(f"/api/tracts/{geoid}").headers["content-type"] == "application/json"


@pytest.mark.parametrize("payload", XSS)
@pytest.mark.parametrize("field", ["decision", "follow_up"])
def test_markup_in_a_rejected_review_field_is_escaped_when_the_form_is_shown_again(
        planner: TestClient, state: WebState, field: str, payload: str) -> None:
    form = {"decision": "monitoring", "note": "", "follow_up": "", field: payload, "csrf_token": token(planner)}
    response = planner.post(f"/tracts/{state.high[6]}/reviews", data=form)
    assert response.status_code == 400 and f"{field}: " in response.text
    _no_raw_markup(response.text)


@pytest.mark.parametrize("payload", XSS)
def test_markup_in_the_login_fields_is_escaped(app: FastAPI, payload: str) -> None:
    client = client_for(app)
    response = client.post("/login", data={"name": payload, "password": payload, "next": payload,
                                           "csrf_token": csrf_of(client.get("/login").text)})
    assert response.status_code == 401
    _no_raw_markup(response.text)
    _no_raw_markup(client.get("/login", params={"next": payload}).text)


@pytest.mark.parametrize("payload", XSS)
@pytest.mark.parametrize("field", ["name", "role", "password"])
def test_markup_in_the_user_form_is_refused_and_escaped(admin: TestClient, state: WebState, field: str,
                                                         payload: str) -> None:
    name = f"newcomer-{XSS.index(payload)}"
    form = {"name": name, "role": "viewer", "password": "a-long-password", field: payload}
    response = admin.post("/admin/users", data={**form, "csrf_token": token(admin)})
    if field == "password":  # any password of a sensible length is allowed, and never shown
        assert response.status_code == 200 and accounts.get_user(state.engine, name) is not None
        assert payload not in response.text
        return
    assert response.status_code == 400 and f"{field}: " in response.text
    _no_raw_markup(response.text)
    change = admin.post("/admin/users/val", data={"role": payload, "active": payload, "csrf_token": token(admin)})
    assert change.status_code == 400
    _no_raw_markup(change.text)


PAGES_WITH_PARAMETERS = {
    "/": ["area", "tier", "status", "sort", "order"],
    "/api/tracts": ["area", "tier", "status", "sort", "order"],
    "/export/flagged.csv": ["area", "tier", "status", "sort", "order"],
    "/export/flagged.geojson": ["area", "tier", "status", "sort", "order"],
    "/audit": ["target", "limit"],
}


@pytest.mark.parametrize("payload", XSS + SQLI)
@pytest.mark.parametrize(("page", "param"), [(p, q) for p, qs in PAGES_WITH_PARAMETERS.items() for q in qs])
def test_hostile_query_parameters_are_refused_by_name_without_echo_or_effect(
        admin: TestClient, state: WebState, page: str, param: str, payload: str) -> None:
    before = _counts(state)
    response = admin.get(page, params={param: payload})
    assert response.status_code in (400, 422)
    assert param in response.text
    assert payload not in response.text and "Traceback" not in response.text
    _no_raw_markup(response.text)
    assert _counts(state) == before


@pytest.mark.parametrize("payload", XSS + SQLI)
def test_hostile_path_parameters_are_refused_without_echo(admin: TestClient, payload: str) -> None:
    for page in ("/tracts/{}", "/tracts/{}/waterfall.png", "/api/tracts/{}"):
        response = admin.get(page.format(payload.replace("/", "%2F")))
        assert response.status_code in (404, 422)
        assert payload not in response.text
        _no_raw_markup(response.text)
    response = admin.post(f"/admin/users/{payload.replace('/', '%2F')}",
                          data={"role": "viewer", "active": "yes", "csrf_token": token(admin)})
    assert response.status_code in (404, 422)
    _no_raw_markup(response.text)


# ---------------------------------------------------------------- SQL injection


@pytest.mark.parametrize("payload", SQLI)
def test_sql_in_the_login_name_or_password_does_not_log_in(state: WebState, payload: str) -> None:
    client = client_for(app_for(state))
    for name, password in ((payload, "anything-at-all"), ("pat", payload), (payload, payload)):
        response = client.post("/login", data={"name": name, "password": password, "next": "/",
                                               "csrf_token": csrf_of(client.get("/login").text)})
        assert response.status_code == 401
        assert client.get("/api/tracts").status_code == 401
    assert set(inspect(state.engine).get_table_names()) >= {"runs", "scores", "reviews", "users", "audit"}


@pytest.mark.parametrize("payload", SQLI)
def test_sql_in_a_note_is_stored_verbatim_and_runs_nothing(planner: TestClient, state: WebState,
                                                           payload: str) -> None:
    geoid = state.high[7]
    before = _counts(state)
    follow = (date.today() + timedelta(days=7)).isoformat()
    planner.post(f"/tracts/{geoid}/reviews", data={"decision": "confirmed", "note": payload, "follow_up": follow,
                                                   "csrf_token": token(planner)})
    with state.engine.connect() as conn:
        stored = conn.execute(select(reviews.c.note).where(reviews.c.geoid == geoid)
                              .order_by(reviews.c.id.desc()).limit(1)).scalar()
    assert stored == payload
    after = _counts(state)
    assert after["reviews"] == before["reviews"] + 1 and after["audit"] == before["audit"] + 1
    assert {k: v for k, v in after.items() if k not in ("reviews", "audit")} == \
        {k: v for k, v in before.items() if k not in ("reviews", "audit")}


@pytest.mark.parametrize("payload", SQLI)
def test_sql_in_a_new_user_name_is_refused_and_the_users_table_is_intact(admin: TestClient, state: WebState,
                                                                         payload: str) -> None:
    before = _counts(state)
    response = admin.post("/admin/users", data={"name": payload, "role": "viewer", "password": "a-long-password",
                                                "csrf_token": token(admin)})
    assert response.status_code == 400 and "name: " in response.text
    assert _counts(state) == before


def test_a_csv_export_cannot_smuggle_a_spreadsheet_formula(planner: TestClient, state: WebState) -> None:
    geoid = state.high[8]
    planner.post(f"/tracts/{geoid}/reviews", data={"decision": "monitoring", "note": "=HYPERLINK(\"http://x\")",
                                                   "follow_up": "", "csrf_token": token(planner)})
    text = planner.get("/export/flagged.csv", params={"tier": "all"}).text
    line = next(row for row in text.splitlines() if row.startswith(geoid))
    assert "'=HYPERLINK" in line


# ---------------------------------------------------------------- sessions, cookies, secrets


def test_the_session_cookie_is_httponly_samesite_and_secure_when_configured(state: WebState) -> None:
    plain = client_for(app_for(state))
    cookie = plain.get("/login").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    secure = TestClient(app_for(state, secure_cookies=True), base_url="https://testserver")
    cookie = secure.get("/login").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie


def _app_with_secret(app: FastAPI, secret: str) -> FastAPI:
    from risk.web import create_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(app.state.settings.web.secret_key_env, secret)
        return create_app(app.state.settings)


def test_a_forged_session_cookie_is_not_a_login(app: FastAPI) -> None:
    payload = base64.b64encode(json.dumps({"user": "ada", "csrf": "x" * 43}).encode()).decode()
    forged = client_for(app)
    forged.cookies.set("risk_session", f"{payload}.forged.signature")
    assert forged.get("/api/tracts").status_code == 401
    elsewhere = client_for(_app_with_secret(app, "another-secret-that-is-long-enough-42"), "ada")
    replayed = client_for(app)
    replayed.cookies.set("risk_session", elsewhere.cookies["risk_session"])
    assert replayed.get("/api/tracts").status_code == 401
    genuine = client_for(app)
    genuine.cookies.set("risk_session", client_for(app, "ada").cookies["risk_session"])
    assert genuine.get("/api/tracts").status_code == 200  # the control: a cookie this server signed works


def test_the_secret_key_comes_only_from_its_environment_variable(state: WebState, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from risk.web import create_app

    monkeypatch.delenv("RISK_WEB_SECRET", raising=False)
    with pytest.raises(ConfigError, match="RISK_WEB_SECRET is not set"):
        create_app(state.settings)
    monkeypatch.setenv("RISK_WEB_SECRET", "too-short")
    with pytest.raises(ConfigError, match="at least 32"):
        create_app(state.settings)
    # the configuration has no place for the key itself
    with pytest.raises(ConfigError, match="secret_key"):
        load_settings(web_config(tmp_path, secret_key=SECRET))


def test_a_login_gets_a_new_session_and_csrf_token(app: FastAPI) -> None:
    client = client_for(app)
    before = csrf_of(client.get("/login").text)
    login(client, "val")
    assert token(client) != before


def test_a_login_lasts_session_max_age_s_even_while_it_is_used(state: WebState,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_for(state, session_max_age_s=3600)
    client = client_for(app, "pat")
    start = time.time()
    for minutes in (40, 55):
        monkeypatch.setattr(time, "time", lambda m=minutes: start + 60 * m)
        # a decision changes the session (its flash message), so the cookie is signed afresh each time
        response = client.post(f"/tracts/{state.high[9]}/reviews", data={
            "decision": "monitoring", "note": f"after {minutes} minutes", "follow_up": "",
            "csrf_token": token(client)})
        assert response.status_code == 200 and "Decision recorded" in response.text
    monkeypatch.setattr(time, "time", lambda: start + 61 * 60)
    assert client.get("/model").status_code == 401


def test_only_local_addresses_are_followed_after_login(app: FastAPI) -> None:
    for target, expected in (("/model", "/model"), ("https://evil.example/", "/"), ("//evil.example/x", "/"),
                             ("/\\evil.example", "/"), ("javascript:alert(1)", "/")):
        client = client_for(app)
        response = client.post("/login", data={"name": "val", "password": PASSWORDS["val"], "next": target,
                                               "csrf_token": csrf_of(client.get("/login").text)},
                               follow_redirects=False)
        assert response.headers["location"] == expected


# ---------------------------------------------------------------- guessing passwords


def test_repeated_failed_logins_are_slowed_down_per_name_and_address(state: WebState) -> None:
    app = app_for(state, login_max_failures=2, login_delay_s=0.3)
    client = client_for(app)

    def attempt(name: str, password: str) -> tuple[int, float]:
        csrf = csrf_of(client.get("/login").text)
        start = time.perf_counter()
        response = client.post("/login", data={"name": name, "password": password, "next": "/",
                                               "csrf_token": csrf}, follow_redirects=False)
        return response.status_code, time.perf_counter() - start

    quick = [attempt("pat", "wrong-password")[1] for _ in range(2)]
    third = attempt("pat", "wrong-password")
    fourth = attempt("pat", "wrong-password")
    assert third[0] == fourth[0] == 401
    assert third[1] >= 0.3 and fourth[1] >= 0.6 and fourth[1] > max(quick) + 0.3
    right = attempt("pat", PASSWORDS["pat"])  # even the right password waits: the delay is not an oracle
    assert right[0] == 303 and right[1] >= 1.2
    assert attempt("val", "wrong-password")[1] < 0.3 + min(quick)  # another name is not slowed down


# ---------------------------------------------------------------- errors and headers


def test_an_unexpected_error_shows_an_apology_not_a_stack_trace(state: WebState) -> None:
    app = app_for(state)
    client = client_for(app, "val")

    def broken() -> None:
        raise RuntimeError("internal detail /secret/path")

    app.state.data.latest = broken
    for page in ("/", "/api/tracts"):
        response = client.get(page)
        assert response.status_code == 500
        assert "Traceback" not in response.text and "internal detail" not in response.text
        assert "Something went wrong" in response.text


def test_every_response_carries_the_security_headers(planner: TestClient, state: WebState) -> None:
    for page in ("/", f"/tracts/{state.high[0]}", "/api/tracts", "/login", "/nowhere"):
        headers = planner.get(page).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "'unsafe-inline'" not in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
    page = planner.get("/").text
    assert "<script>" not in page  # no inline script for the policy to allow
    assert 'src="/static/leaflet/leaflet.js"' in page and "cdn" not in page.lower()
