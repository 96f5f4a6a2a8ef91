"""The review pages end to end in Debian's chromium, driven by Playwright (no browser download).

A planner logs in, sees the map with tracts coloured by tier, opens a flagged
tract from the map, reads its drivers, records a decision and finds it in the
list and the audit log. Screenshots go to test-artifacts/web-*.png to be
looked at.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import uvicorn
from web_support import PASSWORDS, WebState, app_for, build_state

from risk.alerts.messages import TIER_COLOURS
from risk.core.store import run_scores

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                                "/usr/bin/chromium (CI installs it with apt: apt-get install chromium)")


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> WebState:
    return build_state(tmp_path_factory)


@pytest.fixture(scope="module")
def base_url(state: WebState) -> Iterator[str]:
    """The application served by uvicorn on a free loopback port, in a thread of this process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app_for(state), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_a_planner_opens_a_flagged_tract_from_the_map_and_records_a_decision_seen_in_list_and_audit_log(
        base_url: str, state: WebState) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("web-*.png"):
        old.unlink()
    geoid = state.high[-1]  # a high-tier tract no other test decides on
    note = "Spoke with the tenants' union <b>today</b>; rents rising on 3 blocks."
    follow_up = (date.today() + timedelta(days=14)).isoformat()
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        try:
            # log in: every page asks for it first
            page.goto(base_url + "/")
            assert page.locator("form[action='/login']").is_visible()
            page.screenshot(path=ARTIFACTS / "web-0-login.png")
            page.fill("input[name=name]", "pat")
            page.fill("input[name=password]", PASSWORDS["pat"])
            page.click("form[action='/login'] button[type=submit]")
            page.wait_for_url(base_url + "/")

            # the map, with every tract coloured by its tier
            page.wait_for_selector("#map[data-loaded]", timeout=30_000)
            assert page.get_attribute("#map", "data-loaded") == "397"
            fills = page.eval_on_selector_all("path.leaflet-interactive", "ps => ps.map(p => p.getAttribute('fill'))")
            assert len(fills) == 397
            assert {f.lower() for f in fills} == {c.lower() for c in TIER_COLOURS.values()}
            flagged = run_scores(state.engine, state.run_ids[1])["tier"].ne("low").sum()
            assert page.locator("#tracts tbody tr").count() == flagged  # high, elevated and watch
            page.screenshot(path=ARTIFACTS / "web-1-flagged-map.png")

            # click the tract on the map: it opens the tract page
            page.locator(f"path.tract-{geoid}").dispatch_event("click")
            page.wait_for_url(f"{base_url}/tracts/{geoid}")
            drivers = page.locator("#drivers li")
            assert drivers.count() == 5
            assert all(("raises the risk" in t or "lowers the risk" in t) for t in drivers.all_inner_texts())
            page.wait_for_function("() => document.querySelector('img.waterfall').naturalWidth > 0",
                                   timeout=60_000)
            page.screenshot(path=ARTIFACTS / "web-2-tract.png", full_page=True)

            # record a decision
            page.check("input[name=decision][value=monitoring]")
            page.fill("textarea[name=note]", note)
            page.fill("input[name=follow_up]", follow_up)
            page.click("#reviews button[type=submit]")
            page.wait_for_selector(".flash")
            assert page.inner_text(".flash") == "Decision recorded: Monitoring."
            assert page.locator("#reviews .note").first.inner_text() == note  # markup shown as text
            page.locator("#reviews").screenshot(path=ARTIFACTS / "web-3-decision.png")

            # it is in the list ...
            page.click("nav >> text=Flagged tracts")
            row = page.locator(f"#tracts tr[data-geoid='{geoid}']")
            assert "Monitoring" in row.inner_text() and follow_up in row.inner_text()
            row.scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "web-4-list-with-decision.png")

            # ... and in the audit log, with who and what
            page.click("nav >> text=Audit log")
            first = page.locator("#audit tbody tr").first
            text = first.inner_text()
            assert geoid in text and "pat" in text and "Monitoring" in text and note in text
            page.screenshot(path=ARTIFACTS / "web-5-audit.png")

            # the model page's pictures load too
            page.click("nav >> text=Model")
            page.eval_on_selector_all("img.plot", "imgs => imgs.forEach(i => { i.loading = 'eager'; })")  # lazy
            page.wait_for_function("() => [...document.querySelectorAll('img.plot')].every(i => i.naturalWidth > 0)",
                                   timeout=90_000)
            page.screenshot(path=ARTIFACTS / "web-6-model.png", full_page=True)
        finally:
            browser.close()
    # the only error the console may show is the 401 of the first, logged-out page (a CSP violation, a script
    # error or a missing file would show here)
    assert [p for p in problems if "401" not in p] == []
    assert (ARTIFACTS / "web-1-flagged-map.png").stat().st_size > 50_000
