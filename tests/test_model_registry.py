"""Training is reproducible; the registry promotes only models that are not worse, and rolls back."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from risk.core.errors import RegistryError
from risk.core.settings import TierSettings
from risk.features.build import build_features
from risk.features.dictionary import model_feature_names
from risk.model.gbm import TrainedModel, TrainingRows, train
from risk.model.registry import Registry
from risk.scoring.scores import score_tracts
from risk.sources import Sources

AS_OF = [date(2009, 3, 1), date(2010, 3, 1), date(2011, 3, 1), date(2012, 3, 1)]


@pytest.fixture(scope="module")
def rows(bundled_sources: Sources) -> list[TrainingRows]:
    out = []
    for i, d in enumerate(AS_OF):
        X = build_features(bundled_sources, d)
        # a deterministic label with a learnable signal: high recent filing rates
        y = (X["eviction_filing_rate_36m"].rank(pct=True) > 0.85).astype(int)
        out.append(TrainingRows(2008 + i, X, y))
    return out


def _model(rows: list[TrainingRows], seed: int = 7) -> TrainedModel:
    return train(rows, model_feature_names(), seed)


def test_same_data_and_settings_give_a_byte_identical_model_file(rows, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _model(rows).save(a)
    _model(rows).save(b)
    assert (a / "model.txt").read_bytes() == (b / "model.txt").read_bytes()
    assert (a / "calibration.json").read_bytes() == (b / "calibration.json").read_bytes()


def test_a_saved_model_scores_exactly_like_the_trained_one(rows, tmp_path: Path) -> None:
    model = _model(rows)
    model.save(tmp_path)
    again = TrainedModel.load(tmp_path)
    assert again.prior is not None and again.prior == model.prior  # the logistic prior the trees boost from
    X = rows[-1].X
    assert np.array_equal(model.predict(X), again.predict(X))
    first = score_tracts(model, X, pd.DataFrame(), TierSettings())
    second = score_tracts(again, X, first, TierSettings())
    pd.testing.assert_frame_equal(first[["probability", "percentile", "tier"]],
                                  second[["probability", "percentile", "tier"]])
    assert (second["probability_change"] == 0).all()


def test_calibrated_probabilities_are_probabilities(rows) -> None:
    p = _model(rows).predict(rows[-1].X)
    assert ((p > 0) & (p < 1)).all()


def test_tiers_follow_the_configured_percentiles(rows) -> None:
    table = score_tracts(_model(rows), rows[-1].X, pd.DataFrame(), TierSettings(high=0.9, elevated=0.8, watch=0.5))
    high = table[table["tier"] == "high"]
    assert (high["percentile"] >= 0.9).all() and len(high) == pytest.approx(0.1 * len(table), abs=2)
    assert set(table["tier"]) == {"high", "elevated", "watch", "low"}


def _register(registry: Registry, rows, model_id: str, pr_auc: float):
    return registry.register(_model(rows), {"outcome": "eviction_surge",
                                            "backtest": {"lightgbm": {"pr_auc": pr_auc}}}, model_id)


def test_registry_refuses_a_worse_challenger_and_accepts_one_within_tolerance(rows, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    first = _register(registry, rows, "m1", 0.30)
    assert registry.consider(first, 0.02)[0] and registry.champion("eviction_surge").model_id == "m1"
    worse = _register(registry, rows, "m2", 0.25)
    promoted, reason = registry.consider(worse, 0.02)
    assert not promoted and "worse" in reason and registry.champion("eviction_surge").model_id == "m1"
    close = _register(registry, rows, "m3", 0.29)
    assert registry.consider(close, 0.02)[0] and registry.champion("eviction_surge").model_id == "m3"
    assert registry.rollback("eviction_surge").model_id == "m1" and registry.champion("eviction_surge").model_id == "m1"
    with pytest.raises(RegistryError):
        registry.rollback("eviction_surge")


def test_registry_folders_hold_model_metadata_and_versions(rows, tmp_path: Path) -> None:
    record = _register(Registry(tmp_path), rows, "m1", 0.3)
    assert {p.name for p in record.folder.iterdir()} == {"model.txt", "calibration.json", "metadata.json"}
    assert {"lightgbm", "shap", "pandas"} <= set(record.metadata["libraries"])
    assert record.load().features == model_feature_names()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no model 'nope'"):
        Registry(tmp_path).get("nope")



def test_models_of_different_outcomes_do_not_compete(rows, tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.consider(_register(registry, rows, "e1", 0.30), 0.02)
    other = registry.register(_model(rows), {"outcome": "low_income_loss",
                                             "backtest": {"lightgbm": {"pr_auc": 0.05}}}, "l1")
    assert registry.consider(other, 0.02)[0]
    assert registry.champion("eviction_surge").model_id == "e1"
    assert registry.champion("low_income_loss").model_id == "l1"


@pytest.mark.filterwarnings("ignore:The least populated class")
def test_training_succeeds_when_the_older_origins_hold_no_positive() -> None:
    """The early-stopping probe fits on the older origins only; a prior for one class is the base rate."""
    names = model_feature_names(True)[:8]
    rng = np.random.default_rng(3)

    def origin(year: int, positives: int) -> TrainingRows:
        X = pd.DataFrame(rng.normal(size=(300, len(names))), columns=names,
                         index=pd.Index([f"53033{i:06d}" for i in range(300)], name="geoid"))
        y = pd.Series(0, index=X.index)
        y.iloc[:positives] = 1
        return TrainingRows(year, X, y)

    model = train([origin(2005, 0), origin(2006, 0), origin(2007, 12), origin(2008, 15)], names, 7)
    p = model.predict(origin(2009, 0).X)
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    one = train([origin(2005, 1)], names, 7)  # one positive: a stratified fold without it
    assert np.isfinite(one.predict(origin(2006, 0).X)).all()


# ---------------------------------------------------------------- a full or read-only disk


def test_a_full_disk_while_the_model_is_written_is_an_output_error_naming_the_path(rows, tmp_path: Path) -> None:
    from mounts import fill, tmpfs

    from risk.core.errors import OutputError

    model = _model(rows)
    with tmpfs(tmp_path / "models", "256k") as root:
        registry = Registry(root)
        registry.register(model, {"outcome": "eviction_surge"}, "first")
        registry.promote("first")
        fill(root)
        with pytest.raises(OutputError, match=r"cannot write model second to .*models/second") as e:
            registry.register(_model(rows, seed=8), {"outcome": "eviction_surge"}, "second")
        assert e.value.exit_code == 4
        (root / ".filler").unlink()
        assert [r.model_id for r in registry.list()] == ["first"]  # nothing half-written left behind
        assert registry.champion("eviction_surge").model_id == "first"
        assert not [p for p in root.iterdir() if p.name.startswith(".second")]


def test_a_read_only_registry_is_an_output_error_not_a_missing_model(rows, tmp_path: Path) -> None:
    from mounts import tmpfs

    from risk.core.errors import OutputError

    with tmpfs(tmp_path / "models", "1m", readonly=True) as root:
        with pytest.raises(OutputError, match=r"cannot write to the model registry .*models") as e:
            Registry(root).register(_model(rows), {"outcome": "eviction_surge"}, "m")
        assert e.value.exit_code == 4
