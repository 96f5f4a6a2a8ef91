"""Wall time per stage of `risk run` on the bundled data, median of N repetitions.

Two cases, each repetition a fresh `risk run --json` process:
- first run: an empty state folder, as after a fresh clone (the run backtests and trains the first model);
- weekly run: the same folder again, with the champion in place and the inputs unchanged (no retraining).
The state goes to a temporary folder; the bundled config is copied there with absolute data paths.

    python benchmarks/bench_run.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RISK = Path(sys.executable).with_name("risk")


def _config(folder: Path) -> Path:
    text = (ROOT / "config.yaml").read_text().replace(": data/", f": {ROOT}/data/")
    path = folder / "config.yaml"
    path.write_text(text)
    return path


def _run(config: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run([str(RISK), "--config", str(config), "run", "--json"], capture_output=True, text=True,
                          check=True)
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    return {"wall_s": time.perf_counter() - start, **summary["stage_seconds"]}


def _table(name: str, rows: list[dict]) -> None:
    keys = list(rows[0])
    print(f"\n{name} (median of {len(rows)}; every repetition in seconds)")
    for key in keys:
        values = [r[key] for r in rows]
        print(f"  {key:<9} {statistics.median(values):7.2f}   " + " ".join(f"{v:6.2f}" for v in values))


def main() -> None:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    first, weekly = [], []
    for i in range(args.repeat):
        folder = Path(tempfile.mkdtemp(prefix="bench-run-"))
        try:
            config = _config(folder)
            first.append(_run(config))
            weekly.append(_run(config))
            print(f"repetition {i + 1}: first run {first[-1]['wall_s']:.1f} s, weekly run {weekly[-1]['wall_s']:.1f} s",
                  flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    _table("first run on a fresh state (trains the first model)", first)
    _table("weekly run with a champion in place", weekly)


if __name__ == "__main__":
    main()
