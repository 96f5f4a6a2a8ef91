"""A source whose coordinates or coverage break is an error for that source, and nothing trained on it is promoted."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner
from jobproc import job_config
from world import World

from risk.cli.main import main
from risk.core.errors import DataValidationError
from risk.core.settings import load_settings
from risk.core.store import engine_for, latest_run
from risk.model.registry import Registry
from risk.service.pipeline import run

SHIFT = 51.4
"""Degrees east that move the test world from Seattle (-122.4) to about -71: there, latitude and longitude
exchanged are both still in range, as in any city east of 90 degrees west."""


def _validate(config: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["--config", str(config), "validate", "--json"])
    return result.exit_code, json.loads(result.output)


def _shift_east(world: World) -> None:
    tracts = gpd.read_file(world.boundaries)
    tracts["geometry"] = tracts.translate(xoff=SHIFT)
    world.boundaries.unlink()
    tracts.to_file(world.boundaries, driver="GeoJSON")
    for path in (world.permits_legacy, world.permits_sdci):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame["Longitude"] = (frame["Longitude"].astype(float) + SHIFT).round(6).astype(str)
        frame.to_csv(path, index=False)


def _errors(report: dict) -> list[dict]:
    return list(report["errors"])


def test_the_shifted_world_is_still_valid(world: World) -> None:
    _shift_east(world)
    code, report = _validate(world.config)
    assert code == 0, _errors(report)


def test_swapped_coordinates_that_stay_in_range_are_an_error_naming_the_file_and_the_swap(world: World) -> None:
    _shift_east(world)
    frame = pd.read_csv(world.permits_sdci, dtype=str, keep_default_na=False)
    frame["Latitude"], frame["Longitude"] = frame["Longitude"].copy(), frame["Latitude"].copy()
    frame.to_csv(world.permits_sdci, index=False)
    code, report = _validate(world.config)
    assert code == 3
    (error,) = _errors(report)
    assert error["file"].endswith("permits_sdci.csv") and error["family"] == "permits"
    assert f"100% of {len(frame)} located permits lie outside every tract" in error["message"]
    assert "look swapped" in error["message"]


def test_a_file_of_another_place_is_an_error_without_a_swap_hint(world: World) -> None:
    frame = pd.read_csv(world.permits_legacy, dtype=str, keep_default_na=False)
    frame["Latitude"] = (frame["Latitude"].astype(float) + 2).astype(str)  # two degrees north: another city
    frame.to_csv(world.permits_legacy, index=False)
    code, report = _validate(world.config)
    assert code == 3
    (error,) = _errors(report)
    assert error["file"].endswith("permits_legacy.csv") and "outside every tract" in error["message"]
    assert "swapped" not in error["message"] and "region's file" in error["message"]


def test_a_few_permits_outside_the_region_stay_a_warning(world: World) -> None:
    frame = pd.read_csv(world.permits_legacy, dtype=str, keep_default_na=False)
    frame.loc[:9, "Latitude"] = "49.5"
    frame.to_csv(world.permits_legacy, index=False)
    code, report = _validate(world.config)
    assert code == 0
    assert any("10 permits lie outside every tract" in p["message"] for p in report["warnings"])


@pytest.mark.slow
def test_a_collapse_of_coverage_since_the_last_run_fails_the_run_and_promotes_nothing(tmp_path: Path,
                                                                                      trained_job: Path) -> None:
    config = job_config(tmp_path)
    shutil.copytree(trained_job / "models", tmp_path / "models")
    settings = load_settings(config)
    first = run(settings, as_of=date(2018, 3, 5))
    champion = Registry(settings.paths.models).champion(settings.model.outcome)
    assert first.coverage["permits"] > 100 and champion is not None
    # the next week's files keep one permit tract in twenty: fresh records, most tracts gone
    permits = settings.sources.permits
    assert permits is not None
    kept = tmp_path / "kept.csv"
    coverage = pd.read_csv(permits.coverage_tracts, dtype=str)
    coverage.iloc[::20].to_csv(kept, index=False)
    text = config.read_text().replace(str(permits.coverage_tracts), str(kept))
    assert text != config.read_text()
    config.write_text(text)
    with pytest.raises(DataValidationError, match=r"permits: tract coverage collapsed from \d+ to \d+"):
        run(load_settings(config), as_of=date(2018, 3, 12))
    result = CliRunner().invoke(main, ["--config", str(config), "run", "--as-of", "2018-03-12"])
    assert result.exit_code == 3 and "coverage collapsed" in result.output and "Traceback" not in result.output
    assert Registry(settings.paths.models).champion(settings.model.outcome).model_id == champion.model_id
    assert latest_run(engine_for(settings.paths.database))["id"] == first.run_id
