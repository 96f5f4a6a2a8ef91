"""Per-stage wall time and peak memory of the weekly run, against LightGBM's own floor.

Cases: the bundled King County sample and synthetic worlds written by `risk synth` (20 years by default).
Every repetition starts on a fresh state folder with weekly runs a week apart, each in a fresh process and
each retraining (the retrain policy set to every week):

- the first run of a new installation, which backtests, trains, scores, explains, renders and delivers to the
  file outbox with nothing to reuse; in a synthetic world it runs without the eviction file's newest year;
- synthetic worlds only: the week that newest year arrives. It closes a new outcome window, so the backtest
  gains a test origin and the production model is refitted on one more origin; everything else comes from the
  work cache (`paths.cache`). (The King County sample's newest year cannot be held back: without it the
  eviction counts are stale at the run date and the run stops, as it should.)
- a retraining week on the same files: no closed origin's inputs changed, which is what most retraining weeks
  look like (new rent months and permits arrive after every closed outcome window), so the backtest and the
  production fit come from the work cache.

Peak memory is the process's resident set size, sampled every 20 ms (psutil) and kept per stage.

The floor is what LightGBM alone needs for the same work: one `lightgbm.train` on the production model's
training matrix (every closed origin's rows, with the model's parameters and number of trees) plus
`pred_contrib` (TreeSHAP) on the scoring matrix. The ratio is the whole run's wall time over the floor.

    python benchmarks/pipeline.py [--cases king,8500,85000] [--repeat 3] [--years 20] [--data DIR] [--first-only]

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

from _worlds import DATA, synthetic_world

ROOT = Path(__file__).resolve().parents[1]
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
    """LightGBM's own train + pred_contrib on the run's matrices, with the run's model's parameters and trees.

    The run's model is the newest registered for the outcome: the one this run trained (or found unchanged),
    which a challenger that was not promoted is too, while the champion would be last week's.
    """
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from risk.features.dictionary import model_feature_names
    from risk.model.backtest import build_panel
    from risk.model.cache import work_cache
    from risk.model.gbm import PARAMS
    from risk.model.registry import Registry
    from risk.outcomes.registry import outcome_for

    outcome_name = settings.model.outcome  # type: ignore[attr-defined]
    record = [r for r in Registry(settings.paths.models).list() if r.outcome == outcome_name][-1]
    booster = record.load().booster
    names = model_feature_names(settings.features.spatial_lags)  # type: ignore[attr-defined]
    outcome = outcome_for(outcome_name, settings)  # type: ignore[attr-defined]
    panel = [d for d in build_panel(outcome, sources, settings, cache=work_cache(settings, sources))  # type: ignore[arg-type]
             if d.origin.closes <= as_of]
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


def child(config: Path, as_of: str | None, floor: bool) -> None:
    """One measured run in this process, retraining whatever the data; prints one JSON line."""
    from datetime import date

    import pandas as pd

    sampler = _Sampler()
    start = time.perf_counter()
    from risk.core.settings import RetrainSettings, load_settings
    from risk.service import pipeline
    from risk.sources import load_sources

    settings = load_settings(config)
    every_week = RetrainSettings(policy="every_n_weeks", every_weeks=1)
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={"retrain": every_week})})
    sampler.enter("imports")
    result = pipeline.run(settings, date.fromisoformat(as_of) if as_of else None, on_stage=sampler.enter)
    wall = time.perf_counter() - start
    sampler.stop()
    measured = {}
    if floor:
        sources = load_sources(settings)
        features = pd.read_parquet(result.features_path)
        measured = _floor(settings, sources, result.as_of, features)
    print(json.dumps({"wall": wall, "tracts": result.tracts, "alerts": result.alerts, "retrained": result.retrained,
                      "emails": result.emails_sent, "seconds": result.stage_seconds, "as_of": str(result.as_of),
                      "peak_gb": sampler.peaks, **measured}))


def _world(case: str, years: int, data: Path) -> tuple[Path, str | None]:
    """The config to copy for a case and the as-of date of its run."""
    if case == "king":
        return ROOT / "config.yaml", None
    tracts, _, regions = case.partition("r")  # "85000r6": 85,000 tracts in six regions
    return synthetic_world(data, int(tracts), years, int(regions or 1)) / "config.yaml", f"{2000 + years}-03-01"


def _fresh_config(world: Path, state: Path) -> Path:
    """The world's config, written beside its data with every output in a fresh state folder."""
    text = world.read_text()
    if world == ROOT / "config.yaml":
        text = text.replace(": data/", f": {ROOT}/data/")
        for key in ("database: state/", "models: models", "reports: reports", "features: state/",
                    "cache: state/", "outbox_dir: outbox"):
            text = text.replace(key, key.replace(": ", f": {state}/"))
        path = state / "config.yaml"
    else:
        text += _RECIPIENTS + f"paths:\n  database: {state}/risk.sqlite\n  models: {state}/models\n" \
                              f"  reports: {state}/reports\n  features: {state}/features\n" \
                              f"  cache: {state}/cache\n" \
                              f"delivery:\n  outbox_dir: {state}/outbox\n"
        path = world.with_name(f"bench-{state.name}.yaml")
    path.write_text(text)
    return path


def _child(case: str, config: Path, as_of: str | None, floor: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(config)] + (["--as-of", as_of] if as_of else [])
    done = subprocess.run(cmd + ([] if floor else ["--no-floor"]), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{case}: the run failed\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _withheld(config: Path, state: Path) -> Path:
    """A copy of ``config`` whose eviction file (written into ``state``) lacks its newest year."""
    import csv

    import yaml

    data = yaml.safe_load(config.read_text())
    # several regions share one eviction file: withhold its newest year for all of them
    sections = [r["sources"] for r in data["regions"]] if "regions" in data else [data["sources"]]
    source = (config.parent / sections[0]["evictions"]["path"]).resolve()
    with source.open(newline="") as f:
        lines = f.readlines()
    year = next(csv.reader(lines[:1])).index("year")
    years = [int(row[year]) for row in csv.reader(lines[1:])]
    newest = max(years)
    copy = state / f"evictions-to-{newest - 1}.csv"
    copy.write_text(lines[0] + "".join(line for line, y in zip(lines[1:], years, strict=True) if y != newest))
    for section in sections:
        if "evictions" in section:
            section["evictions"]["path"] = str(copy)
    out = config.with_name(f"{config.stem}-withheld.yaml")  # beside it: the other paths are relative to it
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def _measure(case: str, years: int, data: Path, first_only: bool) -> dict[str, dict]:
    """The first run and the weeks after it (module docstring), on one fresh state folder."""
    from datetime import date, timedelta

    world, as_of = _world(case, years, data)
    state = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    config = _fresh_config(world, state)
    refit = as_of is not None and not first_only
    if as_of is None and not first_only:  # the newest date the data supports is the last week's; start before it
        from risk.core.settings import load_settings
        from risk.service.freshness import required_sources
        from risk.service.freshness import default_as_of
        from risk.sources import load_sources

        settings = load_settings(config)
        newest = default_as_of(load_sources(settings), required_sources(settings))
        as_of = (newest - timedelta(days=7)).isoformat()

    def week(n: int, first: dict) -> str:
        return (date.fromisoformat(first["as_of"]) + timedelta(days=7 * n)).isoformat()

    def same_floor(run: dict, of: dict) -> dict:
        return {**run, **{k: v for k, v in of.items() if k.startswith("floor") or k in ("training_rows", "trees")}}

    try:
        runs = {"first": _child(case, _withheld(config, state) if refit else config, as_of, floor=True)}
        if refit:
            runs["refit"] = _child(case, config, week(1, runs["first"]), floor=True)
        if not first_only:
            floor_of = runs.get("refit", runs["first"])
            runs["steady"] = same_floor(_child(case, config, week(len(runs), runs["first"]), floor=False), floor_of)
        return runs
    finally:
        shutil.rmtree(state, ignore_errors=True)
        config.with_name(f"{config.stem}-withheld.yaml").unlink(missing_ok=True)
        if config.parent != state:
            config.unlink(missing_ok=True)


def _report(case: str, runs: list[dict], title: str) -> None:
    med = statistics.median
    first = runs[0]
    print(f"\n{case}, {title}: {first['tracts']:,} tracts, {int(first['training_rows']):,} training rows, "
          f"{int(first['trees'])} trees, {first['alerts']} alerts, retrained: {first['retrained']} "
          f"(median of {len(runs)} runs)")
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
    parser.add_argument("--cases", default="king,8500,85000", help="king and/or tract counts, comma-separated; "
                        "85000r6 splits the world's counties into six regions")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--first-only", action="store_true", help="Measure only the first run, on the full files.")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--as-of", help=argparse.SUPPRESS)
    parser.add_argument("--no-floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.as_of, floor=not args.no_floor)
        return
    print(f"{os.cpu_count()} CPUs; {args.repeat} repetition(s) per case", flush=True)
    titles = {"first": "first run (nothing to reuse)",
              "refit": "the week the newest eviction year arrives (a new origin closes: backtest and model refitted)",
              "steady": "a retraining week on the same files (one week later)"}
    for case in args.cases.split(","):
        weeks: dict[str, list[dict]] = {name: [] for name in titles}
        for i in range(args.repeat):
            for name, run in _measure(case.strip(), args.years, args.data, args.first_only).items():
                weeks[name].append(run)
                print(f"{case} repetition {i + 1}, {name}: {run['wall']:.1f} s", flush=True)
        for name, title in titles.items():
            if weeks[name]:
                _report(case.strip(), weeks[name], title)


if __name__ == "__main__":
    main()
