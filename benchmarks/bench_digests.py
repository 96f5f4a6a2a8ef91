"""Rendering the weekly digests for 1,000 recipients over King County's 397 tracts (target: under 10 s on 2 cores).

Runs the weekly job once in a temporary folder (which trains a model), then
composes every recipient's messages --repeat times from scratch, pictures
included (maps are drawn once per distinct area, waterfalls once per tract,
the templates rendered once per area list and kind).

    python benchmarks/bench_digests.py [--recipients 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from risk.alerts.digests import compose
    from risk.alerts.messages import Pictures
    from risk.core.settings import Recipient, load_settings
    from risk.service.pipeline import latest_outputs, run

    with tempfile.TemporaryDirectory() as tmp:
        text = (ROOT / "config.yaml").read_text().replace("path: data/", f"path: {ROOT}/data/")
        text = text.replace("coverage_tracts: data/", f"coverage_tracts: {ROOT}/data/")
        text = text.replace("areas_file: data/", f"areas_file: {ROOT}/data/")
        config = Path(tmp) / "config.yaml"
        config.write_text(text.replace("  bootstrap: 500", "  bootstrap: 50"))
        settings = load_settings(config)
        run(settings)
        geoids = list(latest_outputs(settings)[2].tracts.index)
        # a realistic mix: whole region, the city, the rest of the county, and 20 neighborhood lists of tracts
        neighborhoods = [tuple(geoids[k * 19:k * 19 + 12]) for k in range(20)]
        people = []
        for i in range(args.recipients):
            areas = [("all",), ("Seattle",), ("King County outside Seattle",), neighborhoods[i % 20]][i % 4]
            people.append(Recipient(name=f"Recipient {i}", email=f"r{i}@example.org", areas=areas, empty_digest=True))
        settings = settings.model_copy(update={"alerts": settings.alerts.model_copy(update={"recipients": tuple(people)})})
        _, outputs, sources = latest_outputs(settings)
        times = []
        for r in range(args.repeat):
            start = time.perf_counter()
            alerts, messages = compose(settings, sources.tracts, outputs, Pictures())
            times.append(time.perf_counter() - start)
            print(f"run {r + 1}: {len(messages)} messages for {args.recipients} recipients, "
                  f"{len(alerts)} alerts, {times[-1]:.2f} s")
        print(f"median of {args.repeat}: {statistics.median(times):.2f} s for {args.recipients} recipients "
              f"over {len(sources.tracts)} tracts (target < 10 s)")


if __name__ == "__main__":
    main()
