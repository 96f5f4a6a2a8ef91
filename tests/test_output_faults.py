"""A disk that cannot take the new model ends `risk run` with exit 4 naming the path, and keeps what was good."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jobproc import job_config
from mounts import tmpfs

from risk.core.settings import load_settings
from risk.model.registry import Registry

RISK = Path(sys.executable).with_name("risk")


def _job_reusing_the_backtest(folder: Path, trained_job: Path) -> Path:
    """A job whose work cache holds the trained job's backtest, so only the registry write is left to fail."""
    config = job_config(folder)
    shutil.copytree(trained_job / "state" / "cache", folder / "state" / "cache")
    return config


@pytest.mark.slow
@pytest.mark.parametrize("disk", ["read-only", "full"])
def test_a_model_that_cannot_be_written_ends_the_run_with_exit_4_naming_the_path(
        tmp_path: Path, trained_job: Path, disk: str) -> None:
    config = _job_reusing_the_backtest(tmp_path / "job", trained_job)
    models = tmp_path / "job" / "models"
    before = sorted(p.name for p in (trained_job / "models").iterdir())
    size = "16k" if disk == "full" else "1m"  # 16k holds the champion pointer, not a model file
    with tmpfs(models, size, readonly=disk == "read-only") as root:
        done = subprocess.run([str(RISK), "--config", str(config), "run", "--as-of", "2018-03-05"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 4, done.stderr
        assert "cannot write" in done.stderr and str(root) in done.stderr
        assert "Traceback" not in done.stderr and "no model" not in done.stderr
        assert [p.name for p in root.iterdir() if not p.name.startswith(".filler")] == []
    assert sorted(p.name for p in (trained_job / "models").iterdir()) == before
    assert Registry(load_settings(config).paths.models).list() == []
