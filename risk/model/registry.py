"""The model registry in ``models/``: one folder per model and a champion pointer.

A model folder holds the LightGBM text model, its calibration and
``metadata.json`` (config hash, data file hashes, features, training window,
backtest metrics, library versions, creation time). ``champion.json`` names
the current champion and the ones before it, so a rollback is one step. Every
write goes to a temporary path first and is renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import lightgbm as lgb

from risk.core.crashpoints import checkpoint
from risk.core.errors import ModelExistsError, OutputError, RegistryError
from risk.core.files import atomic_path
from risk.model.gbm import TrainedModel

CHAMPION = "champion.json"
LIBRARIES = ("lightgbm", "shap", "pandas", "numpy", "scikit-learn", "geopandas")


@dataclass(frozen=True)
class ModelRecord:
    """A registered model: its id, folder and metadata."""

    model_id: str
    folder: Path
    metadata: dict

    @property
    def outcome(self) -> str:
        """The outcome the model predicts."""
        return str(self.metadata.get("outcome", "unknown"))

    @property
    def pr_auc(self) -> float | None:
        """Backtest PR-AUC of LightGBM, the promotion criterion."""
        value = self.metadata.get("backtest", {}).get("lightgbm", {}).get("pr_auc")
        return None if value is None else float(value)

    def load(self) -> TrainedModel:
        """The trained model."""
        return TrainedModel.load(self.folder)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model."""
    return {name: version(name) for name in LIBRARIES}


class Registry:
    """Models under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _pointers(self) -> dict:
        path = self.root / CHAMPION
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("outcomes", {})
        except (OSError, json.JSONDecodeError, AttributeError) as e:
            raise RegistryError(f"cannot read {path}: {e}") from e

    def _pointer(self, outcome: str) -> dict:
        return self._pointers().get(outcome, {"champion": None, "previous": []})

    def _write_pointer(self, outcome: str, pointer: dict) -> None:
        pointers = self._pointers()
        pointers[outcome] = pointer
        with atomic_path(self.root / CHAMPION) as tmp:
            tmp.write_text(json.dumps({"outcomes": pointers}, indent=2), encoding="utf-8")

    def list(self) -> list[ModelRecord]:
        """Every registered model, oldest first."""
        if not self.root.exists():
            return []
        records = [self._record(p) for p in self.root.iterdir()
                   if p.is_dir() and not p.name.startswith(".") and (p / "metadata.json").exists()]
        return sorted(records, key=lambda r: (r.metadata.get("created", ""), r.model_id))

    def _record(self, folder: Path) -> ModelRecord:
        try:
            meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise RegistryError(f"cannot read {folder / 'metadata.json'}: {e}") from e
        return ModelRecord(folder.name, folder, meta)

    def get(self, model_id: str) -> ModelRecord:
        """One model by id."""
        folder = self.root / model_id
        if not (folder / "metadata.json").exists():
            known = ", ".join(r.model_id for r in self.list()) or "none"
            raise RegistryError(f"no model '{model_id}' in {self.root} (registered: {known})")
        return self._record(folder)

    def champion(self, outcome: str) -> ModelRecord | None:
        """The model that scores an outcome, if any (each outcome has its own champion)."""
        model_id = self._pointer(outcome).get("champion")
        return self.get(model_id) if model_id else None

    def register(self, model: TrainedModel, metadata: dict, model_id: str) -> ModelRecord:
        """Store a model under ``model_id`` (written to a temporary folder, then renamed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / model_id
        if target.exists():
            raise ModelExistsError(f"model '{model_id}' is already registered")
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{model_id}.", dir=self.root))
        except OSError as e:
            raise OutputError(f"cannot write to the model registry {self.root}: {e.strerror or e}") from e
        try:
            try:
                model.save(tmp)
            except lgb.basic.LightGBMError as e:  # LightGBM reports a failed write (a full disk) as its own error
                raise OutputError(f"cannot write model {model_id} to {target}: {e}") from e
            meta = {**metadata, "model_id": model_id, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "libraries": library_versions()}
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
            checkpoint("registry.renaming")
            os.replace(tmp, target)
        except OSError as e:
            raise OutputError(f"cannot write model {model_id} to {target}: {e.strerror or e}") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self._record(target)

    def consider(self, challenger: ModelRecord, tolerance: float) -> tuple[bool, str]:
        """Promote the challenger unless its backtest PR-AUC is worse than the champion's by more than ``tolerance``.

        Only models of the same outcome are compared: PR-AUCs of different outcomes are not comparable."""
        champion = self.champion(challenger.outcome)
        if champion is None:
            self.promote(challenger.model_id)
            return True, "no champion yet"
        if challenger.pr_auc is None or champion.pr_auc is None:
            return False, "a backtest PR-AUC is missing; promote by hand if intended"
        if challenger.pr_auc < champion.pr_auc - tolerance:
            return False, (f"challenger PR-AUC {challenger.pr_auc:.3f} is worse than champion {champion.model_id} "
                           f"({champion.pr_auc:.3f}) by more than {tolerance}")
        self.promote(challenger.model_id)
        return True, f"challenger PR-AUC {challenger.pr_auc:.3f} against champion {champion.pr_auc:.3f}"

    def promote(self, model_id: str) -> ModelRecord:
        """Make a model the champion of its outcome, keeping the previous one for rollback."""
        record = self.get(model_id)
        pointer = self._pointer(record.outcome)
        if pointer.get("champion") and pointer["champion"] != model_id:
            pointer["previous"] = [pointer["champion"], *pointer.get("previous", [])]
        pointer["champion"] = model_id
        self._write_pointer(record.outcome, pointer)
        return record

    def rollback(self, outcome: str) -> ModelRecord:
        """Return an outcome to its previous champion."""
        pointer = self._pointer(outcome)
        previous = pointer.get("previous", [])
        if not previous:
            raise RegistryError(f"no previous {outcome} champion to roll back to")
        pointer["champion"], pointer["previous"] = previous[0], previous[1:]
        self._write_pointer(outcome, pointer)
        return self.get(previous[0])
