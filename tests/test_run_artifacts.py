"""Every reader of the newest run (the CLI, the review pages, the pipeline's previews) reads it through
:mod:`risk.service.artifacts`, so all of them see the same run and the same files."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from jobproc import job_config

from risk.cli.main import main
from risk.core.errors import NoRunYet
from risk.core.settings import load_settings
from risk.core.store import engine_for
from risk.service.artifacts import features_path, read_newest_run
from risk.service.pipeline import latest_outputs, run
from risk.web.data import WebData


@pytest.mark.slow
def test_the_cli_the_web_and_the_pipeline_all_read_the_second_of_two_runs_and_its_features_file(
        tmp_path: Path, trained_job: Path) -> None:
    config = job_config(tmp_path)
    shutil.copytree(trained_job / "models", tmp_path / "models")  # a champion: neither run retrains
    settings = load_settings(config)
    web = WebData(settings, engine_for(settings.paths.database))
    with pytest.raises(NoRunYet, match="no scoring run in the database yet"):
        web.latest()

    first = run(settings, as_of=date(2018, 3, 5))
    assert web.latest().run_id == first.run_id
    second = run(settings, as_of=date(2018, 3, 12))
    assert first.run_id is not None and second.run_id is not None and second.run_id > first.run_id

    newest = read_newest_run(settings)
    assert newest.run_id == second.run_id
    assert newest.features_path == features_path(settings, date(2018, 3, 12)) == second.features_path
    assert newest.features is not None and newest.record is not None
    assert newest.record.model_id == second.model_id

    # the pages, which kept the first run, move to the second and then keep it
    view = web.latest()
    assert view.run_id == second.run_id and view.stored.features_path == second.features_path
    assert web.latest() is view

    run_id, outputs, _ = latest_outputs(settings)
    assert run_id == second.run_id and outputs.as_of == date(2018, 3, 12)
    assert outputs.features.equals(newest.features)

    geoid = str(newest.scores.index[0])
    explained = CliRunner().invoke(main, ["--config", str(config), "explain", geoid])
    assert explained.exit_code == 0, explained.output
    assert f"(run {second.run_id}, as of 2018-03-12, model {second.model_id})" in explained.output
    preview = CliRunner().invoke(main, ["--config", str(config), "alerts", "preview",
                                        "--out", str(tmp_path / "preview")])
    assert preview.exit_code == 0, preview.output
    assert preview.output.startswith(f"run {second.run_id}: ")
