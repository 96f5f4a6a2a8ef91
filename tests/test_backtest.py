"""The rolling-origin backtest on the bundled data: temporal splits, the JSON contract, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import bundled_config_copy

from risk.cli.main import main
from risk.core.errors import BacktestError
from risk.core.settings import Settings
from risk.features.dictionary import model_feature_names
from risk.model.backtest import MODELS, Backtest, run_backtest
from risk.model.report import write_report
from risk.outcomes.registry import outcome_for
from risk.sources import Sources


@pytest.fixture(scope="module")
def eviction_backtest(bundled_settings: Settings, bundled_sources: Sources) -> Backtest:
    return run_backtest(bundled_settings, bundled_sources, "eviction_surge")


def test_every_model_trains_only_on_origins_closed_before_the_test_origin(
        eviction_backtest: Backtest, bundled_settings: Settings, bundled_sources: Sources) -> None:
    origins = {o.year: o for o in outcome_for("eviction_surge", bundled_settings).origins(bundled_sources)}
    assert eviction_backtest.train_origins
    for test, trained_on in eviction_backtest.train_origins.items():
        assert len(trained_on) >= bundled_settings.model.eviction_surge.min_train_origins
        for year in trained_on:
            assert year < test
            assert origins[year].closes <= origins[test].as_of


def test_both_learners_train_on_the_comparable_features(eviction_backtest: Backtest) -> None:
    assert list(eviction_backtest.presence.index) == model_feature_names()
    assert "eviction_filing_rate_12m" not in eviction_backtest.presence.index  # per renter: drifts between years


def test_all_models_are_scored_on_the_same_cases(eviction_backtest: Backtest) -> None:
    preds = eviction_backtest.preds
    assert not preds.duplicated(["origin", "geoid"]).any()
    for m in MODELS:
        if m not in eviction_backtest.unsupported:
            assert preds[m].notna().all(), m


def test_backtest_json_has_the_documented_shape(eviction_backtest: Backtest) -> None:
    doc = json.loads(json.dumps(eviction_backtest.to_json()))
    # the contract grows, it does not change: every key of the first version is still there
    assert {"outcome", "origins", "n_tracts", "n_positive", "null_positive_rate", "models",
            "lightgbm_vs_best_baseline"} <= set(doc)
    assert set(doc) - {"outcome", "origins", "n_tracts", "n_positive", "null_positive_rate", "models",
                       "lightgbm_vs_best_baseline"} == {"lightgbm_vs_udp_typology", "null_check", "regions",
                                                        "leave_one_region_out", "leave_one_region_out_note"}
    assert set(doc["models"]) == {"lightgbm", "logistic", "mean_reversion", "persistence", "udp_typology",
                                  "low_income_share"}
    for m in doc["models"].values():
        assert set(m) == {"pr_auc", "roc_auc", "precision_at_10pct", "recall_at_10pct", "brier", "pr_auc_ci95"}
        lo, hi = m["pr_auc_ci95"]
        assert lo <= m["pr_auc"] <= hi
    best = doc["lightgbm_vs_best_baseline"]
    assert best["baseline"] in {"logistic", "mean_reversion", "persistence", "udp_typology", "low_income_share"}
    assert math.isclose(best["ratio"], doc["models"]["lightgbm"]["pr_auc"] / doc["models"][best["baseline"]]["pr_auc"])
    assert doc["null_positive_rate"] < 0.25 * doc["n_positive"] / len(eviction_backtest.preds)
    udp = doc["lightgbm_vs_udp_typology"]
    assert math.isclose(udp["ratio"], doc["models"]["lightgbm"]["pr_auc"] / doc["models"]["udp_typology"]["pr_auc"])
    assert udp["ci95"][0] <= udp["ratio"] <= udp["ci95"][1]
    assert doc["null_check"] == {"observed": pytest.approx(doc["n_positive"] / len(eviction_backtest.preds)),
                                 "null": doc["null_positive_rate"], "passes": True}
    (region,) = doc["regions"].values()  # one region: its figures are the pooled ones
    assert region["models"] == doc["models"] and region["n_positive"] == doc["n_positive"]
    assert doc["leave_one_region_out"] is None and "one region" in doc["leave_one_region_out_note"]


def test_report_has_plots_and_tables(eviction_backtest: Backtest, tmp_path: Path) -> None:
    folder = write_report(eviction_backtest, tmp_path)
    for name in ("report.md", "report.html", "pr_curves.png", "calibration.png", "predictions.csv"):
        assert (folder / name).stat().st_size > 0, name
    assert (folder / "pr_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (folder / "report.html").read_text()
    assert "Mean reversion" in html and "calibration.png" in html and "never present" in html
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_low_income_backtest_is_refused_when_its_only_training_vintage_is_broken(
        bundled_settings: Settings, bundled_sources: Sources) -> None:
    # King's 1990 low-income counts come from crosswalked medians (shrunk): the quality checks leave 1990 out,
    # which leaves 2000 without an earlier origin to train on
    with pytest.raises(BacktestError, match=r"1990.*implausible_vintage_jump"):
        run_backtest(bundled_settings, bundled_sources, "low_income_loss")


def test_backtest_cli_prints_one_json_object(tmp_path: Path) -> None:
    config = bundled_config_copy(tmp_path, "\nmodel: {bootstrap: 50, null_simulations: 5}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "backtest", "--outcome", "eviction_surge", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "eviction_surge" and doc["origins"]
    assert (tmp_path / "reports" / "backtest-eviction_surge" / "calibration.png").exists()


def test_an_outcome_that_fails_its_null_check_is_reported_and_not_trained(tmp_path: Path) -> None:
    # a "surge" of any rise at all at the 45% level: no-change worlds give almost as many positives as observed
    config = bundled_config_copy(tmp_path, "\nmodel: {bootstrap: 50, null_simulations: 5, eviction_surge: "
                                           "{alpha: 0.45, min_rise: 0.0}}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "train", "--outcome", "eviction_surge"])
    assert result.exit_code == 3, result.output
    assert "every origin fails its null check" in result.output and "nothing is trained" in result.output
    assert "Traceback" not in result.output
    models = tmp_path / "models"
    assert not models.exists() or not any(p.is_dir() for p in models.iterdir())
