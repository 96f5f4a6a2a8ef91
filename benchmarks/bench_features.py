"""Load + validate + features wall time and peak memory for King County (target: under 5 s on 2 cores).

Each repetition runs in a fresh process so peak memory (max RSS) is its own.
Prints one line per repetition, then the medians.

    python benchmarks/bench_features.py [--repeat 5] [--config config.yaml] [--as-of 2015-12-31]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def once(config: Path, as_of: date) -> dict[str, float]:
    """One measured repetition in this process."""
    t0 = time.perf_counter()
    from risk.core.settings import load_settings
    from risk.features.build import build_features
    from risk.sources import load_sources

    t1 = time.perf_counter()
    settings = load_settings(config)
    sources = load_sources(settings)
    t2 = time.perf_counter()
    frame = build_features(sources, as_of, settings.features)
    t3 = time.perf_counter()
    return {"import_s": t1 - t0, "load_validate_s": t2 - t1, "features_s": t3 - t2, "total_s": t3 - t1,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "tracts": len(frame)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--as-of", default="2015-12-31")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    as_of = date.fromisoformat(args.as_of)
    if args.once:
        print(json.dumps(once(args.config, as_of)))
        return
    runs = []
    for i in range(args.repeat):
        out = subprocess.run([sys.executable, __file__, "--once", "--config", str(args.config), "--as-of", args.as_of],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout))
        r = runs[-1]
        print(f"run {i + 1}: load+validate {r['load_validate_s']:.2f} s, features {r['features_s']:.2f} s, "
              f"total {r['total_s']:.2f} s, peak RSS {r['peak_rss_mib']:.0f} MiB ({r['tracts']} tracts)")
    med = {k: statistics.median(r[k] for r in runs) for k in ("load_validate_s", "features_s", "total_s", "peak_rss_mib")}
    print(f"median of {len(runs)} ({args.config.name}, as of {as_of}): load+validate {med['load_validate_s']:.2f} s, "
          f"features {med['features_s']:.2f} s, total {med['total_s']:.2f} s (target < 5 s), "
          f"peak RSS {med['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
