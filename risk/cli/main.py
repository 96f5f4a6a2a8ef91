"""The `risk` command group and its data, model and alert commands; the other groups are added from their modules
(errors become exit codes and one-line messages in :mod:`risk.cli.common`, and nowhere else)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from risk.cli import db as cli_db
from risk.cli import job as cli_job
from risk.cli import setup as cli_setup
from risk.cli import synth as cli_synth
from risk.cli import web as cli_web
from risk.cli.common import F, err, handles_errors, out, parse_date, settings_of
from risk.core.errors import DataValidationError
from risk.core.settings import (
    CONFIG_ENV,
    MAX_CONFIG_BYTES,
    MAX_CONFIG_NODES,
    config_path_from,
    describe_keys,
    effective_config,
)
from risk.outcomes.registry import OUTCOME_NAMES


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(path_type=Path), default=None,
              help=f"Configuration file (default: ${CONFIG_ENV}, else ./config.yaml).")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
@click.pass_context
def main(ctx: click.Context, config: Path | None, verbose: bool) -> None:
    """Displacement-risk early warning for census tracts."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    ctx.ensure_object(dict)["config_path"] = config_path_from(config)


@main.group()
def config() -> None:
    """Check or explain the configuration."""


@config.command("check")
@click.pass_context
@handles_errors
def config_check(ctx: click.Context) -> None:
    """Validate the configuration and print the effective settings."""
    from risk.alerts.recipients import check_recipients, load_recipients
    from risk.sources import read_tracts

    settings = settings_of(ctx)
    recipients = load_recipients(settings.alerts)  # a recipients CSV row that is not an address is refused here
    check_recipients(settings, recipients, read_tracts(settings))  # an area matching no tract would mute someone
    out.print(f"# {settings.config_path}: valid", highlight=False)
    click.echo(effective_config(settings))


@config.command("keys")
def config_keys() -> None:
    """List every configuration key with its default and help."""
    table = Table("key", "default", "help", show_lines=False)
    for key, default, help_text in describe_keys():
        table.add_row(key, default, help_text)
    out.print(table)
    out.print(f"The file itself: at most {MAX_CONFIG_BYTES:,} bytes and {MAX_CONFIG_NODES:,} values once YAML "
              "aliases (*name) are expanded.", highlight=False)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (every problem row included).")
@click.option("--all", "every_row", is_flag=True,
              help="List every row of each problem, not the first five and a count.")
@click.pass_context
@handles_errors
def validate(ctx: click.Context, as_json: bool, every_row: bool) -> None:
    """Check every input file; report all problems at once (exit 3 if any is an error)."""
    from risk.sources.validation import validate as run_validation

    report = run_validation(settings_of(ctx))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report, every_row)
    if not report.ok:
        sys.exit(DataValidationError.exit_code)


def _print_problem(console: Any, label: str, p: Any, every_row: bool) -> None:
    if every_row and p.more:  # the rows the summary stands for, each on its own line
        for line, message in p.more:
            console.print(f"{label} {p.file}, line {line}" + (f", column '{p.column}'" if p.column else "")
                          + f": {message}", highlight=False)
        return
    console.print(f"{label} {p}", highlight=False)


def _print_report(report: Any, every_row: bool = False) -> None:
    several = len({f.region for f in report.families}) > 1
    table = Table(*(["region"] if several else []), "family", "rows", "tracts", "first", "last", title="Sources")
    for f in report.families:
        table.add_row(*([f.region] if several else []), f.family, str(f.rows), str(f.tracts), f.first or "",
                      f.last or "")
    if report.families:
        out.print(table)
    for p in report.warnings:
        _print_problem(out, "[yellow]warning[/]", p, every_row)
    for p in report.errors:
        _print_problem(err, "[red]error[/]", p, every_row)
    if report.ok:
        out.print(f"[green]valid[/]: no errors, {len(report.warnings)} warning(s)")
    else:
        err.print(f"[bold red]invalid[/]: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")


@main.command()
@click.option("--as-of", "as_of", required=True, callback=parse_date, help="Date the features are known at.")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path), help="Parquet file to write.")
@click.pass_context
@handles_errors
def features(ctx: click.Context, as_of: date, out_path: Path) -> None:
    """Build point-in-time features for every tract and write them to Parquet."""
    from risk.model.engines import configured as engine
    from risk.service.pipeline import write_features
    from risk.sources import load_sources

    settings = settings_of(ctx)
    with err.status("loading and validating sources"):
        sources = load_sources(settings)
    with err.status(f"building features at {as_of}"):
        frame = engine.features(settings, sources, as_of)
    write_features(frame, out_path)
    cov = ", ".join(f"{c.removeprefix('cov_')} {int(frame[c].sum())}" for c in frame.columns if c.startswith("cov_"))
    out.print(f"wrote {len(frame)} tracts x {frame.shape[1]} features to {out_path} (tracts covered: {cov})",
              highlight=False)


def _outcome_option(fn: F) -> F:
    return click.option("--outcome", default=None,
                        type=click.Choice(OUTCOME_NAMES),
                        help="Outcome (default: model.outcome in the config).")(fn)


@main.command()
@_outcome_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
@handles_errors
def labels(ctx: click.Context, outcome: str | None, as_json: bool) -> None:
    """Positives and negatives per origin and region, and the null check (simulated no-change worlds)."""
    from risk.core.errors import OutcomeError
    from risk.outcomes.labels import label_summary, null_check
    from risk.outcomes.registry import outcome_for, outcome_spec
    from risk.service.regions import load_project

    settings = settings_of(ctx)
    name = outcome or settings.model.outcome
    ratio = outcome_spec(name).null_ratio
    regions: dict[str, Any] = {}
    with err.status("loading sources and simulating no-change worlds"):
        for r in load_project(settings).regions:
            try:
                regions[r.name] = label_summary(outcome_for(name, r.settings), r.sources,
                                                settings.model.null_simulations, settings.model.seed)
            except OutcomeError as e:
                regions[r.name] = str(e)
    every = [row for rows in regions.values() if not isinstance(rows, str) for row in rows]
    if not every:
        raise OutcomeError("; ".join(f"{k}: {v}" for k, v in regions.items()))
    observed, null, ok = null_check(every, ratio)
    if as_json:
        doc = {"outcome": name, "origins": _origin_rows(every), "observed_rate": observed, "null_rate": null,
               "null_check_passes": ok}
        if settings.multi_region:
            doc["regions"] = {k: {"no_labels": v} if isinstance(v, str) else dict(zip(
                ("observed_rate", "null_rate", "null_check_passes"), null_check(v, ratio), strict=True),
                origins=_origin_rows(v)) for k, v in regions.items()}
        click.echo(json.dumps(doc, indent=2))
        return
    for region, rows in regions.items():
        title = f"{name}: {region}" if settings.multi_region else name
        if isinstance(rows, str):
            out.print(f"{title}: no labels ({rows})", highlight=False)
            continue
        _print_labels(title, rows, *null_check(rows, ratio))


def _origin_rows(rows: list[Any]) -> list[dict[str, object]]:
    return [{"origin": r.origin.year, "as_of": r.origin.as_of.isoformat(), "closes": r.origin.closes.isoformat(),
             "positives": r.positives, "negatives": r.negatives, "null_rate": r.null_rate,
             "left_out": list(r.left_out)} for r in rows]


def _print_labels(title: str, rows: list[Any], observed: float, null: float, ok: bool) -> None:
    table = Table("origin", "features as of", "outcome known", "positives", "negatives", "rate", "null rate",
                  title=title)
    for r in rows:
        table.add_row(str(r.origin.year), str(r.origin.as_of), str(r.origin.closes), str(r.positives),
                      str(r.negatives), f"{r.rate:.3f}", f"{r.null_rate:.4f}")
    out.print(table)
    for r in rows:
        for why in r.left_out:
            out.print(f"[yellow]left out[/] {why}", highlight=False)
    verdict = "[green]passes[/]" if ok else "[red]fails: not used to train or judge a model[/]"
    out.print(f"null check: simulated no-change rate {null:.4f} against observed {observed:.4f} "
              f"(must be at most a quarter): {verdict}")


@main.command()
@_outcome_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
@handles_errors
def backtest(ctx: click.Context, outcome: str | None, as_json: bool) -> None:
    """Rolling-origin backtest of LightGBM against the baselines; writes a report with plots."""
    from risk.model.report import write_report
    from risk.service.regions import backtest as run_backtest

    settings = settings_of(ctx)
    with err.status("loading sources") as status:
        result = run_backtest(settings, outcome, progress=lambda m: status.update(m))
        status.update("writing the report")
        folder = write_report(result, settings.paths.reports)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        out.print((folder / "report.md").read_text(encoding="utf-8"), markup=False, highlight=False)
    err.print(f"report: {folder / 'report.html'}", highlight=False)


@main.command()
@_outcome_option
@click.option("--as-of", "as_of", default=None, callback=parse_date,
              help="Train on outcome windows closed by this date (default: the newest date the data supports).")
@click.pass_context
@handles_errors
def train(ctx: click.Context, outcome: str | None, as_of: date | None) -> None:
    """Backtest, train on every closed origin, register the model and promote it unless it is worse."""
    from risk.service.pipeline import train as train_model

    settings = settings_of(ctx)  # a bad config is reported before the progress line shows
    with err.status("loading sources") as status:
        trained = train_model(settings, outcome, as_of, progress=lambda m: status.update(m))
    verdict = "promoted to champion" if trained.promoted else "kept as challenger"
    out.print(f"model {trained.record.model_id}: {verdict} ({trained.reason})", highlight=False)


@main.group()
def models() -> None:
    """List, inspect, promote or roll back registered models."""


@models.command("list")
@click.pass_context
@handles_errors
def models_list(ctx: click.Context) -> None:
    """Every registered model, the champion marked."""
    from risk.model.registry import Registry

    registry = Registry(settings_of(ctx).paths.models)
    champions = {r.outcome: registry.champion(r.outcome) for r in registry.list()}
    table = Table("", "model", "outcome", "trained as of", "origins", "backtest PR-AUC", "created",
                  title="* = champion of its outcome")
    for r in registry.list():
        m = r.metadata
        pr = f"{r.pr_auc:.3f}" if r.pr_auc is not None else ""
        years = m.get("training_origins", [])
        span = f"{years[0]}-{years[-1]}" if len(years) > 1 else "".join(map(str, years))
        champion = champions.get(r.outcome)
        table.add_row("*" if champion and champion.model_id == r.model_id else "", r.model_id, m.get("outcome", ""),
                      m.get("as_of", ""), span, pr, m.get("created", ""))
    out.print(table)


@models.command("show")
@click.argument("model_id")
@click.pass_context
@handles_errors
def models_show(ctx: click.Context, model_id: str) -> None:
    """A model's metadata as JSON."""
    from risk.model.registry import Registry

    click.echo(json.dumps(Registry(settings_of(ctx).paths.models).get(model_id).metadata, indent=2))


@models.command("promote")
@click.argument("model_id")
@click.pass_context
@handles_errors
def models_promote(ctx: click.Context, model_id: str) -> None:
    """Make a model the champion (by hand, whatever its metrics)."""
    from risk.model.registry import Registry

    record = Registry(settings_of(ctx).paths.models).promote(model_id)
    out.print(f"champion: {record.model_id}", highlight=False)


@models.command("rollback")
@_outcome_option
@click.pass_context
@handles_errors
def models_rollback(ctx: click.Context, outcome: str | None) -> None:
    """Return an outcome to its previous champion."""
    from risk.model.registry import Registry

    settings = settings_of(ctx)
    record = Registry(settings.paths.models).rollback(outcome or settings.model.outcome)
    out.print(f"champion: {record.model_id}", highlight=False)


@main.command()
@click.argument("geoid")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--png", "png", type=click.Path(path_type=Path), default=None, help="Also write a SHAP waterfall PNG.")
@click.pass_context
@handles_errors
def explain(ctx: click.Context, geoid: str, as_json: bool, png: Path | None) -> None:
    """Why a tract scored as it did in the newest run: SHAP drivers in plain words."""
    from risk.core.errors import RiskError
    from risk.scoring.explain import (
        comparison_area,
        contributions,
        tract_explanation,
        waterfall_png,
    )
    from risk.service.artifacts import read_newest_run

    stored = read_newest_run(settings_of(ctx))
    features, record = stored.require_features(), stored.require_record()
    geoid = geoid.strip().zfill(11)
    if geoid not in features.index:
        raise RiskError(f"tract {geoid} is not in run {stored.run_id} (as of {stored.as_of})")
    model = record.load()
    # a tract is compared with its own region, as in the run's sentences
    counties = next((r.region.county_fips for r in settings_of(ctx).regional() if geoid[:5] in r.region.county_fips),
                    (geoid[:5],))
    own = features[features.index.str[:5].isin(counties)]
    doc = tract_explanation(model, features, geoid, own.median(), area=comparison_area(counties))
    doc = {"geoid": doc["geoid"], "probability": doc["probability"], "tier": str(stored.scores.loc[geoid, "tier"]),
           "base_value": doc["base_value"], "drivers": doc["drivers"]}
    if png is not None:
        waterfall_png(contributions(model, features.loc[[geoid]]), geoid, png, probability=doc["probability"])
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    out.print(f"tract {geoid}: probability {doc['probability']:.3f}, tier {doc['tier']} "
              f"(run {stored.run_id}, as of {stored.as_of}, model {record.model_id})", highlight=False)
    for d in doc["drivers"]:
        out.print(f"  - {d['sentence']}", highlight=False, markup=False)


@main.group()
def alerts() -> None:
    """Preview or send this week's alert e-mails."""


@alerts.command("preview")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for the HTML previews (default: <reports>/preview).")
@click.pass_context
@handles_errors
def alerts_preview(ctx: click.Context, out_dir: Path | None) -> None:
    """Render every recipient's messages for the newest run to HTML files, without sending."""
    from risk.alerts.digests import compose
    from risk.alerts.messages import save_preview
    from risk.service.artifacts import preview_folder
    from risk.service.pipeline import latest_outputs

    settings = settings_of(ctx)
    out_dir = out_dir or preview_folder(settings)
    with err.status("rendering messages"):
        run_id, outputs, sources = latest_outputs(settings)
        found, outgoing = compose(settings, sources.tracts, outputs)
        paths = [save_preview(o.message, out_dir, f"{o.kind}-{o.recipient.replace('@', '_at_')}") for o in outgoing]
    out.print(f"run {run_id}: {len(found)} alerts, {len(paths)} messages", highlight=False)
    for p in paths:
        out.print(f"  {p}", highlight=False)


@alerts.command("send")
@click.pass_context
@handles_errors
def alerts_send(ctx: click.Context) -> None:
    """Send what is queued in the outbox."""
    from risk.core.store import engine_for
    from risk.delivery.outbox import requeue_interrupted, send_queued
    from risk.service.lock import RunLock

    settings = settings_of(ctx)
    engine = engine_for(settings.paths.database)
    with RunLock(engine, settings.schedule.lock_stale_s):  # never beside a weekly run's own delivery
        requeue_interrupted(engine)
        report = send_queued(engine, settings.delivery)
    out.print(f"sent {report.sent}, failed {report.failed}, still queued {report.still_queued}", highlight=False)


@main.group()
def outbox() -> None:
    """Inspect the durable outbox."""


@outbox.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handles_errors
def outbox_list(ctx: click.Context, as_json: bool) -> None:
    """Every message: key, week, recipient, state, attempts, last error."""
    from risk.core.store import engine_for
    from risk.delivery.outbox import outbox_rows

    rows = outbox_rows(engine_for(settings_of(ctx).paths.database))
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table("week", "kind", "recipient", "state", "attempts", "last error", "subject")
    for r in rows:
        table.add_row(r["week"], r["kind"], r["recipient"], r["state"], str(r["attempts"]), r["last_error"] or "",
                      r["subject"])
    out.print(table)


for _module in (cli_job, cli_db, cli_web, cli_synth, cli_setup):  # every other command group, added explicitly
    for _command in _module.COMMANDS:
        main.add_command(_command)
