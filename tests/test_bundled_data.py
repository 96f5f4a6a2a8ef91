"""End to end on the real data: the bundled King County sample and the full files in ../shared/data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import (
    BUNDLED_CONFIG,
    ROOT,
    SHARED,
    SHARED_CONFIG,
    bundled_config_copy,
    needs_shared,
)

from risk.core.settings import DemographicsSource, RegionSettings, Settings
from risk.features.build import build_features
from risk.sources import Sources
from risk.sources._tables import ProblemLog
from risk.sources.demographics import load_census_tables

KING_TRACTS = 397


def _risk(*args: str, cwd: Path = ROOT, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "risk", *(["--config", str(config)] if config else []), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


def test_validate_passes_on_the_bundled_sample() -> None:
    result = _risk("validate", "--json", config=BUNDLED_CONFIG)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    tracts = {f["family"]: f["tracts"] for f in report["families"]}
    assert tracts["boundaries"] == KING_TRACTS and tracts["evictions"] == KING_TRACTS
    assert 120 <= tracts["permits"] <= 135  # the City of Seattle only


@needs_shared
def test_validate_passes_on_the_full_shared_data_with_zillow() -> None:
    result = _risk("validate", "--json", config=SHARED_CONFIG)
    assert result.returncode == 0, result.stderr
    tracts = {f["family"]: f["tracts"] for f in json.loads(result.stdout)["families"]}
    assert tracts["rent"] == KING_TRACTS - 1  # 53033005302 has neither ZHVI nor ZRI


def test_features_for_2015_have_one_row_per_king_county_tract(tmp_path: Path) -> None:
    out = tmp_path / "features.parquet"
    result = _risk("features", "--as-of", "2015-12-31", "--out", str(out), config=BUNDLED_CONFIG)
    assert result.returncode == 0, result.stderr
    f = pd.read_parquet(out)
    assert len(f) == KING_TRACTS and f.index.is_unique
    assert f.index.str.fullmatch(r"53033\d{6}").all()
    assert {"cov_rent_index", "cov_evictions", "cov_permits", "cov_demographics"} <= set(f.columns)
    assert f["cov_evictions"].sum() == KING_TRACTS and f["cov_demographics"].sum() == KING_TRACTS
    assert f["cov_rent_index"].sum() == 0  # no Zillow in the bundle
    city = f["cov_permits"] == 1
    assert 120 <= city.sum() <= 135
    assert f.loc[~city, "permits_new_12m"].isna().all() and f.loc[city, "permits_new_12m"].notna().all()


@needs_shared
def test_bundled_features_match_the_full_data_where_the_bundle_has_the_family(
        bundled_sources: Sources, shared_sources: Sources) -> None:
    a = build_features(bundled_sources, date(2015, 12, 31))
    b = build_features(shared_sources, date(2015, 12, 31))
    zillow = [c for c in a.columns
              if c.removeprefix("nbr_").startswith(("rent_index", "rent_change", "home_value_")) or c == "cov_rent_index"]
    assert a[zillow].drop(columns="cov_rent_index").isna().all().all() and b[zillow].notna().any().all()
    pd.testing.assert_frame_equal(a.drop(columns=zillow), b.drop(columns=zillow))


ARTIFACTS = ROOT / "test-artifacts"


def _screenshot_digest(config: Path, tmp_path: Path) -> None:
    """Render the housing team's digest in headless Chromium to test-artifacts/digest.png, to be looked at."""
    preview = _risk("alerts", "preview", "--out", str(tmp_path / "preview"), config=config)
    assert preview.returncode == 0, preview.stderr
    page = tmp_path / "preview" / "digest-housing_at_example.org.html"
    html = page.read_text()
    assert "cid:" not in html and "Census tract" in html and "Eviction Lab" in html
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "digest.png"
    shot.unlink(missing_ok=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed for this test (.ci/run installs it)"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'chromium'}", "--hide-scrollbars", "--window-size=820,2400",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 50_000


def test_quick_start_run_trains_scores_explains_and_leaves_eml_files(tmp_path: Path) -> None:
    # a copy of the bundled config whose state goes to a temporary folder
    config = bundled_config_copy(tmp_path, "\nmodel: {bootstrap: 50, null_simulations: 5}\n")
    result = _risk("run", "--json", config=config, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "finished" and summary["tracts_scored"] == KING_TRACTS
    assert summary["retrained"] and summary["model_id"].startswith("eviction_surge-")
    assert {"run_id", "status", "as_of", "model_id", "retrained", "tracts_scored", "alerts", "emails_queued",
            "emails_sent", "emails_failed", "stage_seconds", "data_notes"} <= set(summary)
    assert summary["alerts"] > 0 and summary["emails_sent"] == summary["emails_queued"] > 0
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == summary["emails_sent"]
    assert sum(summary["tiers"].values()) == KING_TRACTS and summary["tiers"]["high"] > 0
    assert Path(summary["features_path"]).is_relative_to(tmp_path / "state" / "features")
    assert (tmp_path / "models" / summary["model_id"] / "model.txt").exists()
    assert (tmp_path / "reports" / "backtest-eviction_surge" / "report.html").exists()

    _screenshot_digest(config, tmp_path)

    # a second run reuses the champion and reports changes since the first
    again = json.loads(_risk("run", "--json", config=config, cwd=tmp_path).stdout)
    assert not again["retrained"] and again["model_id"] == summary["model_id"] and again["run_id"] == 2
    assert again["emails_queued"] == 0  # the same week again: nothing is sent twice

    explained = _risk("explain", "53033000100", "--json", "--png", str(tmp_path / "w.png"), config=config)
    assert explained.returncode == 0, explained.stderr
    doc = json.loads(explained.stdout)
    assert set(doc) == {"geoid", "probability", "tier", "base_value", "drivers"}
    assert doc["drivers"] and all(d["sentence"] for d in doc["drivers"])
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"


@needs_shared
def test_raw_acs_table_reproduces_the_udp_database_shares() -> None:
    """The census_tables loader recomputes low-income, renter, non-white and college shares from raw counts."""
    cfg = DemographicsSource.model_validate({"format": "census_tables", "tables": [{
        "path": str(SHARED / "census_acs_2014_2018_raw_seattle.csv"),
        "vintage": {"suffix": "18", "label": "ACS 2014-2018", "released": "2019-12-19"}}]})
    db = pd.read_csv(SHARED / "census_udp_database_1990_2018.csv", dtype={"GEOID": str}, low_memory=False)
    db.index = db["GEOID"].str.zfill(11)
    region = RegionSettings(county_fips=("53033", "53053", "53061"),
                            ignore_geoids=("53033990100", "53061990002", "53061990100"))
    log = ProblemLog("demographics")
    long = load_census_tables(cfg, region, db.index, "utf-8", log)
    assert not log.has_errors, log.items
    wide = long.pivot(index="geoid", columns="measure", values="value")
    for measure, column in (("low_income_share", "per_all_li_18"), ("renter_share", "per_rent_18"),
                            ("nonwhite_share", "per_nonwhite_18"), ("college_share", "per_col_18")):
        ours, theirs = wide[measure], db[column].reindex(wide.index)
        assert np.allclose(ours, theirs, atol=1e-6, equal_nan=True), measure


def test_settings_fixture_points_at_the_bundled_sample(bundled_settings: Settings) -> None:
    assert bundled_settings.sources.boundaries.path.is_relative_to(ROOT / "data" / "sample")
    assert not any("zillow" in str(p).lower() for p in (ROOT / "data").rglob("*"))


def test_unit_features_wait_until_the_application_dated_export_is_complete(bundled_sources: Sources) -> None:
    # the SDCI export is selected by application date: permits issued in 2013-14 are mostly missing from it
    early = build_features(bundled_sources, date(2015, 6, 30))
    later = build_features(bundled_sources, date(2016, 6, 30))
    city = later["cov_permits"] == 1
    assert early.loc[city, "units_added_12m"].isna().all()
    assert later.loc[city, "units_added_12m"].notna().all()
