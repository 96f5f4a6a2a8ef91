"""The source-family registry: one record per family, and every stage loops over the registry.

A family defined here, in the test alone (its loader, its settings section, its record), is loaded, cut at
an as-of date, fingerprinted by the work cache, judged fresh or stale, listed on the model page and in the
e-mails' credits, and validated, without any module of the package naming it.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict
from world import GEOIDS, World

from risk.alerts.messages import attribution
from risk.core.errors import DataValidationError, StaleDataError
from risk.core.settings import Settings, load_settings
from risk.features.build import build_features
from risk.model.cache import WorkCache
from risk.service.freshness import assess, default_as_of, required_sources
from risk.sources import Sources, input_files, load_sources
from risk.sources._tables import (
    check_geoids,
    keep_in_region,
    read_table,
    to_date,
    to_number,
)
from risk.sources.family import Context, Family, known_rows
from risk.sources.registry import dated, families, register, registered, unregister
from risk.sources.validation import validate
from risk.web.modelinfo import data_sources

CREDIT = "Asking rents: the test's own listings file."


class ListingsSource(BaseModel):
    """The test family's settings section; a real family's would sit under ``sources`` in the settings tree."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    available_after_days: int = 7
    max_age_days: int = 90
    required: bool = False


def load_listings(c: Context[ListingsSource]) -> pd.DataFrame | None:
    """Asking rents per tract, each known a week after it was posted; every problem goes to the log."""
    table = read_table(c.section.path, c.log, encoding=c.encoding, required=("GEOID", "posted", "asking_rent"),
                       dtype={"GEOID": str})
    if table is None:
        return None
    geoids = check_geoids(table, "GEOID", c.log)
    posted = to_date(table, "posted", c.log, today=c.today)
    rent = to_number(table, "asking_rent", c.log)
    keep = keep_in_region(table, geoids, "GEOID", c.known, c.region.county_fips, c.region.ignore_geoids, c.log)
    keep &= posted.notna().to_numpy()
    return pd.DataFrame({"geoid": geoids[keep].to_numpy(), "posted": posted[keep].to_numpy(),
                         "asking_rent": rent[keep].to_numpy(),
                         "known": (posted[keep] + pd.Timedelta(days=c.section.available_after_days)).to_numpy()})


def listings(path: Path, **options: object) -> Family[ListingsSource]:
    """The test family's record: everything the stages need to know about it."""
    section = ListingsSource(path=path, **options)
    return Family(name="listings", load=load_listings, section=lambda _settings: section, files=lambda cfg: [cfg.path],
                  attribution=CREDIT, known="known", max_age=lambda cfg: cfg.max_age_days)


def _write(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("GEOID,posted,asking_rent\n" + "".join(f"{g},{d},{r}\n" for g, d, r in rows), encoding="utf-8")
    return path


ROWS = [(GEOIDS[0], "2018-01-15", "1500"), (GEOIDS[1], "2018-06-15", "1600"), (GEOIDS[0], "2019-01-15", "1550")]
"""Known on 2018-01-22, 2018-06-22 and 2019-01-22."""


def _freshness(settings: Settings, sources: Sources, as_of: date) -> list[str]:
    return assess(settings, sources, build_features(sources, as_of, settings.features), as_of, None).stale


def test_an_extra_family_defined_in_a_test_is_loaded_dated_cut_and_reported_without_touching_other_modules(
        world: World, tmp_path: Path) -> None:
    settings = load_settings(world.config)
    csv = _write(tmp_path / "listings.csv", ROWS)
    with registered(listings(csv)):
        sources = load_sources(settings)
        assert len(sources.table("listings")) == 3
        assert csv in input_files(settings)

        # cut at the as-of date by the date each record became known, not the date it describes
        assert len(sources.known_at(date(2018, 6, 21)).table("listings")) == 1
        assert len(sources.known_at(date(2018, 6, 22)).table("listings")) == 2
        assert sources.known_at(date(2018, 6, 22), ["evictions"]).table("listings") is None

        # fresh until 90 days after its newest record became known, then stale
        assert "listings" not in _freshness(settings, sources, date(2019, 4, 22))
        assert "listings" in _freshness(settings, sources, date(2019, 4, 23))

        # the work cache's fingerprint sees a revision of a record known by the day, and none known later
        day = date(2018, 12, 31)
        table = sources.table("listings")
        later = table.assign(asking_rent=table["asking_rent"].where(table["known"] <= pd.Timestamp(day), 9999.0))
        earlier = table.assign(asking_rent=table["asking_rent"].where(table["known"] > pd.Timestamp(day), 9999.0))
        base = WorkCache(tmp_path / "cache", settings, sources).known(day)
        assert [entry[:2] for entry in base if entry[0] == "listings"] == [["listings", 2]]
        assert WorkCache(tmp_path / "cache", settings, sources.with_tables({"listings": later})).known(day) == base
        assert WorkCache(tmp_path / "cache", settings, sources.with_tables({"listings": earlier})).known(day) != base

        # the model page and the e-mails credit it
        (row,) = [r for r in data_sources(settings, sources, date(2019, 3, 1)) if r["family"] == "listings"]
        assert row["files"] == ["listings.csv"] and row["attribution"] == CREDIT
        assert row["newest"] == date(2019, 1, 22) and row["status"] == "fresh" and row["limit_days"] == 90
        assert attribution(settings)[-1] == CREDIT

        # and the validation summary reports its rows, tracts and span
        (summary,) = [f for f in validate(settings).families if f.family == "listings"]
        assert (summary.rows, summary.tracts, summary.first, summary.last) == (3, 2, "2018-01-22", "2019-01-22")

    assert "listings" not in [f.name for f in families()]
    assert load_sources(settings).tables == {}
    assert CREDIT not in attribution(settings)


def test_a_required_extra_family_holds_back_the_default_date_and_fails_the_run_when_stale(
        world: World, tmp_path: Path) -> None:
    settings = load_settings(world.config)
    with registered(listings(_write(tmp_path / "listings.csv", ROWS), required=True)):
        sources = load_sources(settings)
        assert "listings" in required_sources(settings)
        assert default_as_of(sources, required_sources(settings), date(2021, 1, 1)) == date(2019, 4, 22)
        with pytest.raises(StaleDataError, match="listings: stale, newest record 2019-01-22"):
            _freshness(settings, sources, date(2019, 4, 23))


def test_validation_reports_every_problem_of_an_extra_family_with_its_file_and_line(
        world: World, tmp_path: Path) -> None:
    settings = load_settings(world.config)
    csv = _write(tmp_path / "listings.csv", [*ROWS, ("123", "2019-02-01", "1400"), (GEOIDS[2], "soon", "x")])
    with registered(listings(csv)):
        report = validate(settings)
        with pytest.raises(DataValidationError):
            load_sources(settings)
    found = {(p.family, p.line, p.column) for p in report.errors if p.file.endswith("listings.csv")}
    assert found == {("listings", 5, "GEOID"), ("listings", 6, "posted"), ("listings", 6, "asking_rent")}
    assert [f.family for f in report.families] == ["boundaries", "demographics", "evictions", "rent", "permits",
                                                   "listings"]


def test_a_family_name_is_registered_once_and_the_built_in_families_stay(world: World, tmp_path: Path) -> None:
    extra = listings(tmp_path / "listings.csv")
    with registered(extra), pytest.raises(ValueError, match="already registered"):
        register(extra)
    with pytest.raises(ValueError, match="built-in"):
        unregister("rent")
    with pytest.raises(ValueError, match="needs a max_age"):
        Family(name="undated", load=load_listings, section=lambda _s: None, files=lambda _c: [], attribution="",
               known="known")
    assert [f.name for f in families()] == ["boundaries", "demographics", "evictions", "rent", "permits"]


def test_each_family_row_selection_keeps_only_records_known_at_the_date(world_sources: Sources) -> None:
    t = pd.Timestamp(date(2016, 6, 30))
    for family in dated():
        frame = world_sources.table(family.name)
        assert frame is not None and not frame.empty, family.name
        known = known_rows(frame, str(family.known), t)
        kept = family.rows(frame, t) if family.rows is not None else known
        assert 0 < len(kept) <= len(known) and kept.index.isin(known.index).all(), family.name


def test_the_newest_vintage_is_not_stale_until_its_successor_is_due(world: World) -> None:
    import yaml

    config = yaml.safe_load(world.config.read_text())
    vintages = config["sources"]["demographics"]["vintages"]
    vintages[-1]["next_release"] = "2020-12-10"  # ACS 2015-2019, due the December after
    config["sources"]["demographics"].update(max_age_days=30, late_release_days=60)
    world.config.write_text(yaml.safe_dump(config, sort_keys=False))
    settings = load_settings(world.config)
    sources = load_sources(settings)
    # a year and a half after its release, far past max_age_days: still the newest release there is
    assert "demographics" not in _freshness(settings, sources, date(2021, 2, 1))
    late = assess(settings, sources, build_features(sources, date(2021, 3, 1), settings.features),
                  date(2021, 3, 1), None)
    assert "demographics" in late.stale
    assert any("was due on 2020-12-10" in n for n in late.notes)
