"""Two regions in one project: features, labels and alerts stay within their region, and a region without
labels of its own is scored by the model trained on the other.

The world is synthetic (``risk synth``, 400 tracts in two counties, one county per region). Region 2 has no
eviction file, so it has no eviction_surge labels.
"""

from __future__ import annotations

import email
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from world import two_region_world

from risk.core.settings import Settings
from risk.core.store import engine_for, latest_run
from risk.features.build import build_features
from risk.model.pooled import run_pooled_backtest
from risk.outcomes.registry import outcome_for
from risk.service.artifacts import model_registry
from risk.service.pipeline import RunResult, run
from risk.service.regions import load_project, project_features
from risk.sources import load_sources

AS_OF = date(2017, 3, 1)
ONE, TWO = "Synthetic region 1", "Synthetic region 2"


@pytest.fixture(scope="module")
def two_regions(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    def no_evictions(config: dict) -> None:
        del config["regions"][1]["sources"]["evictions"]  # region 2 publishes no eviction counts

    return two_region_world(tmp_path_factory.mktemp("regions"), 3, no_evictions, [
        {"name": "Region two team", "email": "two@example.org", "areas": [TWO]},
        {"name": "Everyone", "email": "all@example.org", "areas": ["all"]}])


@pytest.fixture(scope="module")
def weekly(two_regions: Settings) -> RunResult:
    return run(two_regions, as_of=AS_OF)


def test_each_region_keeps_its_own_sources(two_regions: Settings) -> None:
    project = load_project(two_regions)
    assert [r.name for r in project.regions] == [ONE, TWO]
    for r in project.regions:
        assert set(r.sources.tracts.index.str[:5]) == set(r.settings.region.county_fips)
    assert project.regions[1].sources.evictions is None
    assert set(project.sources.tracts["region"]) == {ONE, TWO}


def test_features_compare_a_tract_with_its_own_region(two_regions: Settings) -> None:
    project = load_project(two_regions)
    features = project_features(project, AS_OF)
    for r in project.regions:
        own = features.loc[r.sources.tracts.index]
        alone = build_features(r.sources, AS_OF, r.settings.features)
        pd.testing.assert_frame_equal(own, alone.loc[own.index], check_like=True)
        # a difference from the region's median is zero at the region's median tract, not the project's
        assert own["low_income_share_vs_region"].median() == pytest.approx(0.0, abs=1e-12)
    pooled_median = features["low_income_share"].median()
    per_region = [features.loc[r.sources.tracts.index, "low_income_share"].median() for r in project.regions]
    assert any(abs(m - pooled_median) > 1e-6 for m in per_region)


def test_labels_follow_their_own_region_and_a_region_without_them_is_left_out(two_regions: Settings) -> None:
    project = load_project(two_regions)
    bt = run_pooled_backtest(two_regions, project.regions, "eviction_surge")
    assert set(bt.preds["region"]) == {ONE}
    doc = bt.to_json()
    assert doc["regions"][TWO]["models"] is None and "no labels" in doc["regions"][TWO]["note"]
    assert doc["leave_one_region_out"] is None  # one region with labels: nothing to hold out against
    # region 1's labels are those of region 1 alone: the pooled project changes nothing about them
    one = two_regions.regional()[0]
    alone = load_sources(one)
    outcome = outcome_for("eviction_surge", one)
    for year, group in bt.preds.groupby("origin"):
        origin = next(o for o in outcome.origins(alone) if o.year == year)
        labels = outcome.label(alone.known_at(origin.closes, outcome.reads), origin)["y"]
        got = group.set_index("geoid")["y"]
        assert (labels.reindex(got.index) == got).all()
    assert doc["model_choice"]["chosen"] in doc["model_choice"]["candidates"]


def test_a_region_without_labels_is_scored_by_the_model_trained_on_the_other(two_regions: Settings,
                                                                            weekly: RunResult) -> None:
    assert weekly.tracts == 400
    record = model_registry(two_regions).get(weekly.model_id)
    notes = record.metadata["region_notes"]
    assert len(notes) == 1 and notes[0].startswith(f"{TWO}: no usable labels")
    assert f"scored by the model trained on {ONE}" in notes[0]
    assert any(n.startswith(f"{TWO}: no usable labels") for n in weekly.data_notes)
    row = latest_run(engine_for(two_regions.paths.database))
    assert any(TWO in n for n in row["notes"])


def test_tiers_rank_a_tract_among_its_own_region(two_regions: Settings, weekly: RunResult) -> None:
    from risk.core.store import run_scores

    scores = run_scores(engine_for(two_regions.paths.database), weekly.run_id)
    for county in ("06001", "06003"):
        own = scores[scores.index.str.startswith(county)]
        assert own["percentile"].max() == pytest.approx(1.0)
        assert np.isclose(own["percentile"].rank(pct=True), own["percentile"]).all()


def test_alerts_stay_within_their_region(two_regions: Settings, weekly: RunResult) -> None:
    outbox = Path(two_regions.delivery.outbox_dir)
    messages = [email.message_from_bytes(p.read_bytes()) for p in outbox.glob("*.eml")]
    by_person = {m["To"]: m for m in messages}
    two = by_person['"Region two team" <two@example.org>']
    assert two["Subject"].startswith(f"{TWO}:")
    text = next(p.get_payload(decode=True).decode() for p in two.walk() if p.get_content_type() == "text/plain")
    tracts = set(re.findall(r"\b06\d{9}\b", text))
    assert tracts and all(g.startswith("06003") for g in tracts)
    assert f"{ONE}: " not in text  # none of region 1's data notes (region 2's note names the model's region)
    assert f"scored by the model trained on {ONE}" in text.replace("\r\n", " ").replace("  ", " ")
    everyone = by_person['"Everyone" <all@example.org>']
    assert everyone["Subject"].startswith(f"{ONE} and {TWO}:")


def test_a_second_pooled_backtest_on_the_same_files_reuses_every_piece_of_work(two_regions: Settings,
                                                                              tmp_path: Path) -> None:
    import json

    settings = two_regions.model_copy(update={"paths": two_regions.paths.model_copy(
        update={"cache": tmp_path / "cache"})})
    first = run_pooled_backtest(settings, load_project(settings).regions, "eviction_surge").to_json()
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    kinds = {name.rsplit("-", 1)[0] for name in entries}
    assert {"features", "labels", "null", "pooled-predict", "pooled-figures"} <= kinds
    again = run_pooled_backtest(settings, load_project(settings).regions, "eviction_surge").to_json()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == entries  # nothing recomputed
    assert json.dumps(again, sort_keys=True, default=str) == json.dumps(first, sort_keys=True, default=str)


def test_every_regions_validated_families_are_reused_by_the_next_weekly_load(two_regions: Settings,
                                                                             tmp_path: Path) -> None:
    from risk.service.regions import load_regions

    settings = two_regions.model_copy(update={"paths": two_regions.paths.model_copy(
        update={"cache": tmp_path / "cache"})})
    load_regions(settings, AS_OF, reuse=True)
    stored = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith("source-"))
    # one entry per family and region: a region's entry does not supersede the other region's
    assert len([n for n in stored if n.startswith("source-demographics-")]) == 2
    again = load_regions(settings, AS_OF, reuse=True)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith("source-")) == stored
    fresh = load_regions(settings, AS_OF)
    for a, b in zip(again, fresh, strict=True):
        pd.testing.assert_frame_equal(a.sources.demographics, b.sources.demographics)
