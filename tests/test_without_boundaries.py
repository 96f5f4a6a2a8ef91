"""A region without tract boundaries still runs: its tracts are those its sources name, its spatial features are
missing, its e-mails carry no map and the pages list it without one; boundaries may also be a WKT column.

The world is synthetic (``risk synth``: 400 tracts in two counties, one county per region); region 2's
boundaries are left out of the configuration.
"""

from __future__ import annotations

import email
from datetime import date
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from world import World, two_region_world

from risk.core.errors import DataValidationError
from risk.core.settings import BoundariesSource, RegionSettings, Settings, load_settings
from risk.service.pipeline import RunResult, run
from risk.service.regions import load_project, project_features
from risk.sources import collect, load_sources
from risk.sources._tables import ProblemLog
from risk.sources.boundaries import load_boundaries, tract_number

AS_OF = date(2017, 3, 1)
ONE, TWO = "Synthetic region 1", "Synthetic region 2"


@pytest.fixture(scope="module")
def half_mapped(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    def unmapped(config: dict) -> None:
        del config["regions"][1]["sources"]["boundaries"]  # region 2 has no tract polygons,
        config["regions"][1]["sources"].pop("permits", None)  # so no permits either: they are placed by coordinates

    return two_region_world(tmp_path_factory.mktemp("unmapped"), 5, unmapped, [
        {"name": "Region two team", "email": "two@example.org", "areas": [TWO]},
        {"name": "Region one team", "email": "one@example.org", "areas": [ONE]}])


@pytest.fixture(scope="module")
def weekly(half_mapped: Settings) -> RunResult:
    return run(half_mapped, as_of=AS_OF)


def test_tracts_of_a_region_without_boundaries_are_those_its_sources_name(half_mapped: Settings) -> None:
    two = half_mapped.regional()[1]
    sources, problems = collect(two)
    assert sources is not None and not [p for p in problems if p.severity == "error"]
    named = set(sources.demographics["geoid"]) | set(sources.evictions["geoid"])
    assert set(sources.tracts.index) == named and sources.tracts.geometry.isna().all()
    assert all(g.startswith("06003") for g in named)
    assert any(p.file == "sources.boundaries" and "no boundaries are configured" in p.message for p in problems)
    geoid = sources.tracts.index[0]
    assert sources.tracts.loc[geoid, "name"] == tract_number(geoid)


def test_spatial_features_are_missing_only_where_there_are_no_boundaries(half_mapped: Settings) -> None:
    project = load_project(half_mapped)
    features = project_features(project, AS_OF)
    one, two = (features.loc[r.sources.tracts.index] for r in project.regions)
    lags = [c for c in features.columns if c.startswith("nbr_")]
    assert lags, "the world's config keeps spatial lags on"
    assert two[lags].isna().all().all()
    assert one[lags].notna().any().all()


def test_the_weekly_run_scores_every_tract_and_mails_region_two_without_a_map(half_mapped: Settings,
                                                                              weekly: RunResult) -> None:
    assert weekly.tracts == 400
    assert any("no boundaries are configured" in n for n in weekly.data_notes)
    messages = {m["To"]: m for m in (email.message_from_bytes(p.read_bytes())
                                     for p in Path(half_mapped.delivery.outbox_dir).glob("*.eml"))}
    images = {to: [p.get("Content-ID") for p in m.walk() if p.get_content_maintype() == "image"]
              for to, m in messages.items()}
    assert "<map>" not in images['"Region two team" <two@example.org>']
    assert "<map>" in images['"Region one team" <one@example.org>']
    # every e-mail carries the model's track record in one sentence
    text = next(p.get_payload(decode=True).decode() for p in messages['"Region two team" <two@example.org>'].walk()
                if p.get_content_type() == "text/plain")
    assert "How far to trust this list:" in text and "In tests on" in " ".join(text.split())


@pytest.fixture(scope="module")
def planner(half_mapped: Settings, weekly: RunResult) -> TestClient:
    from web_support import csrf_of

    from risk.web import accounts, create_app

    engine = accounts.open_database(half_mapped.paths.database)
    accounts.add_user(engine, "pat", "planner", "planner-password-1", actor="test")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RISK_WEB_SECRET", "test-secret-key-that-is-long-enough-0123456789")
        client = TestClient(create_app(half_mapped), raise_server_exceptions=False)
    token = csrf_of(client.get("/login").text)
    client.post("/login", data={"name": "pat", "password": "planner-password-1", "next": "/", "csrf_token": token})
    return client


def test_the_review_page_lists_unmapped_tracts_and_maps_the_others(half_mapped: Settings,
                                                                   planner: TestClient) -> None:
    from risk.web.geo import load_geography

    geography = load_geography(half_mapped)
    assert set(geography.shapes) == {g for g in geography.names if g.startswith("06001")}
    assert geography.bounds is not None
    page = planner.get("/?tier=all")
    assert page.status_code == 200
    assert "200 tracts of regions without boundaries are listed only" in page.text
    assert "<th>Region</th>" in page.text and f"<td>{TWO}</td>" in page.text
    shapes = planner.get("/map/tracts.geojson").json()["features"]
    assert {f["id"][:5] for f in shapes} == {"06001"}
    geoid = next(g for g in geography.names if g.startswith("06003"))
    tract = planner.get(f"/tracts/{geoid}")
    assert tract.status_code == 200 and 'id="track-record"' in tract.text and "In tests on" in tract.text


def test_the_model_page_gives_each_regions_figures(planner: TestClient) -> None:
    page = planner.get("/model")
    assert page.status_code == 200
    section = page.text[page.text.index('id="regions"'):]
    section = section[:section.index("</table>")]
    assert f"<td>{ONE}</td>" in section and f"<td>{TWO}</td>" in section
    assert "passes" in section or "fails" in section
    assert "Features chosen:" in page.text


def test_a_wkt_column_reads_as_the_same_boundaries(world: World, tmp_path: Path) -> None:
    region = RegionSettings(county_fips=("53033",))
    shapes = gpd.read_file(world.boundaries)
    table = pd.DataFrame({"GEOID": shapes["GEOID"], "NAME": shapes["NAME"], "wkt": shapes.geometry.to_wkt()})
    path = tmp_path / "tracts.csv"
    table.to_csv(path, index=False)
    log = ProblemLog("boundaries")
    got = load_boundaries(BoundariesSource(path=path, geometry_column="wkt", crs="EPSG:4326"), region, log)
    expected = load_boundaries(BoundariesSource(path=world.boundaries), region, ProblemLog("boundaries"))
    assert got is not None and expected is not None and not log.items
    assert list(got.index) == list(expected.index)
    assert got.geometry.geom_equals_exact(expected.geometry, tolerance=1e-9).all()


def test_a_broken_wkt_value_is_named_by_line_and_column(world: World, tmp_path: Path) -> None:
    shapes = gpd.read_file(world.boundaries)
    wkt = shapes.geometry.to_wkt().tolist()
    wkt[2] = "POLYGON ((oops"
    path = tmp_path / "tracts.csv"
    pd.DataFrame({"GEOID": shapes["GEOID"], "wkt": wkt}).to_csv(path, index=False)
    log = ProblemLog("boundaries")
    load_boundaries(BoundariesSource(path=path, geometry_column="wkt"), RegionSettings(county_fips=("53033",)), log)
    broken = [p for p in log.items if p.severity == "error"]
    assert broken and broken[0].line == 4 and broken[0].column == "wkt" and "not WKT geometry" in broken[0].message


def test_permits_without_boundaries_are_refused_by_name(world: World) -> None:
    config = yaml.safe_load(world.config.read_text())
    del config["sources"]["boundaries"]
    world.config.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(DataValidationError) as caught:
        load_sources(load_settings(world.config))
    refused = [p for p in caught.value.problems if p.family == "permits"]
    assert refused and "no tract boundaries" in refused[0].message


@pytest.mark.parametrize(("geoid", "number"), [("53033980021", "9800.21"), ("53033005600", "56"),
                                                ("06037000100", "1"), ("06037101110", "1011.10")])
def test_a_tract_is_named_by_its_number_as_the_census_writes_it(geoid: str, number: str) -> None:
    assert tract_number(geoid) == number
