"""Shared fixtures: a small real-format world, the bundled sample and the full shared data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from world import World, make_world  # noqa: E402

from risk.core.settings import Settings, load_settings  # noqa: E402
from risk.sources import Sources, load_sources  # noqa: E402

if TYPE_CHECKING:
    from fastapi import FastAPI
    from web_support import WebState

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "seattle"
SHARED_CONFIG = ROOT / "examples" / "king-county-shared.yaml"
BUNDLED_CONFIG = ROOT / "config.yaml"

needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside the checkout")


@pytest.fixture
def world(tmp_path: Path) -> World:
    """A fresh, valid world in a temporary folder (files may be changed by the test)."""
    return make_world(tmp_path / "world")


@pytest.fixture(scope="session")
def world_sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    """Loaded sources of an untouched world, shared by read-only tests."""
    w = make_world(tmp_path_factory.mktemp("world-ro"))
    return load_sources(load_settings(w.config))


@pytest.fixture(scope="session")
def bundled_settings() -> Settings:
    """The default config.yaml on the bundled sample."""
    return load_settings(BUNDLED_CONFIG)


@pytest.fixture(scope="session")
def bundled_sources(bundled_settings: Settings) -> Sources:
    """The bundled King County sample, loaded once."""
    return load_sources(bundled_settings)


@pytest.fixture(scope="session")
def shared_sources() -> Sources:
    """The full King County files in ../shared/data, Zillow included."""
    assert SHARED.exists(), "tests using shared_sources must be marked needs_shared"
    return load_sources(load_settings(SHARED_CONFIG))


def bundled_config_copy(folder: Path, extra: str = "") -> Path:
    """The bundled config.yaml in ``folder`` (so state goes there), its data paths made absolute."""
    text = BUNDLED_CONFIG.read_text().replace(": data/", f": {ROOT}/data/")
    config = folder / "config.yaml"
    config.write_text(text + extra)
    return config


@pytest.fixture(scope="session")
def trained_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the weekly job ran once on the bundled data (quick backtest): copy its ``models``
    folder to start another job with a champion that needs no retraining."""
    from jobproc import job_config

    from risk.service.pipeline import run

    folder = tmp_path_factory.mktemp("trained-job")
    run(load_settings(job_config(folder)))
    return folder


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> WebState:
    """For the web tests: the job's database with its users (built once per session)."""
    from web_support import build_state

    return build_state(tmp_path_factory)


@pytest.fixture(scope="module")
def app(state: WebState) -> FastAPI:
    """For the web tests: a fresh app over that database per test module."""
    from web_support import app_for

    return app_for(state)
