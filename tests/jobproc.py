"""`risk run` in a separate process that a test can SIGKILL at a named crash point.

Processes come from a forkserver that has imported the CLI once, so each run
starts in milliseconds instead of the seconds that importing pandas,
LightGBM and SHAP takes; each is still a real process of its own, killed
with a real SIGKILL.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from conftest import BUNDLED_CONFIG, ROOT

from risk.core.crashpoints import POINT_ENV, SIGNAL_ENV

_CTX = mp.get_context("forkserver")
_CTX.set_forkserver_preload(["risk.cli.main", "risk.service.pipeline", "risk.model.backtest", "risk.model.training"])


def _child(config: str, args: list[str], env: dict[str, str]) -> None:
    os.environ.update(env)
    from risk.cli.main import main

    main(["--config", config, *args])


@dataclass(frozen=True)
class Outcome:
    """How a run ended: killed at the point, or exited with a code."""

    killed: bool
    exit_code: int | None


def run_until(config: Path, args: list[str], point: str | None, signal_file: Path, timeout: float = 240) -> Outcome:
    """Run `risk ARGS`; with ``point``, SIGKILL the process once it reports reaching that crash point."""
    signal_file.unlink(missing_ok=True)
    env = {POINT_ENV: point, SIGNAL_ENV: str(signal_file)} if point else {}
    proc = _CTX.Process(target=_child, args=(str(config), args, env))
    proc.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if point and signal_file.exists() and signal_file.read_text() == point:
            proc.kill()
            proc.join()
            return Outcome(True, None)
        if not proc.is_alive():
            proc.join()
            return Outcome(False, proc.exitcode)
        time.sleep(0.02)
    proc.kill()
    proc.join()
    raise TimeoutError(f"risk {' '.join(args)} did not reach {point or 'its end'} within {timeout} s")


def job_config(folder: Path, *, delivery: dict[str, Any] | None = None, recipients: list[dict] | None = None,
               sections: dict[str, dict[str, Any]] | None = None) -> Path:
    """The bundled config in ``folder`` (state goes there) with absolute data paths, a quicker backtest (same
    code path), one SHAP picture per digest, and the given delivery, recipients and section overrides."""
    data = yaml.safe_load(BUNDLED_CONFIG.read_text())
    for key in ("boundaries", "demographics", "evictions"):
        data["sources"][key]["path"] = str(ROOT / data["sources"][key]["path"])
    permits = data["sources"]["permits"]
    permits["files"] = [{**f, "path": str(ROOT / f["path"])} for f in permits["files"]]
    permits["coverage_tracts"] = str(ROOT / permits["coverage_tracts"])
    data["alerts"].update({"areas_file": str(ROOT / data["alerts"]["areas_file"]), "top_waterfalls": 1})
    if recipients is not None:
        data["alerts"]["recipients"] = recipients
    data["model"].update({"bootstrap": 50, "null_simulations": 5})
    data["delivery"] = {"outbox_dir": "outbox", "backoff_s": 0, "max_attempts": 2, **(delivery or {})}
    for section, values in (sections or {}).items():
        data.setdefault(section, {}).update(values)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
