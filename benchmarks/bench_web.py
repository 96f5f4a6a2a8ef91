"""Response times of the review pages on King County data (target: every page under 200 ms at the median).

Runs the weekly job twice in a temporary folder (the first run trains a model),
records a few dozen review decisions, serves the pages with uvicorn on a
loopback port and requests each page --repeat times over one kept-alive
connection as a logged-in planner. Prints, per page, the first (cold) time and
the median and 90th percentile of the rest. Pictures are drawn on first
request and then cached, so their cold time is shown separately.

    python benchmarks/bench_web.py [--config examples/king-county-shared.yaml] [--repeat 30]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import secrets
import socket
import statistics
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]


def _settings(source: Path, folder: Path):  # noqa: ANN202 - risk.core.settings.Settings
    """The configuration with its state (database, models, reports, features, outbox) in ``folder``."""
    from risk.core.settings import load_settings

    settings = load_settings(source)
    paths = settings.paths.model_copy(update={"database": str(folder / "risk.sqlite"), "models": folder / "models",
                                              "reports": folder / "reports", "features": folder / "features"})
    model = settings.model.model_copy(update={"bootstrap": 50, "null_simulations": 5})
    delivery = settings.delivery.model_copy(update={"transport": "file", "outbox_dir": folder / "outbox"})
    return settings.model_copy(update={"paths": paths, "model": model, "delivery": delivery})


class Browser:
    """One kept-alive connection with the session cookie, like a browser tab."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookie = ""

    def request(self, method: str, path: str, body: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        headers = {"Cookie": self.cookie, "Accept-Encoding": "gzip"}
        data = None
        if body is not None:
            data = urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        start = time.perf_counter()
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        content = response.read()
        elapsed = time.perf_counter() - start
        cookie = response.getheader("set-cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return response.status, content, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    import uvicorn

    from risk.core.store import run_scores
    from risk.service.pipeline import run
    from risk.web import accounts, create_app

    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(args.config.resolve(), Path(tmp))
        print("running the weekly job twice (the first run trains a model) ...", flush=True)
        first = run(settings, as_of=date(2016, 9, 1))  # a year of eviction counts earlier: scores move
        second = run(settings)
        os.environ.setdefault(settings.web.secret_key_env, secrets.token_urlsafe(48))
        app = create_app(settings)
        engine = app.state.data.engine
        accounts.add_user(engine, "bench", "planner", "bench-password")
        scores = run_scores(engine, second.run_id).sort_values("probability", ascending=False)
        flagged = list(scores.index[scores["tier"] != "low"])
        for i, geoid in enumerate(flagged[:40]):  # a realistic review backlog
            accounts.record_decision(engine, geoid, list(accounts.DECISIONS)[i % 4], f"note {i}", None,
                                     float(scores.loc[geoid, "percentile"]), "bench")

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)

        tab = Browser(port)
        _, page, _ = tab.request("GET", "/login")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()  # type: ignore[union-attr]
        status, _, _ = tab.request("POST", "/login", {"name": "bench", "password": "bench-password", "next": "/",
                                                      "csrf_token": token})
        assert status == 303, status

        tracts = flagged[:10]
        pages = {
            "GET /login (logged in: redirect)": lambda i: "/login",
            "flagged list (default)": lambda i: "/",
            "flagged list (all tiers, by change)": lambda i: "/?tier=all&sort=change&order=asc",
            "flagged list (Seattle, confirmed)": lambda i: "/?area=Seattle&status=confirmed",
            "map GeoJSON": lambda i: "/map/tracts.geojson",
            "tract page": lambda i: f"/tracts/{tracts[i % len(tracts)]}",
            "tract waterfall PNG": lambda i: f"/tracts/{tracts[i % len(tracts)]}/waterfall.png",
            "model page": lambda i: "/model",
            "model importance PNG": lambda i: "/model/importance.png",
            "model beeswarm PNG": lambda i: "/model/beeswarm.png",
            "audit log": lambda i: "/audit",
            "API /api/tracts": lambda i: "/api/tracts",
            "API /api/tracts/{geoid}": lambda i: f"/api/tracts/{tracts[i % len(tracts)]}",
            "export CSV": lambda i: "/export/flagged.csv",
            "export GeoJSON": lambda i: "/export/flagged.geojson",
        }
        print(f"\n{len(scores)} tracts, {len(flagged)} flagged, runs {first.run_id} and {second.run_id}; "
              f"{args.repeat} requests per page after the first\n")
        print(f"{'page':40} {'first':>9} {'median':>9} {'p90':>9}")
        worst = 0.0
        for name, path_of in pages.items():
            # the first request of a picture draws it; a tract's cold time is the first of several tracts
            cold = [tab.request("GET", path_of(i))[2] for i in range(len(tracts) if "{" in name or "tract" in name
                                                                      else 1)]
            times = []
            for i in range(args.repeat):
                status, _, elapsed = tab.request("GET", path_of(i))
                assert status in (200, 303), (name, status)
                times.append(elapsed)
            median = statistics.median(times)
            p90 = statistics.quantiles(times, n=10)[-1] if len(times) >= 10 else max(times)
            worst = max(worst, median)
            print(f"{name:40} {1000 * cold[0]:7.0f}ms {1000 * median:7.1f}ms {1000 * p90:7.1f}ms", flush=True)
        print(f"\nslowest median {1000 * worst:.1f} ms (target < 200 ms)")
        server.should_exit = True
        thread.join(timeout=10)


if __name__ == "__main__":
    main()
