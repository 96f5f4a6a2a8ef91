"""The synthetic worlds the benchmarks share: written once by `risk synth`, then read from the data folder."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

RISK = Path(sys.executable).with_name("risk")
DATA = Path.home() / ".cache" / "risk-bench"
"""Default folder of the worlds: outside the checkout, kept between runs (85,000 tracts is 1.5 GB)."""


def synthetic_world(data: Path, tracts: int, years: int, regions: int = 1) -> Path:
    """The folder of the world of ``tracts`` tracts over ``years`` years (its counties split into ``regions``
    regions) under ``data``, written if missing."""
    folder = data / (f"synth-{tracts}x{years}" + (f"-{regions}regions" if regions > 1 else ""))
    if not (folder / "config.yaml").exists():
        print(f"writing a synthetic world of {tracts:,} tracts x {years} years to {folder} ...", flush=True)
        subprocess.run([str(RISK), "synth", "--tracts", str(tracts), "--years", str(years), "--out", str(folder),
                        "--regions", str(regions)], check=True)
    return folder


def world_arguments(description: str | None) -> argparse.ArgumentParser:
    """A parser with the options every single-world benchmark takes: --tracts, --repeat and --data."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracts", type=int, default=8500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DATA)
    return parser
