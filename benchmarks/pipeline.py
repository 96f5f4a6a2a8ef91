"""Per-stage wall time and peak memory of the weekly run, against LightGBM's own floor.

Cases: the bundled King County sample and synthetic worlds written by `risk synth` (20 years by default).
Every repetition is a fresh process on a fresh state folder, so each run backtests, trains, scores, explains,
renders and delivers to the file outbox, as the first weekly run of a new installation does. Peak memory is
the process's resident set size, sampled every 20 ms (psutil) and kept per stage.

The floor is what LightGBM alone needs for the same work: one `lightgbm.train` on the production model's
training matrix (every closed origin's rows, with the model's parameters and number of trees) plus
`pred_contrib` (TreeSHAP) on the scoring matrix. The ratio is the whole run's wall time over the floor.

    python benchmarks/pipeline.py [--cases king,8500,85000] [--repeat 3] [--years 20] [--data DIR]

Synthetic worlds are written once into --data (default: ~/.cache/risk-bench) and reused. Needs the bench
extra: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RISK = Path(sys.executable).with_name("risk")
STAGES = ("validate", "features", "train", "score", "explain", "store", "alerts", "deliver")
LABELS = {"validate": "load+validate", "alerts": "alerts+render"}
_RECIPIENTS = """
alerts:
  recipients:
    - {name: "Housing team", email: "housing@example.org", areas: [all]}
    - {name: "Planning", email: "planning@example.org", areas: [all], immediate: true}
"""


class _Sampler:
    """Resident memory of this process, sampled in a thread; the peak of each stage."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.stage = "start"
        self.peaks: dict[str, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.done.wait(0.02):
            self.mark()

    def mark(self) -> None:
        """Record the current resident size against the current stage."""
        rss = self.process.memory_info().rss / 2**30
        self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), rss)

    def enter(self, stage: str) -> None:
        """A new stage begins: the last sample counts for the stage that ends."""
        self.mark()
        self.stage = stage

    def stop(self) -> None:
        """Stop sampling."""
        self.done.set()
        self.thread.join()
        self.mark()


def _floor(settings: object, sources: object, as_of: object, features: object) -> dict[str, float]:
    """LightGBM's own train + pred_contrib on the run's matrices, with the champion's parameters and trees."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from risk.backtest import build_panel
    from risk.dictionary import model_feature_names
    from risk.labels import outcome_for
    from risk.model import PARAMS
    from risk.registry import Registry

    record = Registry(settings.paths.models).champion(settings.model.outcome)  # type: ignore[attr-defined]
    booster = record.load().booster
    names = model_feature_names(settings.features.spatial_lags)  # type: ignore[attr-defined]
    outcome = outcome_for(settings.model.outcome, settings)  # type: ignore[attr-defined]
    panel = [d for d in build_panel(outcome, sources, settings) if d.origin.closes <= as_of]
    X = pd.concat([d.X[names] for d in panel]).to_numpy(dtype="float64")
    y = np.concatenate([d.labels["y"].to_numpy() for d in panel])
    params = {**PARAMS, **{k: v for k, v in booster.params.items() if k in PARAMS}}
    start = time.perf_counter()
    model = lgb.train(params, lgb.Dataset(X, y, free_raw_data=False), num_boost_round=booster.num_trees())
    trained = time.perf_counter()
    model.predict(features[names].to_numpy(dtype="float64"), pred_contrib=True)  # type: ignore[index]
    done = time.perf_counter()
    return {"floor_train": trained - start, "floor_contrib": done - trained, "training_rows": float(len(y)),
            "trees": float(booster.num_trees())}


def child(config: Path, as_of: str | None) -> None:
    """One measured run in this process; prints one JSON line."""
    from datetime import date

    import pandas as pd

    sampler = _Sampler()
    start = time.perf_counter()
    from risk import pipeline
    from risk.settings import load_settings
    from risk.sources import load_sources

    settings = load_settings(config)
    sampler.enter("imports")
    result = pipeline.run(settings, date.fromisoformat(as_of) if as_of else None, on_stage=sampler.enter)
    wall = time.perf_counter() - start
    sampler.stop()
    sources = load_sources(settings)
    features = pd.read_parquet(result.features_path)
    floor = _floor(settings, sources, result.as_of, features)
    print(json.dumps({"wall": wall, "tracts": result.tracts, "alerts": result.alerts,
                      "emails": result.emails_sent, "seconds": result.stage_seconds,
                      "peak_gb": sampler.peaks, **floor}))


def _world(case: str, years: int, data: Path) -> tuple[Path, str | None]:
    """The config to copy for a case and the as-of date of its run."""
    if case == "king":
        return ROOT / "config.yaml", None
    tracts = int(case)
    folder = data / f"synth-{tracts}x{years}"
    if not (folder / "config.yaml").exists():
        print(f"writing a synthetic world of {tracts:,} tracts x {years} years to {folder} ...", flush=True)
        subprocess.run([str(RISK), "synth", "--tracts", str(tracts), "--years", str(years), "--out", str(folder)],
                       check=True)
    return folder / "config.yaml", f"{2000 + years}-03-01"


def _fresh_config(world: Path, state: Path) -> Path:
    """The world's config, written beside its data with every output in a fresh state folder."""
    text = world.read_text()
    if world == ROOT / "config.yaml":
        text = text.replace(": data/", f": {ROOT}/data/")
        for key in ("database: state/", "models: models", "reports: reports", "features: state/",
                    "outbox_dir: outbox"):
            text = text.replace(key, key.replace(": ", f": {state}/"))
        path = state / "config.yaml"
    else:
        text += _RECIPIENTS + f"paths:\n  database: {state}/risk.sqlite\n  models: {state}/models\n" \
                              f"  reports: {state}/reports\n  features: {state}/features\n" \
                              f"delivery:\n  outbox_dir: {state}/outbox\n"
        path = world.with_name(f"bench-{state.name}.yaml")
    path.write_text(text)
    return path


def _measure(case: str, years: int, data: Path) -> dict:
    world, as_of = _world(case, years, data)
    state = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    config = _fresh_config(world, state)
    try:
        cmd = [sys.executable, __file__, "--child", str(config)] + (["--as-of", as_of] if as_of else [])
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{case}: the run failed\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(state, ignore_errors=True)
        if config.parent != state:
            config.unlink(missing_ok=True)


def _report(case: str, runs: list[dict]) -> None:
    med = statistics.median
    first = runs[0]
    print(f"\n{case}: {first['tracts']:,} tracts, {int(first['training_rows']):,} training rows, "
          f"{int(first['trees'])} trees, {first['alerts']} alerts (median of {len(runs)} runs)")
    print(f"  {'stage':<16}{'wall s':>9}{'peak GB':>9}   runs")
    for stage in STAGES:
        secs = [r["seconds"].get(stage, 0.0) for r in runs]
        peak = med([r["peak_gb"].get(stage, 0.0) for r in runs])
        print(f"  {LABELS.get(stage, stage):<16}{med(secs):9.2f}{peak:9.2f}   " + " ".join(f"{s:.2f}" for s in secs))
    walls = [r["wall"] for r in runs]
    floors = [r["floor_train"] + r["floor_contrib"] for r in runs]
    ratios = [w / f for w, f in zip(walls, floors)]
    score_explain = [r["seconds"].get("score", 0) + r["seconds"].get("explain", 0) for r in runs]
    peak = [max(r["peak_gb"].values()) for r in runs]
    print(f"  {'whole run':<16}{med(walls):9.2f}{med(peak):9.2f}   " + " ".join(f"{w:.2f}" for w in walls))
    print(f"  {'score+explain':<16}{med(score_explain):9.2f}")
    print(f"  floor: LightGBM train {med([r['floor_train'] for r in runs]):.2f} s + pred_contrib "
          f"{med([r['floor_contrib'] for r in runs]):.2f} s = {med(floors):.2f} s")
    print(f"  whole run / floor: {med(ratios):.1f}x (" + ", ".join(f"{x:.1f}" for x in ratios) + ")", flush=True)


def main() -> None:
    """Run the cases and print one table per case."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="king,8500,85000", help="king and/or tract counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--data", type=Path, default=Path(os.path.expanduser("~/.cache/risk-bench")))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--as-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.as_of)
        return
    print(f"{os.cpu_count()} CPUs; {args.repeat} run(s) per case", flush=True)
    for case in args.cases.split(","):
        runs = []
        for i in range(args.repeat):
            runs.append(_measure(case.strip(), args.years, args.data))
            print(f"{case} run {i + 1}: {runs[-1]['wall']:.1f} s", flush=True)
        _report(case.strip(), runs)


if __name__ == "__main__":
    main()
