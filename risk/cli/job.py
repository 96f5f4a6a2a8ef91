"""CLI commands for the weekly job: `risk run`, `risk runs list|show`, `risk schedule`, `risk replay`."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from risk.cli.common import err, handles_errors, out, parse_date, settings_of


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM/SIGINT, so a run can end cleanly at the next stage boundary."""
    stop = threading.Event()

    def request(signum: int, _frame: object) -> None:
        err.print(f"{signal.Signals(signum).name}: stopping after the current stage", highlight=False)
        stop.set()

    previous = {s: signal.signal(s, request) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@click.command()
@click.option("--as-of", "as_of", default=None, callback=parse_date,
              help="Run as of this date (default: the newest date the data supports).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
@handles_errors
def run(ctx: click.Context, as_of: date | None, as_json: bool) -> None:
    """Run the weekly job once: validate, features, train when due, score, explain, store, alert, deliver."""
    from risk.service.pipeline import STAGES
    from risk.service.pipeline import run as run_pipeline

    settings = settings_of(ctx)
    with _stop_on_signals() as stop, err.status("starting the weekly job") as status:
        def on_stage(name: str) -> None:
            status.update(f"stage {STAGES.index(name) + 1}/{len(STAGES)}: {name}")

        result = run_pipeline(settings, as_of, stop=stop, on_stage=on_stage)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    out.print(f"run {result.run_id} as of {result.as_of}: {result.tracts} tracts scored with model "
              f"{result.model_id}{' (trained in this run)' if result.retrained else ''}", highlight=False)
    out.print("tiers: " + ", ".join(f"{k} {v}" for k, v in result.tiers.items()), highlight=False)
    out.print("coverage (tracts): " + ", ".join(f"{k} {v}" for k, v in result.coverage.items()), highlight=False)
    out.print("stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.stage_seconds.items()))
    for note in result.data_notes:
        out.print(f"[yellow]note[/] {escape(note)}", highlight=False)
    out.print(f"alerts: {result.alerts}; e-mails queued {result.emails_queued}, sent {result.emails_sent}, "
              f"failed {result.emails_failed}", highlight=False)


@click.group()
def runs() -> None:
    """The run history."""


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """Dates and times as ISO strings."""
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


@runs.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000), help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handles_errors
def runs_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The newest runs: id, as-of date, status, duration, model, alerts and e-mails."""
    from risk.core.store import engine_for
    from risk.service.history import list_runs

    paths = settings_of(ctx).paths
    rows = list_runs(engine_for(paths.database, paths.database_busy_timeout_s), limit)
    if as_json:
        click.echo(json.dumps([_jsonable(r) for r in rows], indent=2, default=str))
        return
    table = Table("id", "as of", "started", "status", "seconds", "model", "alerts", "sent", "note")
    for r in rows:
        seconds = sum((r["stage_seconds"] or {}).values())
        counts = r["counts"] or {}
        note = r["error"] or (f"stage {r['stage']}" if r["status"] != "finished" and r["stage"] else "")
        table.add_row(str(r["id"]), str(r["as_of"]), f"{r['started_at']:%Y-%m-%d %H:%M}", r["status"],
                      f"{seconds:.1f}", r["model_id"] or "", str(counts.get("alerts", "")),
                      str(counts.get("emails_sent", "")), note)
    out.print(table)


@runs.command("show")
@click.argument("run_id", type=int)
@click.pass_context
@handles_errors
def runs_show(ctx: click.Context, run_id: int) -> None:
    """Everything recorded about one run, as JSON."""
    from risk.core.errors import RiskError
    from risk.core.store import engine_for
    from risk.service.history import get_run

    paths = settings_of(ctx).paths
    row = get_run(engine_for(paths.database, paths.database_busy_timeout_s), run_id)
    if row is None:
        raise RiskError(f"no run {run_id} in the database (see `risk runs list`)")
    click.echo(json.dumps(_jsonable(row), indent=2, default=str))


@click.command()
@click.pass_context
@handles_errors
def schedule(ctx: click.Context) -> None:
    """Run the weekly job on the configured schedule until SIGTERM or SIGINT."""
    from risk.service.scheduler import serve

    settings = settings_of(ctx)
    if not logging.getLogger().handlers or logging.getLogger().level > logging.INFO:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            force=True)
    serve(settings, Path(ctx.obj["config_path"]))


def _parse_every(_ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    """``7d`` or ``1w`` as a timedelta, or a message naming the option."""
    text = value.strip().lower()
    units = {"d": 1, "w": 7}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) < 1:
        raise click.BadParameter(f"'{value}' is not a step like 7d or 1w", param=param)
    if int(text[:-1]) * units[text[-1]] > 3660:
        raise click.BadParameter(f"'{value}' is longer than ten years", param=param)
    return timedelta(days=int(text[:-1]) * units[text[-1]])


@click.command()
@click.option("--from", "start", required=True, callback=parse_date, help="First as-of date (YYYY-MM-DD).")
@click.option("--to", "end", required=True, callback=parse_date, help="Last as-of date (YYYY-MM-DD).")
@click.option("--every", "step", default="7d", show_default=True, callback=_parse_every,
              help="Step between runs: Nd or Nw.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
@handles_errors
def replay(ctx: click.Context, start: date, end: date, step: timedelta, as_json: bool) -> None:
    """Run the weekly cycle over history without sending e-mail: alerts, churn and lead time per week."""
    from risk.service.replay import replay as run_replay

    settings = settings_of(ctx)
    if end < start:
        raise click.BadParameter("--to must not be before --from", param_hint="--to")
    with err.status("replaying") as status:
        result = run_replay(settings, start, end, step, progress=status.update)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    table = Table("as of", "trained on", "high tier", "alerts", "churn", "early alerts", "median lead (years)")
    for w in result.weeks:
        table.add_row(str(w.as_of), w.model_origin, str(w.flagged), str(w.alerts),
                      "" if w.churn is None else f"{w.churn:.0%}", str(w.early_alerts),
                      "" if w.median_lead_years is None else f"{w.median_lead_years:.1f}")
    out.print(table)
    out.print(result.summary(), highlight=False)


COMMANDS = (run, runs, schedule, replay)
"""Added to the `risk` group by :mod:`risk.cli.main`."""
