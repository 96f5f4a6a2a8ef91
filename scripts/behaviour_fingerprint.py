"""Fingerprint of what the product computes on a config: features and backtest output, to show a refactor changed nothing.

For every origin of every backtestable outcome (and the default as-of date) it hashes the exact bytes of the
point-in-time feature table (values, dtypes, column order, index), and it runs `risk backtest --outcome NAME --json`
in a fresh copy of the config's folder (an empty work cache, so nothing is reused) and keeps the JSON.

    python scripts/behaviour_fingerprint.py > after.json
    python scripts/behaviour_fingerprint.py --check scripts/fingerprint-issue19.json   # exit 1 on any difference
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from risk.core.settings import load_settings
from risk.features.build import build_features
from risk.outcomes.registry import OUTCOMES, outcome_for
from risk.service.freshness import default_as_of, required_sources
from risk.sources import load_sources

ROOT = Path(__file__).resolve().parents[1]
BACKTESTED = tuple(spec.name for spec in OUTCOMES if spec.backtest)


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's exact content: column names and dtypes, index, and every value's bits."""
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    h.update(json.dumps([str(i) for i in frame.index]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()


def feature_digests(config: Path) -> dict[str, str]:
    """One digest per as-of date: every outcome's origins and the weekly run's default date."""
    settings = load_settings(config)
    sources = load_sources(settings)
    dates = {default_as_of(sources, required_sources(settings))}
    for name in BACKTESTED:
        dates.update(o.as_of for o in outcome_for(name, settings).origins(sources))
    return {str(d): frame_digest(build_features(sources, d, settings.features)) for d in sorted(dates)}


def backtests(config: Path) -> dict[str, object]:
    """`risk backtest --json` per outcome, run from a copy of the config with its own empty state folders."""
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(config, folder / "config.yaml")
        for entry in ("data",):
            if (config.parent / entry).exists():
                os.symlink(config.parent / entry, folder / entry)
        for name in BACKTESTED:
            done = subprocess.run([sys.executable, "-m", "risk", "--config", str(folder / "config.yaml"),
                                   "backtest", "--outcome", name, "--json"],
                                  capture_output=True, text=True, check=True)
            results[name] = json.loads(done.stdout)
    return results


def main() -> None:
    """Print the fingerprint, or compare it with a saved one."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--check", type=Path, help="compare with this saved fingerprint; exit 1 on a difference")
    args = parser.parse_args()
    config = args.config.resolve()
    now = {"features": feature_digests(config), "backtest": backtests(config)}
    if args.check is None:
        print(json.dumps(now, indent=1, sort_keys=True))
        return
    saved = json.loads(args.check.read_text(encoding="utf-8"))
    differences = [f"{part} {key}" for part in ("features", "backtest")
                   for key in sorted(set(saved[part]) | set(now[part])) if saved[part].get(key) != now[part].get(key)]
    for d in differences:
        print(f"differs: {d}")
    print(f"{len(now['features'])} feature tables, {len(now['backtest'])} backtests: "
          f"{'identical' if not differences else f'{len(differences)} differ'}")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
