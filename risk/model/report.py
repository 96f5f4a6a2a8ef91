"""The backtest report: Markdown and HTML with PR curves and a calibration plot."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402

from risk.core.errors import OutputError  # noqa: E402
from risk.core.files import code_hash, frame_hash  # noqa: E402
from risk.core.templating import environment  # noqa: E402
from risk.model.backtest import MODELS, Backtest  # noqa: E402
from risk.model.choice import CHOICE_RULE
from risk.model.pooled import PooledExtras  # noqa: E402

KEY_FILE = ".content-key"
"""What the report was written from (its text, predictions and code)."""
LABELS = {"lightgbm": "LightGBM", "logistic": "Logistic regression", "mean_reversion": "Mean reversion",
          "persistence": "Persistence", "udp_typology": "UDP typology", "low_income_share": "Low-income share (level)"}


def _pr_curves(bt: Backtest, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    for m in MODELS:
        if m in bt.unsupported:
            continue
        rows = bt.preds[bt.preds[m].notna()]
        precision, recall, _ = precision_recall_curve(rows["y"], rows[m])
        ax.step(recall, precision, where="post", label=f"{LABELS[m]} (PR-AUC {bt.metrics[m]['pr_auc']:.3f})",
                linewidth=2.2 if m == "lightgbm" else 1.2)
    ax.axhline(bt.preds["y"].mean(), color="grey", linestyle=":", label="random ranking")
    ax.set(xlabel="recall", ylabel="precision", title=f"{bt.outcome}: pooled over origins {bt.test_origins[0]}-"
           f"{bt.test_origins[-1]}", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _power(ratio: float, ci: tuple[float, float]) -> str:
    """What the interval's width means: a percentile interval of a ratio moves with it multiplicatively, so its
    lower end passes 1.0 only at about ratio / lower end."""
    if not (ratio > 0 and ci[0] > 0) or ci[0] > 1.0:
        return ""
    return (f" With intervals this wide, the lower end would pass 1.0 only at a ratio of about "
            f"{ratio / ci[0]:.2f}: more positives (tracts, origins or regions) narrow it, not a better model alone.")


def _calibration(bt: Backtest, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    top = 0.0
    for m, table in bt.calibration.items():
        ax.plot(table["predicted"], table["observed"], marker="o", label=LABELS[m])
        top = max(top, table["predicted"].max(), table["observed"].max())
    top = min(1.0, top * 1.1 + 0.01)
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="perfect calibration")
    ax.set(xlabel="mean predicted probability (decile)", ylabel="observed positive rate", xlim=(0, top),
           ylim=(0, top), title="Calibration on the test origins")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _markdown(bt: Backtest) -> str:
    lines = [f"# Backtest: {bt.outcome}", "", bt.description, "",
             f"Test origins {', '.join(map(str, bt.test_origins))}; {len(bt.preds)} tract-origin cases, "
             f"{int(bt.preds['y'].sum())} positive. Null check: {100 * bt.null_rate:.2f}% simulated against "
             f"{100 * bt.observed_rate:.2f}% observed ({'passes' if bt.null_ok else 'FAILS'}).", "",
             "| model | PR-AUC (95% CI) | ROC-AUC | precision@10% | recall@10% | Brier |", "|---|---|---|---|---|---|"]
    for m in MODELS:
        if m in bt.unsupported:
            lines.append(f"| {LABELS[m]} | not available: {bt.unsupported[m]} | | | | |")
            continue
        x, ci = bt.metrics[m], bt.pr_auc_ci.get(m, (float("nan"),) * 2)
        lines.append(f"| {LABELS[m]} | {x['pr_auc']:.3f} ({ci[0]:.3f}-{ci[1]:.3f}) | {x['roc_auc']:.3f} | "
                     f"{x['precision_at_10pct']:.3f} | {x['recall_at_10pct']:.3f} | "
                     f"{'n/a' if x['brier'] != x['brier'] else format(x['brier'], '.4f')} |")
    lines += ["", f"LightGBM / {bt.best_baseline}: PR-AUC ratio {bt.ratio:.2f} "
              f"(95% CI {bt.ratio_ci[0]:.2f}-{bt.ratio_ci[1]:.2f}).{_power(bt.ratio, bt.ratio_ci)}", "",
              f"Lead time: {bt.lead['flagged']} of {bt.lead['positives']} positives flagged in the top 10% at their "
              f"origin; median lead {bt.lead['median_lead_years']} year(s).", "",
              "![PR curves](pr_curves.png)", "", "![Calibration](calibration.png)", ""]
    udp = bt.udp_ratio
    if udp.get("ratio") is not None:
        lines += [f"LightGBM / UDP typology (the ranking planners use today): PR-AUC ratio {udp['ratio']:.2f} "
                  f"(95% CI {udp['ci95'][0]:.2f}-{udp['ci95'][1]:.2f}).", ""]
    for section in regional_sections(bt):
        lines += [f"## {section.title}", "", *section.notes, ""]
        if section.rows:
            lines += ["| " + " | ".join(section.header) + " |", "|" + "---|" * len(section.header)]
            lines += ["| " + " | ".join(row) + " |" for row in section.rows]
            lines.append("")
    if bt.excluded_labels:
        lines += ["## Labels left out (broken source data)", "",
                  *(f"- {why}" for why in bt.excluded_labels), ""]
    never = [f for f, share in bt.presence.items() if share == 0]
    if never:
        lines += ["Features never present in training rows (the model cannot use them): " + ", ".join(never), ""]
    return "\n".join(lines)


def _ratio(fig: dict[str, Any] | None) -> str:
    if not fig or fig.get("ratio") is None:
        return "n/a"
    return f"{fig['ratio']:.2f} ({fig['ci95'][0]:.2f}-{fig['ci95'][1]:.2f})"


def _pr(models: dict[str, dict[str, Any] | None] | None, m: str) -> str:
    x = (models or {}).get(m)
    return "n/a" if not x else f"{x['pr_auc']:.3f}"


def _label(model: str) -> str:
    return LABELS.get(model, model)


@dataclass(frozen=True)
class Section:
    """One titled table of a report, with its sentences."""

    title: str
    notes: list[str]
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def _regions_section(p: PooledExtras) -> Section:
    rows = []
    for name, r in p.regions.items():
        best = (r.vs_best or {}).get("baseline", "")
        check = "n/a" if not r.null_check else ("passes" if r.null_check["passes"] else "FAILS")
        rows.append([name, str(r.n_tracts), str(r.n_positive), check, _pr(r.models, "lightgbm"),
                     f"{_label(best)} {_pr(r.models, best)}" if best else "n/a", _ratio(r.vs_best),
                     _ratio(r.vs_udp), r.note])
    notes = [f"{_label(m)} cannot be computed in {', '.join(rs)}: those tracts rank in the middle of it."
             for m, rs in p.baseline_gaps.items()]
    notes += [f"Left out of training and judging: {name} ({why})." for name, why in p.excluded.items()]
    return Section("Each region (scored by the pooled model)", notes,
                   ["region", "tracts", "positives", "null check", "LightGBM", "best baseline",
                    "vs best (95% CI)", "vs UDP typology (95% CI)", "note"], rows)


def _loro_section(p: PooledExtras) -> Section:
    if p.loro is None:
        return Section("Leave one region out", [f"Not available: {p.loro_note}"])
    loro: dict[str, Any] = p.loro
    best = loro["lightgbm_vs_best_baseline"]["baseline"]
    rows = [[_label(m), f"{x['pr_auc']:.3f} ({x['pr_auc_ci95'][0]:.3f}-{x['pr_auc_ci95'][1]:.3f})"]
            for m, x in loro["models"].items() if x]
    note = (f"Each region's held-out origins scored by a model trained on the other regions only (regions with "
            f"training origins in the others: {', '.join(loro['regions'])}). LightGBM / "
            f"{_label(best)}: {_ratio(loro['lightgbm_vs_best_baseline'])}; LightGBM / UDP typology: "
            f"{_ratio(loro['lightgbm_vs_udp_typology'])}.")
    return Section("Leave one region out (what a new city would get)", [note], ["model", "PR-AUC (95% CI)"], rows)


def _choice_section(p: PooledExtras, test_origins: list[int]) -> Section:
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    rows = [[c.name + (" (chosen)" if c.name == p.chosen else ""), str(len(c.features)), fmt(c.dev_pr_auc),
             fmt(c.test_pr_auc)] for c in p.candidates]
    note = (f"Development origins {', '.join(map(str, p.dev_origins)) or 'none'}; every figure above comes from "
            f"the later origins {', '.join(map(str, test_origins))}. Rule, fixed before the held-out origins were "
            f"scored: {CHOICE_RULE}. {p.choice_note}").strip()
    return Section("Model choice (decided on development origins only)", [note],
                   ["feature set", "features", "development PR-AUC", "held-out PR-AUC"], rows)


def regional_sections(bt: Backtest) -> list[Section]:
    """The regions, leave-one-region-out and model-choice tables of a pooled backtest (none for one region)."""
    p = bt.pooled
    if not isinstance(p, PooledExtras):
        return []
    return [_regions_section(p), _loro_section(p), _choice_section(p, bt.test_origins)]


def _html(bt: Backtest, templates: Path | None) -> str:
    rows = [{"name": LABELS[m], "metrics": bt.metrics.get(m), "ci": bt.pr_auc_ci.get(m, (float("nan"),) * 2),
             "reason": bt.unsupported.get(m, "")} for m in MODELS]
    per_models = [m for m in MODELS if m in bt.by_origin]
    per = [{"origin": o, "scheme": bt.schemes.get(o, ""),
            "cells": [f"{bt.by_origin[m].loc[o, 'pr_auc']:.3f}" if o in bt.by_origin[m].index
                       and "pr_auc" in bt.by_origin[m] else "" for m in per_models]} for o in bt.test_origins]
    calib = bt.calibration.get("lightgbm")
    return environment(templates).get_template("report/backtest.html.j2").render(
        outcome=bt.outcome, description=bt.description, origins=bt.test_origins, n_rows=len(bt.preds),
        n_positive=int(bt.preds["y"].sum()), n_tracts=int(bt.preds["geoid"].nunique()), null_rate=bt.null_rate,
        observed_rate=bt.observed_rate, null_ok=bt.null_ok, rows=rows, best=LABELS[bt.best_baseline],
        ratio=bt.ratio, ratio_ci=bt.ratio_ci, base_rate=float(bt.preds["y"].mean()), lead=bt.lead,
        per_origin_models=[LABELS[m] for m in per_models], per_origin=per,
        calibration=[] if calib is None else calib.to_dict("records"),
        presence=[{"name": k, "share": float(v)} for k, v in bt.presence.items()], udp=bt.udp_ratio,
        regional=regional_sections(bt), excluded_labels=bt.excluded_labels)


def write_report(bt: Backtest, reports: Path, templates: Path | None = None) -> Path:
    """Write ``reports/backtest-<outcome>/`` (report.md, report.html, PNGs, predictions.csv) atomically.

    A report whose text, predictions and code are those of the folder already there is left as it is: a
    retraining week that changed no origin would otherwise draw the same plots from every prediction again."""
    target = reports / f"backtest-{bt.outcome}"
    markdown, html = _markdown(bt), _html(bt, templates)
    key = hashlib.sha256("\0".join([markdown, html, frame_hash(bt.preds), code_hash()]).encode()).hexdigest()
    with contextlib.suppress(OSError):
        if (target / KEY_FILE).read_text() == key:
            return target
    try:
        reports.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=reports))
    except OSError as e:
        raise OutputError(f"cannot write reports to {reports}: {e.strerror or e}") from e
    try:
        _pr_curves(bt, tmp / "pr_curves.png")
        _calibration(bt, tmp / "calibration.png")
        (tmp / "report.md").write_text(markdown, encoding="utf-8")
        (tmp / "report.html").write_text(html, encoding="utf-8")
        bt.preds.to_csv(tmp / "predictions.csv", index=False)
        (tmp / KEY_FILE).write_text(key)
        old = reports / f".{target.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise OutputError(f"cannot write the report to {target}: {e.strerror or e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
