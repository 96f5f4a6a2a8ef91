"""Training the production model on every closed origin and registering it as a challenger."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING

from risk.core.errors import ModelExistsError, RegistryError
from risk.core.settings import Settings
from risk.features.dictionary import feature_names, model_feature_names
from risk.model.backtest import Backtest, OriginData, build_panel
from risk.model.gbm import TrainedModel, TrainingRows, train
from risk.model.registry import ModelRecord, Registry
from risk.outcomes.registry import outcome_for
from risk.sources import Sources

if TYPE_CHECKING:
    from risk.model.cache import WorkCache


@dataclass(frozen=True)
class TrainingResult:
    """The registered challenger and what became of it."""

    record: ModelRecord
    promoted: bool
    reason: str


def config_hash(settings: Settings) -> str:
    """Hash of the settings that shape a model (paths excluded: moving a folder does not change a model)."""
    data = settings.model_dump(mode="json", exclude={"config_path", "paths"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


Trainer = Callable[..., TrainedModel]
"""``trainer(rows, features, seed, prior_features=None)``: rows of the closed origins, the model features, the seed
and the prior's columns to a trained model (:func:`risk.model.gbm.train`, or the Dask engine's fit on a
cluster)."""


def _fit(panel: list[OriginData], features: list[str], seed: int, trainer: Trainer,
         cache: WorkCache | None, prior_features: list[str] | None = None) -> TrainedModel:
    """The trainer's model of these rows; reused when the same trainer already fitted the same rows."""
    name = f"{getattr(trainer, '__module__', '')}.{getattr(trainer, '__qualname__', '')}"
    if not all(d.key for d in panel) or name.endswith(".") or "<" in name:
        cache = None  # no content keys to reuse a fit by, or a trainer (partial, lambda) with no stable name
    # a prior on all features is keyed as before, so that fits stored before priors could differ stay valid
    key = (cache.key("fit", name, [d.key for d in panel], features, seed,
                     *([prior_features] if prior_features else [])) if cache else "")
    stored = cache.get(key, TrainedModel.load) if cache else None
    if stored is not None:
        return stored  # type: ignore[return-value]
    rows = [TrainingRows(d.origin.year, d.X, d.labels["y"]) for d in panel]
    model = (trainer(rows, features, seed, prior_features=prior_features) if prior_features
             else trainer(rows, features, seed))
    if cache:
        cache.put(key, model.save)
    return model


def train_and_register(settings: Settings, sources: Sources, as_of: date, backtest: Backtest,
                       trainer: Trainer = train, cache: WorkCache | None = None) -> TrainingResult:
    """Train on the origins closed by ``as_of``, register the model, and promote it if it is not worse."""
    outcome = outcome_for(backtest.outcome, settings)
    features = backtest.features or model_feature_names(settings.features.spatial_lags)
    # the backtest already built every origin's features and labels: reuse them rather than build them twice
    panel = [d for d in (backtest.panel or build_panel(outcome, sources, settings, cache=cache))
             if d.origin.closes <= as_of and len(d.labels)]
    if not panel:
        raise RegistryError(f"{backtest.outcome}: no outcome window has closed by {as_of}; nothing to train on")
    model = _fit(panel, features, settings.model.seed, trainer, cache, backtest.prior_features or None)
    # the prior is part of the model: two models with the same trees and different priors are different models
    text = model.booster.model_to_string() + json.dumps(asdict(model.prior) if model.prior else None)
    model_id = f"{backtest.outcome}-{as_of:%Y%m%d}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    registry = Registry(settings.paths.models)
    report = backtest.to_json()
    metadata = {
        "outcome": backtest.outcome, "as_of": as_of.isoformat(), "config_hash": config_hash(settings),
        # "features" is the feature table the model scores (the pipeline's contract); the model uses a subset
        "data_hashes": sources.file_hashes, "features": feature_names(settings.features.spatial_lags),
        "model_features": features, "prior_features": backtest.prior_features or features,
        "training_origins": [d.origin.year for d in panel],
        "training_window": [panel[0].origin.as_of.isoformat(), panel[-1].origin.closes.isoformat()],
        "training_rows": int(sum(len(d.labels) for d in panel)),
        "positives": int(sum(d.labels["y"].sum() for d in panel)), "scheme": model.scheme,
        "backtest": report["models"], "backtest_origins": backtest.test_origins,
        # what the model page shows beside the pooled table: each region, a new city's figure, the UDP typology
        **{f"backtest_{key}": report.get(key) for key in (
            "regions", "leave_one_region_out", "lightgbm_vs_udp_typology", "null_check", "model_choice")},
        "region_notes": _region_notes(backtest),
    }
    try:
        record = registry.register(model, metadata, model_id)
    except ModelExistsError:
        record = registry.get(model_id)  # the same data and settings gave the same model: keep the first
    promoted, reason = registry.consider(record, settings.model.promotion_tolerance)
    return TrainingResult(record, promoted, reason)


def _region_notes(backtest: Backtest) -> list[str]:
    """One sentence per region the model was not trained on, naming the regions it was trained on."""
    pooled = backtest.pooled
    excluded: dict[str, str] = getattr(pooled, "excluded", {}) if pooled is not None else {}
    if not excluded:
        return []
    trained = [name for name in getattr(pooled, "regions", {}) if name not in excluded]
    return [f"{name}: no usable labels of its own ({why}); its tracts are scored by the model trained on "
            f"{', '.join(trained)}" for name, why in excluded.items()]
