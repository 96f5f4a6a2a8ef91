"""The review pages in process: every route for every role, and what each page shows from a real job run."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from markupsafe import escape
from web_support import (
    PASSWORDS,
    USER_FOR_ROLE,
    WebState,
    app_for,
    client_for,
    csrf_of,
    login,
    token,
)

from risk.alerts.rules import decide
from risk.core.store import latest_decisions, run_drivers, run_scores
from risk.web import accounts
from risk.web.app import ROUTERS

ROLES = ("anonymous", "viewer", "planner", "admin")
RANK = {"anonymous": -1, "viewer": 0, "planner": 1, "admin": 2}

# every route of the application and the least role it needs (None: open to anyone)
ROUTES: list[tuple[str, str, str | None]] = [
    ("GET", "/login", None),
    ("POST", "/login", None),
    ("POST", "/logout", None),
    ("GET", "/", "viewer"),
    ("GET", "/map/tracts.geojson", "viewer"),
    ("GET", "/tracts/{geoid}", "viewer"),
    ("GET", "/tracts/{geoid}/waterfall.png", "viewer"),
    ("POST", "/tracts/{geoid}/reviews", "planner"),
    ("GET", "/model", "viewer"),
    ("GET", "/model/importance.png", "viewer"),
    ("GET", "/model/beeswarm.png", "viewer"),
    ("GET", "/model/pr_curves.png", "viewer"),
    ("GET", "/audit", "planner"),
    ("GET", "/admin/users", "admin"),
    ("POST", "/admin/users", "admin"),
    ("POST", "/admin/users/{name}", "admin"),
    ("GET", "/api/tracts", "viewer"),
    ("GET", "/api/tracts/{geoid}", "viewer"),
    ("GET", "/api/openapi.json", "viewer"),
    ("GET", "/api/docs", "viewer"),
    ("GET", "/export/flagged.csv", "viewer"),
    ("GET", "/export/flagged.geojson", "viewer"),
]


@pytest.fixture(scope="module")
def clients(app: FastAPI) -> dict[str, TestClient]:
    out = {role: client_for(app, name) for role, name in USER_FOR_ROLE.items()}
    out["anonymous"] = client_for(app)
    return out


def _call(client: TestClient, method: str, path: str, state: WebState, role: str) -> object:
    geoid = state.low[-1]
    url = path.replace("{geoid}", geoid).replace("{name}", "pat")
    if method == "GET":
        return client.get(url, follow_redirects=False)
    csrf = token(client) if role != "anonymous" else csrf_of(client.get("/login").text)
    forms = {
        "/login": {"name": "nobody", "password": "wrong-password"},
        "/logout": {},
        "/tracts/{geoid}/reviews": {"decision": "monitoring", "note": f"matrix check by {role}", "follow_up": ""},
        "/admin/users": {"name": f"added-by-{role}", "role": "viewer", "password": "a-long-password"},
        "/admin/users/{name}": {"role": "planner", "active": "yes"},
    }
    if path in ("/login", "/logout"):
        csrf = csrf_of(client.get("/login").text)  # a logged-in client is sent on to a page with the token
    return client.post(url, data={**forms[path], "csrf_token": csrf}, follow_redirects=False)


def test_the_route_table_names_every_route_of_the_application(app: FastAPI, clients: dict[str, TestClient]) -> None:
    served = {(m, r.path) for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)
              for m in r.methods if m != "HEAD"}
    assert served == {(m, p) for m, p, _ in ROUTES}
    # and the application serves exactly those: an address not in the table is not found
    assert clients["admin"].get("/admin").status_code == 404


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "needs"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_each_route_answers_each_role_as_its_least_role_allows(
        app: FastAPI, clients: dict[str, TestClient], state: WebState, method: str, path: str, needs: str | None,
        role: str) -> None:
    client = clients[role]
    if path == "/logout" and role != "anonymous":
        client = client_for(app, USER_FOR_ROLE[role])  # logging a shared client out would end its session
    response = _call(client, method, path, state, role)
    need = needs
    if need is not None and role == "anonymous":
        assert response.status_code == 401
        if path.startswith("/api/"):
            assert response.json() == {"detail": "Please log in."}
        else:
            assert 'action="/login"' in response.text  # the login form, not the page
    elif need is not None and RANK[role] < RANK[need]:
        assert response.status_code == 403
        assert f"needs the {need} role" in response.text
    elif (method, path) == ("POST", "/login"):
        assert response.status_code == 401  # a wrong password
    else:
        assert response.status_code in (200, 303), response.text[:500]


def test_logout_ends_the_session_and_its_token(app: FastAPI) -> None:
    client = client_for(app, "val")
    csrf = token(client)
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 401
    assert client.get("/api/tracts").status_code == 401


def test_the_list_shows_flagged_tracts_by_probability_with_map_and_exports(clients: dict[str, TestClient],
                                                                            state: WebState) -> None:
    page = clients["viewer"].get("/")
    assert page.status_code == 200
    scores = run_scores(state.engine, state.run_ids[1])
    flagged = scores[scores["tier"] != "low"].reset_index().sort_values(["probability", "geoid"],
                                                                         ascending=[False, True])
    rows = [line.split('"')[1] for line in page.text.splitlines() if line.strip().startswith("<tr data-geoid=")]
    assert rows == list(flagged["geoid"])
    assert 'id="map"' in page.text and "/static/leaflet/leaflet.js" in page.text and "/static/map.js" in page.text
    assert "/export/flagged.csv?" in page.text and "/export/flagged.geojson?" in page.text


def test_the_list_filters_by_tier_area_and_status_and_sorts_by_each_column(clients: dict[str, TestClient],
                                                                           state: WebState) -> None:
    api = clients["viewer"]
    high = api.get("/api/tracts", params={"tier": "high"}).json()["tracts"]
    assert {t["tier"] for t in high} == {"high"} and len(high) == len(state.high) + 1  # and the alerting one
    seattle = api.get("/api/tracts", params={"area": "Seattle", "tier": "all"}).json()["tracts"]
    county = api.get("/api/tracts", params={"tier": "all"}).json()["tracts"]
    assert 0 < len(seattle) < len(county) == 397
    assert all("(Seattle)" in t["name"] for t in seattle)
    by_change = api.get("/api/tracts", params={"sort": "change", "order": "asc"}).json()["tracts"]
    changes = [t["percentile_change"] for t in by_change]
    assert changes == sorted(changes)
    by_tier = [t["tier"] for t in api.get("/api/tracts", params={"sort": "tier"}).json()["tracts"]]
    assert by_tier == sorted(by_tier, key=["watch", "elevated", "high"].index, reverse=True)
    by_status = [t["status"] for t in api.get("/api/tracts", params={"sort": "status", "order": "asc"})
                 .json()["tracts"]]
    assert by_status == sorted(by_status)
    html = api.get("/", params={"sort": "change", "order": "asc", "tier": "high"}).text
    assert "sort=change&amp;order=desc" in html  # the active column's header flips the order


def test_the_status_filter_finds_the_tracts_with_that_decision(clients: dict[str, TestClient],
                                                               state: WebState) -> None:
    geoid = state.high[3]
    planner = clients["planner"]
    planner.post(f"/tracts/{geoid}/reviews", data={"decision": "escalated", "note": "sent to outreach",
                                                   "follow_up": "", "csrf_token": token(planner)})
    escalated = planner.get("/api/tracts", params={"status": "escalated", "tier": "all"}).json()["tracts"]
    assert geoid in [t["geoid"] for t in escalated] and {t["status"] for t in escalated} == {"escalated"}
    unreviewed = planner.get("/api/tracts", params={"status": "unreviewed"}).json()["tracts"]
    assert geoid not in [t["geoid"] for t in unreviewed]


def test_the_map_geojson_colours_every_tract_by_tier(clients: dict[str, TestClient]) -> None:
    response = clients["viewer"].get("/map/tracts.geojson")
    assert response.headers["content-type"] == "application/geo+json"
    features = response.json()["features"]
    assert len(features) == 397
    colours = {f["properties"]["tier"]: f["properties"]["colour"] for f in features}
    assert len(set(colours.values())) == 4
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in features)


def test_the_tract_page_shows_history_waterfall_drivers_indicators_alerts_and_the_form(
        clients: dict[str, TestClient], state: WebState) -> None:
    geoid = state.alerting
    html = clients["planner"].get(f"/tracts/{geoid}").text
    drivers = run_drivers(state.engine, state.run_ids[1])
    for sentence in drivers[drivers["geoid"] == geoid].sort_values("rank")["sentence"]:
        assert str(escape(sentence)) in html
    assert html.count("<circle ") == 2  # one point per run
    assert f"/tracts/{geoid}/waterfall.png" in html
    assert "Indicators against the county median" in html and "county median" in html.lower()
    assert "newly in the high tier" in html  # its past alert
    assert 'name="decision" value="false_alarm"' in html
    png = clients["viewer"].get(f"/tracts/{geoid}/waterfall.png")
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_tract_living_mostly_in_group_quarters_is_shown_as_not_ranked_with_its_reason(
        clients: dict[str, TestClient]) -> None:
    html = clients["viewer"].get("/tracts/53033005302").text  # the University District's dormitories
    assert ">not ranked</span>" in html and 'id="unranked"' in html and "Mostly group quarters" in html
    listed = clients["viewer"].get("/?tier=all").text
    assert 'title="mostly group quarters' in listed


def test_viewers_read_decisions_but_get_no_form(clients: dict[str, TestClient], state: WebState) -> None:
    html = clients["viewer"].get(f"/tracts/{state.high[0]}").text
    assert 'name="decision"' not in html and "planners record them" in html


def test_a_recorded_decision_is_in_the_list_the_tract_the_api_and_the_audit_log_with_before_and_after(
        clients: dict[str, TestClient], state: WebState) -> None:
    geoid, planner = state.high[1], clients["planner"]
    follow = (date.today() + timedelta(days=30)).isoformat()
    for decision, note in (("monitoring", "first look"), ("confirmed", "rents up, filings up")):
        response = planner.post(f"/tracts/{geoid}/reviews", data={
            "decision": decision, "note": note, "follow_up": follow, "csrf_token": token(planner)},
            follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == f"/tracts/{geoid}#reviews"
    page = planner.get(f"/tracts/{geoid}").text
    assert "Decision recorded: Confirmed." in page and "rents up, filings up" in page and follow in page
    row = next(t for t in planner.get("/api/tracts").json()["tracts"] if t["geoid"] == geoid)
    assert row["status"] == "confirmed" and row["review"]["user"] == "pat"
    assert [r["decision"] for r in planner.get(f"/api/tracts/{geoid}").json()["reviews"]] == ["confirmed",
                                                                                             "monitoring"]
    entry = accounts.audit_entries(state.engine, target=geoid, limit=1)[0]
    assert entry["actor"] == "pat" and entry["action"] == "review"
    assert entry["before"]["decision"] == "monitoring" and entry["after"]["decision"] == "confirmed"
    audit = planner.get("/audit").text
    assert f'<a href="/tracts/{geoid}">{geoid}</a>' in audit and "rents up, filings up" in audit


def test_decisions_feed_the_alert_rules_suppression(clients: dict[str, TestClient], state: WebState) -> None:
    geoid, planner = state.alerting, clients["planner"]
    current, previous = (run_scores(state.engine, r) for r in (state.run_ids[1], state.run_ids[0]))
    before = {a.geoid for a in decide(current, previous, latest_decisions(state.engine), state.settings.alerts)}
    assert geoid in before
    planner.post(f"/tracts/{geoid}/reviews", data={"decision": "false_alarm", "note": "student housing turnover",
                                                   "follow_up": "", "csrf_token": token(planner)})
    assert latest_decisions(state.engine).loc[geoid, "decision"] == "false_alarm"
    after = {a.geoid for a in decide(current, previous, latest_decisions(state.engine), state.settings.alerts)}
    assert after == before - {geoid}
    # a decision made after a run does not rewrite that run's alert in the tract's history
    fresh = client_for(app_for(state), "val")
    assert f"Run {state.run_ids[1]} (as of 2019-03-01): newly in the high tier" in fresh.get(f"/tracts/{geoid}").text


@pytest.mark.parametrize(("field", "form", "message"), [
    ("decision", {"decision": "", "note": "x", "follow_up": ""}, "choose one of"),
    ("decision", {"decision": "approved", "note": "x", "follow_up": ""}, "choose one of"),
    ("note", {"decision": "monitoring", "note": "n" * 2001, "follow_up": ""}, "at most 2000"),
    ("follow_up", {"decision": "monitoring", "note": "", "follow_up": "next week"}, "YYYY-MM-DD"),
    ("follow_up", {"decision": "monitoring", "note": "", "follow_up": "2001-01-01"}, "between today"),
])
def test_a_bad_review_field_is_named_on_the_page_and_nothing_is_stored(
        clients: dict[str, TestClient], state: WebState, field: str, form: dict[str, str], message: str) -> None:
    geoid, planner = state.high[2], clients["planner"]
    before = len(accounts.review_history(state.engine, geoid))
    response = planner.post(f"/tracts/{geoid}/reviews", data={**form, "csrf_token": token(planner)})
    assert response.status_code == 400
    assert f"{field}: " in response.text and message in response.text
    assert "Traceback" not in response.text
    assert len(accounts.review_history(state.engine, geoid)) == before


def test_the_model_page_shows_importance_backtest_dictionary_sources_and_limitations(
        clients: dict[str, TestClient]) -> None:
    html = clients["viewer"].get("/model").text
    for text in ("Logistic regression", "Persistence", "UDP typology", "95% interval", "best baseline",
                 "eviction_filing_rate_vs_county", "Eviction Lab at Princeton", "Known limitations",
                 "not the chance that any household", "/model/importance.png", "/model/beeswarm.png",
                 "days before the run"):
        assert text in html, text
    for picture in ("/model/importance.png", "/model/beeswarm.png", "/model/pr_curves.png"):
        assert clients["viewer"].get(picture).content[:4] == b"\x89PNG"


def test_the_api_gives_scores_tiers_status_and_a_tracts_drivers_and_history(clients: dict[str, TestClient],
                                                                            state: WebState) -> None:
    listing = clients["viewer"].get("/api/tracts").json()
    assert listing["run"]["id"] == state.run_ids[1] and listing["run"]["as_of"] == "2019-03-01"
    assert {"geoid", "probability", "percentile", "tier", "status", "review"} <= set(listing["tracts"][0])
    detail = clients["viewer"].get(f"/api/tracts/{state.high[0]}").json()
    assert len(detail["drivers"]) == 5 and all(d["sentence"] for d in detail["drivers"])
    assert [h["run_id"] for h in detail["history"]] == list(state.run_ids)
    missing = clients["viewer"].get("/api/tracts/53033999999")
    assert missing.status_code == 404 and "not in run" in missing.json()["detail"]


def test_the_api_is_documented_by_an_openapi_schema_behind_the_login(clients: dict[str, TestClient]) -> None:
    schema = clients["viewer"].get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.") and set(schema["paths"]) == {"/api/tracts", "/api/tracts/{geoid}"}
    tier = next(p for p in schema["paths"]["/api/tracts"]["get"]["parameters"] if p["name"] == "tier")
    assert "flagged" in tier["schema"]["enum"]
    assert "GET /api/tracts/{geoid}" in clients["viewer"].get("/api/docs").text
    assert clients["anonymous"].get("/docs").status_code == 404  # no unauthenticated Swagger UI either


def test_exports_hold_the_listed_tracts_with_their_decisions(clients: dict[str, TestClient], state: WebState) -> None:
    viewer = clients["viewer"]
    listed = [t["geoid"] for t in viewer.get("/api/tracts", params={"tier": "high"}).json()["tracts"]]
    response = viewer.get("/export/flagged.csv", params={"tier": "high"})
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["geoid"] for r in rows] == listed and {r["tier"] for r in rows} == {"high"}
    assert {"decision", "note", "follow_up", "decided_by", "decided_at"} <= set(rows[0])
    geo = json.loads(viewer.get("/export/flagged.geojson", params={"tier": "high"}).content)
    assert [f["properties"]["geoid"] for f in geo["features"]] == listed
    assert all(f["geometry"]["coordinates"] for f in geo["features"])


def test_a_tract_not_in_the_run_is_a_404_page(clients: dict[str, TestClient]) -> None:
    response = clients["viewer"].get("/tracts/53033999999")
    assert response.status_code == 404 and "is not in run" in response.text


def test_admins_add_users_change_roles_and_lock_people_out(app: FastAPI, clients: dict[str, TestClient],
                                                           state: WebState) -> None:
    admin = clients["admin"]
    response = admin.post("/admin/users", data={"name": "nina", "role": "planner", "password": "nina-password",
                                                "csrf_token": token(admin)}, follow_redirects=False)
    assert response.status_code == 303
    nina = login(client_for(app), "nina", "nina-password")
    assert nina.get("/audit").status_code == 200
    admin.post("/admin/users/nina", data={"role": "viewer", "active": "yes", "csrf_token": token(admin)})
    assert nina.get("/audit").status_code == 401  # a role change ends the sessions of the user
    nina = login(client_for(app), "nina", "nina-password")
    assert nina.get("/audit").status_code == 403  # back as a viewer
    admin.post("/admin/users/nina", data={"role": "viewer", "active": "no", "csrf_token": token(admin)})
    assert nina.get("/").status_code == 401
    changes = accounts.audit_entries(state.engine, target="nina")
    assert [e["action"] for e in changes] == ["user.access", "user.access", "user.add"]
    assert changes[0]["before"] == {"role": "viewer", "active": True} and changes[0]["after"]["active"] is False


def test_an_admin_cannot_lock_themselves_out_and_bad_fields_are_named(clients: dict[str, TestClient]) -> None:
    admin = clients["admin"]
    own = admin.post("/admin/users/ada", data={"role": "viewer", "active": "yes", "csrf_token": token(admin)})
    assert own.status_code == 400 and "cannot remove your own admin role" in own.text
    short = admin.post("/admin/users", data={"name": "tim", "role": "viewer", "password": "short",
                                             "csrf_token": token(admin)})
    assert short.status_code == 400 and "password: must be at least 8 characters" in short.text
    role = admin.post("/admin/users", data={"name": "tim", "role": "root", "password": "long-enough-1",
                                            "csrf_token": token(admin)})
    assert role.status_code == 400 and "role: must be one of viewer, planner, admin" in role.text
    taken = admin.post("/admin/users", data={"name": "pat", "role": "viewer", "password": "long-enough-1",
                                             "csrf_token": token(admin)})
    assert taken.status_code == 400 and "already exists" in taken.text
    ghost = admin.post("/admin/users/ghost", data={"role": "viewer", "active": "yes", "csrf_token": token(admin)})
    assert ghost.status_code == 404


def test_a_locked_account_cannot_log_in(app: FastAPI) -> None:
    client = client_for(app)
    response = client.post("/login", data={"name": "lou", "password": PASSWORDS["lou"], "next": "/",
                                           "csrf_token": csrf_of(client.get("/login").text)})
    assert response.status_code == 401 and "Unknown user name or wrong password" in response.text


def test_without_a_run_the_pages_say_to_run_the_job_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          state: WebState) -> None:
    from risk.web import create_app

    monkeypatch.setenv("RISK_WEB_SECRET", "k" * 40)
    empty = state.settings.model_copy(update={"paths": state.settings.paths.model_copy(
        update={"database": str(tmp_path / "empty.sqlite")})})
    app = create_app(empty)
    accounts.add_user(app.state.data.engine, "val", "viewer", "viewer-password-1")
    client = client_for(app, "val")
    response = client.get("/")
    assert response.status_code == 503 and "run `risk run` first" in response.text
