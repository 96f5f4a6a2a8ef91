"""Password guessing is counted in the database, per user name and per client address, so parallel attempts
and several server processes cannot slip past the limits; X-Forwarded-For is believed only from trusted
proxies."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from web_support import (
    PASSWORDS,
    WebState,
    app_for,
    build_state,
    client_for,
    csrf_of,
    fresh_login_counts,  # noqa: F401 (an autouse fixture)
    login_form,
    serving,
    try_login,
    web_config,
)

from risk.core.errors import ConfigError
from risk.core.settings import load_settings
from risk.web import accounts

PARALLEL = 12


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> WebState:
    return build_state(tmp_path_factory)


def test_parallel_wrong_passwords_are_slowed_then_refused_after_the_limit(state: WebState) -> None:
    # 3 answered at once, 3 slowed down (0.2, 0.4, 0.8 s), the rest would wait over 0.8 s: refused
    app = app_for(state, login_max_failures=3, login_delay_s=0.2, login_max_delay_s=0.8)
    with serving(app) as port:
        forms = [login_form(port) for _ in range(PARALLEL)]
        start = threading.Barrier(PARALLEL)

        def attempt(form: tuple[str, str]) -> tuple[int, float, str]:
            start.wait(timeout=30)
            began = time.perf_counter()
            answer = try_login(port, "pat", "wrong-password", *form)
            return answer.status, time.perf_counter() - began, answer.text

        with ThreadPoolExecutor(PARALLEL) as pool:
            results = list(pool.map(attempt, forms))
        right = try_login(port, "pat", PASSWORDS["pat"], *login_form(port))
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [401] * 6 + [429] * 6
    checked = sorted(seconds for status, seconds, _ in results if status == 401)
    assert checked[-1] >= 0.8 and checked[-2] >= 0.4 and checked[-3] >= 0.2
    assert all("Too many failed logins" in text for status, _, text in results if status == 429)
    assert right.status == 429  # refused without looking at the password: refusals are no oracle


def test_the_refusal_ends_login_window_s_after_the_last_counted_attempt(state: WebState) -> None:
    app = app_for(state, login_max_failures=2, login_delay_s=0.05, login_max_delay_s=0.1, login_window_s=600)
    now = [1_000_000.0]
    app.state.throttle.clock = lambda: now[0]
    client = client_for(app)

    def attempt(password: str) -> int:
        return client.post("/login", data={"name": "val", "password": password, "next": "/",
                                           "csrf_token": csrf_of(client.get("/login").text)},
                           follow_redirects=False).status_code

    # the edge: 2 at once, 2 slowed (0.05 and 0.1 s, the most allowed), the 5th refused
    assert [attempt("wrong-password") for _ in range(4)] == [401] * 4
    assert attempt(PASSWORDS["val"]) == 429
    now[0] += 599  # refused attempts do not prolong the refusal, so this counts from the 5th attempt
    assert attempt(PASSWORDS["val"]) == 429
    now[0] += 2
    assert attempt(PASSWORDS["val"]) == 303


def _attempts(port: int, forwarded_for: list[str]) -> list[int]:
    """One wrong login per X-Forwarded-For value, each for another user name (only the address adds up)."""
    return [try_login(port, f"nobody-{i}", "wrong-password", *login_form(port), forwarded_for=xff).status
            for i, xff in enumerate(forwarded_for)]


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(state: WebState) -> None:
    # slowing down would already pass the most allowed: past the limit every attempt is refused
    app = app_for(state, login_max_failures_per_address=2, login_delay_s=1.0, login_max_delay_s=0.5)
    with serving(app) as port:
        statuses = _attempts(port, ["203.0.113.1", "203.0.113.2", "203.0.113.3"])
    assert statuses == [401, 401, 429]  # all three counted against the real peer, 127.0.0.1


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(state: WebState) -> None:
    app = app_for(state, login_max_failures_per_address=2, login_delay_s=1.0, login_max_delay_s=0.5,
                  trusted_proxies=("10.9.0.0/16", "127.0.0.1"))
    with serving(app) as port:
        assert _attempts(port, ["203.0.113.1", "203.0.113.2", "203.0.113.3"]) == [401, 401, 401]
        # what a client writes left of the address the proxy appended does not make it someone else
        spoofed = ["198.51.100.1, 203.0.113.9", "198.51.100.2, 203.0.113.9, 10.9.0.1", "203.0.113.9"]
        assert _attempts(port, spoofed) == [401, 401, 429]


def test_trusted_proxies_must_be_addresses_or_networks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"trusted_proxies.*'proxy\.local' is not an IP address"):
        load_settings(web_config(tmp_path, trusted_proxies=["10.0.0.0/8", "proxy.local"]))
    settings = load_settings(web_config(tmp_path, trusted_proxies=["10.0.0.0/8", "::1", "192.0.2.7"]))
    assert settings.web.trusted_proxies == ("10.0.0.0/8", "::1", "192.0.2.7")


def test_a_right_password_takes_back_its_count_so_colleagues_behind_one_address_are_not_refused(
        state: WebState) -> None:
    app = app_for(state, login_max_failures_per_address=2, login_delay_s=1.0, login_max_delay_s=0.5)
    client = client_for(app)
    for name in ("val", "pat", "ada", "val"):
        response = client.post("/login", data={"name": name, "password": PASSWORDS[name], "next": "/",
                                               "csrf_token": csrf_of(client.get("/login").text)},
                               follow_redirects=False)
        assert response.status_code == 303
    assert accounts.count_login_attempt(state.engine, "addr:testclient", time.time(), 900, 10) == 1
