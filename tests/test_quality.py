"""Source quality checks: known traps of the real files are named, sound data is left alone, labels that would read
excluded data are dropped."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from risk.core.settings import (
    DemographicsSource,
    EvictionSurgeSettings,
    LowIncomeLossSettings,
    RegionSettings,
    load_settings,
)
from risk.outcomes.base import Origin
from risk.outcomes.eviction_surge import EvictionSurge
from risk.outcomes.exclusions import apply_exclusions, surge_years
from risk.outcomes.low_income_loss import LowIncomeLoss
from risk.sources import Sources, collect
from risk.sources._tables import ProblemLog
from risk.sources.demographics import empty_long, load_udp_database
from risk.sources.quality import (
    BREAK,
    CONSTANT,
    JUMP,
    SWAP,
    CountyYear,
    Exclusions,
    VintageMeasure,
    check_quality,
)

DATA = ROOT.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "udp").exists(), reason="../shared/data is not beside the checkout")
NO_TRACTS = gpd.GeoDataFrame({"geoid": []}, geometry=[], crs="EPSG:4326")
VINTAGES = [
    {"suffix": "90", "label": "Census 1990", "released": "1992-08-01", "medians_reliable": False,
     "shares_over_one": "drop"},
    {"suffix": "00", "label": "Census 2000", "released": "2002-08-01", "medians_reliable": False,
     "shares_over_one": "drop"},
    {"suffix": "12", "label": "ACS 2008-2012", "released": "2013-12-17"},
    {"suffix": "18", "label": "ACS 2014-2018", "released": "2019-12-19"},
]


def _udp(metro: str) -> Sources:
    """A UDP metro's database through the demographics loader, every tract of the file known."""
    path = next((DATA / "udp" / metro).glob("*_typology_output.csv"), None) or \
        next((DATA / "udp" / metro).glob("*_database_2018.csv"))
    geoids = pd.read_csv(path, usecols=["GEOID"], dtype={"GEOID": str})["GEOID"].str.zfill(11)
    region = RegionSettings(name=metro, county_fips=tuple(sorted(geoids.str[:5].unique())))
    log = ProblemLog("demographics")
    cfg = DemographicsSource.model_validate({"format": "udp_database", "path": str(path), "vintages": VINTAGES})
    loaded = load_udp_database(cfg, region, pd.Index(geoids), "utf-8", log)
    assert not log.has_errors, log.items[:3]
    return Sources(tracts=NO_TRACTS, demographics=loaded.long)


def _eviction_lab(path: Path, counties: tuple[str, ...] | None = None) -> Sources:
    """Tract-year filings of an Eviction Lab CSV, read with pandas (the Ohio files' shifted columns repaired)."""
    head = pd.read_csv(path, nrows=0).columns.tolist()
    if head[0].startswith("Unnamed"):  # re-saved with an index, and the quoted parent location split in two
        raw = pd.read_csv(path, header=None, skiprows=1, dtype=str)
        names = [*head[:5], "parent-location-2", *head[5:]]
        raw = raw.iloc[:, :len(names)].set_axis(names[:raw.shape[1]], axis=1)
    else:
        raw = pd.read_csv(path, dtype={"GEOID": str})
    ev = pd.DataFrame({"geoid": raw["GEOID"].astype(str).str.zfill(11), "year": raw["year"].astype(int),
                       "filings": pd.to_numeric(raw["eviction-filings"]), "judgments": pd.to_numeric(raw["evictions"]),
                       "renters": pd.to_numeric(raw["renter-occupied-households"])})
    ev["available"] = pd.to_datetime(ev["year"].astype(str) + "-12-31")
    if counties is not None:
        ev = ev[ev["geoid"].str[:5].isin(counties)]
    return Sources(tracts=NO_TRACTS, demographics=empty_long(), evictions=ev.reset_index(drop=True))


def _national() -> pd.DataFrame:
    return pd.read_csv(DATA / "evictions" / "US" / "evictionlab_v1_nonimputed_counties_US.csv", dtype={"GEOID": str})


def _coded(problems: list, code: str, column: str | None = None) -> list:
    return [p for p in problems if p.message.startswith(f"{code}:") and column in (None, p.column)]


def _years(excluded: Exclusions, county: str) -> list[int]:
    return sorted(excluded.years_of(county))


def _without_1990(sources: Sources) -> Sources:
    d = sources.demographics
    return dataclasses.replace(sources, demographics=d[d["vintage"].astype(str) != "Census 1990"])


# --- demographics: implausible jumps ----------------------------------------------------------------------------

@needs_data
def test_atlanta_low_income_jump_between_2000_and_2018_is_named() -> None:
    problems, excluded = check_quality(_udp("Atlanta"), "Atlanta")
    jumps = [p for p in _coded(problems, JUMP, "low_income_households") if "ACS 2014-2018" in p.message]
    assert len(jumps) == 1
    p = jumps[0]
    assert p.severity == "warning" and p.family == "demographics" and p.file == "Atlanta"
    assert "Atlanta" in p.message and "Census 2000" in p.message and "+119%" in p.message
    # 2000 is to blame (its threshold gives 23% of households as low-income; by construction about 40%)
    assert excluded.vintage_reason("Census 2000", "low_income_households")
    assert excluded.vintage_reason("Census 2000", "low_income_share")
    assert excluded.vintage_reason("ACS 2014-2018", "low_income_households") is None


@needs_data
@pytest.mark.parametrize("metro", ["Atlanta", "Riverside", "SanBernardino"])
def test_median_low_income_share_of_2000_against_2018_is_named(metro: str) -> None:
    problems, excluded = check_quality(_udp(metro), metro)
    shares = [p for p in _coded(problems, JUMP, "low_income_share") if "ACS 2014-2018" in p.message]
    assert len(shares) == 1
    moved = re.search(r"share moved (\d\.\d+) -> (\d\.\d+)", shares[0].message)
    assert moved is not None and float(moved[1]) < 0.31 and 0.38 < float(moved[2]) < 0.41
    assert excluded.vintage_reason("Census 2000", "low_income_share")
    assert excluded.vintage_reason("ACS 2014-2018", "low_income_share") is None


def test_king_1990_low_income_count_is_flagged_as_the_crosswalk_trap(bundled_sources: Sources) -> None:
    """UDP's 1990 threshold comes from medians the crosswalk shrank: 1990 low-income households come out half."""
    problems, excluded = check_quality(bundled_sources, "King County, WA")
    assert {(p.column, p.message.split(":")[0]) for p in problems} == {
        ("low_income_households", JUMP), ("low_income_share", JUMP)}
    assert all("Census 1990" in p.message and "Census 2000" in p.message for p in problems)
    assert {(v.vintage, v.measure) for v in excluded.vintages} == {
        ("Census 1990", "low_income_households"), ("Census 1990", "low_income_share")}
    assert not excluded.county_years


def test_a_clean_region_gets_no_quality_warning(bundled_sources: Sources) -> None:
    """King County without its 1990 low-income counts: vintages, Eviction Lab demographics and filings pass."""
    problems, excluded = check_quality(_without_1990(bundled_sources), "King County, WA")
    assert problems == [] and excluded == Exclusions()


@needs_data
@pytest.mark.parametrize("metro", ["Cleveland", "Seattle"])
def test_sound_udp_vintages_pass(metro: str) -> None:
    sources = _udp(metro)
    if metro == "Seattle":  # its 1990 low-income counts carry King's crosswalk trap
        sources = _without_1990(sources)
    assert check_quality(sources, metro) == ([], Exclusions())


# --- demographics: swapped and constant columns ------------------------------------------------------------------

@needs_data
@pytest.mark.parametrize("metro", ["Riverside", "Monterey", "SanLuisObispo", "SantaBarbara", "SantaCruz", "Ventura"])
def test_california_1990_renter_owner_swap_is_named(metro: str) -> None:
    problems, excluded = check_quality(_udp(metro), metro)
    swaps = _coded(problems, SWAP, "renter_share")
    assert len(swaps) == 1 and "Census 1990" in swaps[0].message and metro in swaps[0].message
    for measure in ("renter_share", "renter_households", "housing_units"):
        assert excluded.vintage_reason("Census 1990", measure), measure
    assert excluded.vintage_reason("Census 2000", "renter_share") is None
    # the swap is the news: the jump it causes between 1990 and 2000 is not reported again
    assert not _coded(problems, JUMP, "renter_share")


@needs_data
def test_california_1990_nonwhite_share_is_named_constant() -> None:
    problems, excluded = check_quality(_udp("Ventura"), "Ventura")
    constant = _coded(problems, CONSTANT, "nonwhite_share")
    assert len(constant) == 1 and "Census 1990" in constant[0].message and "0 in 172 of 172" in constant[0].message
    assert excluded.vintage_reason("Census 1990", "nonwhite_share")
    assert excluded.vintage_reason("Census 2000", "nonwhite_share") is None


def _long(values: dict[str, np.ndarray], measure: str) -> pd.DataFrame:
    released = {"Census 1990": "1992-08-01", "Census 2000": "2002-08-01", "ACS 2014-2018": "2019-12-19"}
    return pd.concat([pd.DataFrame({"geoid": [f"53033{i:06d}" for i in range(len(v))], "measure": measure,
                                    "value": v, "vintage": label, "released": pd.Timestamp(released[label])})
                      for label, v in values.items()], ignore_index=True)


def test_a_mirrored_share_is_blamed_on_the_vintage_its_neighbour_disagrees_with() -> None:
    rng = np.random.default_rng(1)
    share = rng.uniform(0.1, 0.7, 60)
    demo = _long({"Census 1990": 1 - share, "Census 2000": share + rng.normal(0, 0.02, 60),
                  "ACS 2014-2018": share + rng.normal(0, 0.04, 60)}, "renter_share")
    problems, excluded = check_quality(Sources(tracts=NO_TRACTS, demographics=demo), "Test")
    assert [p.message.split(":")[0] for p in problems] == [SWAP]
    assert {v.vintage for v in excluded.vintages} == {"Census 1990"}


def test_counts_growing_like_a_boom_town_pass_and_beyond_it_are_named() -> None:
    base = np.random.default_rng(2).uniform(500, 3000, 40).round()
    steady = _long({"Census 1990": base, "Census 2000": base * 1.40}, "households")  # +40% in ten years
    assert check_quality(Sources(tracts=NO_TRACTS, demographics=steady), "Test") == ([], Exclusions())
    boom = _long({"Census 1990": base, "Census 2000": base * 1.60}, "households")
    problems, excluded = check_quality(Sources(tracts=NO_TRACTS, demographics=boom), "Test")
    assert [p.column for p in _coded(problems, JUMP)] == ["households"]
    assert {v.vintage for v in excluded.vintages} == {"Census 1990", "Census 2000"}  # either may be at fault


# --- court coverage -------------------------------------------------------------------------------------------

MA = DATA / "evictions" / "MA" / "evictionlab_v1_tracts_MA.csv"
OH = DATA / "evictions" / "OH"


@needs_data
@pytest.mark.parametrize("panel", [False, True], ids=["own history", "with the state panel"])
def test_suffolk_court_coverage_break_is_named(panel: bool) -> None:
    sources = _eviction_lab(MA, ("25025", "25017"))
    problems, excluded = check_quality(sources, "Boston", _national() if panel else None)
    levels = [p for p in _coded(problems, BREAK, "filings") if "off the county's level" in p.message]
    assert {p.message.split("county ")[1][:5] for p in levels} == {"25025", "25017"}
    suffolk = next(p for p in levels if "county 25025" in p.message)
    assert "2012 +143%" in suffolk.message and suffolk.file == "Boston" and suffolk.family == "evictions"
    # every label window that straddles 2012 reads an excluded year of both counties
    for county in ("25025", "25017"):
        years = _years(excluded, county)
        assert (2011 in years) != (2012 in years), (county, years)
    # the years without records are no coverage, not zero filings
    assert {2003, 2004, 2005, 2006, 2007} <= set(_years(excluded, "25025"))
    assert any("25025" in p.message and "2003-2007" in p.message for p in _coded(problems, BREAK))


@needs_data
@pytest.mark.parametrize(("file", "county"), [("cleveland", "39035"), ("columbus", "39049")])
def test_ohio_2014_dip_is_named(file: str, county: str) -> None:
    sources = _eviction_lab(OH / f"evictionlab_v1_tracts_{file}_past.csv")
    problems, excluded = check_quality(sources, file, _national())
    assert any(f"county {county}" in p.message and "2014 -" in p.message for p in _coded(problems, BREAK))
    years = _years(excluded, county)
    assert 2014 in years and 2015 not in years and 2013 not in years


@needs_data
def test_south_carolina_partial_first_year_and_one_year_dip_are_excluded() -> None:
    sources = _eviction_lab(DATA / "evictions" / "SC" / "evictionlab_v1_tracts_SC.csv", ("45063", "45083", "45079"))
    problems, excluded = check_quality(sources, "SC", _national())
    # the state's 2010 rise is no excuse: 2009 is every county's first year, partial, so it measures no state trend
    assert any("county 45063" in p.message and "filings in 2009" in p.message for p in problems)
    assert _years(excluded, "45063") == list(range(2000, 2010))  # 2000-2008 not covered, 2009 a partial year
    assert any("county 45083" in p.message and "filings in 2013" in p.message for p in problems)
    assert 2013 in _years(excluded, "45083") and 2014 not in _years(excluded, "45083")
    assert not any("county 45079" in p.message for p in problems)  # Richland: a steady decline


@needs_data
def test_dc_missing_years_are_no_coverage_not_zero() -> None:
    problems, excluded = check_quality(_eviction_lab(DATA / "evictions" / "DC" / "evictionlab_v1_tracts_DC.csv"), "DC")
    assert len(problems) == 1 and "2013-2015" in problems[0].message and "county 11001" in problems[0].message
    assert _years(excluded, "11001") == [*range(2000, 2006), 2013, 2014, 2015]
    assert "no filings reported" in excluded.years_of("11001")[2014]


@needs_data
def test_a_gradual_decline_is_not_a_break() -> None:
    """San Diego's filings halve between 2010 and 2016, never by more than a fifth in one year."""
    path = DATA / "evictions" / "CA_SanDiego" / "evictionlab_v1_tracts_SanDiego_06073.csv"
    assert check_quality(_eviction_lab(path), "San Diego", _national()) == ([], Exclusions())


def _county_panel(levels: dict[str, list[float]], years: range) -> pd.DataFrame:
    return pd.DataFrame([{"county": c, "year": y, "filings": v} for c, row in levels.items() for y, v in zip(years, row)])


def _tract_filings(county: str, totals: list[float], years: range) -> Sources:
    rows = [{"geoid": f"{county}{t:06d}", "year": y, "filings": v / 4, "judgments": 0.0, "renters": 500.0}
            for y, v in zip(years, totals) for t in range(4)]
    ev = pd.DataFrame(rows).assign(available=lambda f: pd.to_datetime(f["year"].astype(str) + "-12-31"))
    return Sources(tracts=NO_TRACTS, demographics=empty_long(), evictions=ev)


def test_a_statewide_change_is_not_a_break_when_the_state_panel_is_given() -> None:
    """A moratorium halves every county's filings in one year: the state's other counties show it was real."""
    years = range(2010, 2020)
    level = [1000.0] * 6 + [500.0] * 4
    sources = _tract_filings("41001", level, years)
    assert _coded(check_quality(sources, "Test")[0], BREAK)  # alone, it looks like a court that stopped reporting
    panel = _county_panel({c: [2.0 * v for v in level] for c in ("41003", "41005", "41007", "41009")}, years)
    assert check_quality(sources, "Test", panel) == ([], Exclusions())


# --- applying exclusions to labels ------------------------------------------------------------------------------

def test_eviction_surge_drops_tracts_whose_county_reads_an_excluded_year() -> None:
    outcome = EvictionSurge(EvictionSurgeSettings(baseline_years=6, horizon_years=3), 60)
    labels = pd.DataFrame({"y": [1, 0, 0]}, index=pd.Index(["25025000100", "25025000200", "25017000100"],
                                                            name="geoid"))
    excluded = Exclusions(county_years=(CountyYear("25025", 2012, f"{BREAK}: filings off the county's level"),))
    at_2010 = Origin(2010, pd.Timestamp("2011-03-01").date(), pd.Timestamp("2014-03-01").date())
    assert surge_years(outcome, at_2010) == list(range(2005, 2014))
    kept, reasons = apply_exclusions(outcome, Sources(tracts=NO_TRACTS, demographics=empty_long()), at_2010, labels,
                                     excluded)
    assert list(kept.index) == ["25017000100"]
    assert len(reasons) == 1 and "2 tracts of county 25025" in reasons[0] and "2012" in reasons[0]
    at_2005 = Origin(2005, pd.Timestamp("2006-03-01").date(), pd.Timestamp("2009-03-01").date())  # reads 2000-2008
    kept, reasons = apply_exclusions(outcome, Sources(tracts=NO_TRACTS, demographics=empty_long()), at_2005, labels,
                                     excluded)
    assert kept.equals(labels) and reasons == []


def test_low_income_loss_origin_with_an_excluded_vintage_is_dropped_whole(bundled_sources: Sources) -> None:
    outcome = LowIncomeLoss(LowIncomeLossSettings())
    _, excluded = check_quality(bundled_sources, "King County, WA")
    first, second = outcome.origins(bundled_sources)
    assert (first.year, second.year) == (1990, 2000)
    labels = outcome.label(bundled_sources, first)
    kept, reasons = apply_exclusions(outcome, bundled_sources, first, labels, excluded)
    assert kept.empty and len(labels) > 0
    assert len(reasons) == 1 and "Census 1990 low_income_households" in reasons[0] and JUMP in reasons[0]
    later = outcome.label(bundled_sources, second)
    kept, reasons = apply_exclusions(outcome, bundled_sources, second, later, excluded)
    assert kept.equals(later) and reasons == []


def test_exclusions_add_up_without_repeating_and_name_every_reason() -> None:
    a = Exclusions(county_years=(CountyYear("25025", 2012, "one"),), vintages=(VintageMeasure("v", "m", "x"),))
    b = Exclusions(county_years=(CountyYear("25025", 2012, "one"), CountyYear("25025", 2012, "two")))
    both = a + b
    assert len(both.county_years) == 2 and both.years_of("25025") == {2012: "one; two"}
    assert both.vintage_reason("v", "m") == "x" and both.vintage_reason("v", "other") is None


# --- the loaders, end to end --------------------------------------------------------------------------------------

@needs_data
def test_boston_counties_through_the_loaders_name_the_2012_court_breaks(tmp_path: Path) -> None:
    boston = DATA / "udp" / "Boston"
    config = tmp_path / "config.yaml"
    config.write_text(f"""
region: {{name: "Boston", county_fips: ["25025", "25017"]}}
sources:
  boundaries: {{path: "{DATA / 'boundaries' / 'cb_2018_25_tract_500k.shp'}"}}
  demographics:
    format: census_tables
    tables:
      - {{path: "{boston / 'xwalk_Bostoncensus_90_10.csv'}",
         vintage: {{suffix: "90", label: "Census 1990", released: 1992-08-01}}}}
      - {{path: "{boston / 'xwalk_Bostoncensus_00_10.csv'}",
         vintage: {{suffix: "00", label: "Census 2000", released: 2002-08-01}}}}
  evictions: {{path: "{MA}"}}
""", encoding="utf-8")
    sources, _ = collect(load_settings(config))  # the state file's own row problems do not stop these counties
    assert sources is not None and sources.evictions is not None and not sources.demographics.empty
    problems, excluded = check_quality(sources, "Boston", _national())
    assert not _coded(problems, JUMP) and not _coded(problems, SWAP) and not _coded(problems, CONSTANT)
    levels = [p for p in _coded(problems, BREAK) if "off the county's level" in p.message]
    assert {p.message.split("county ")[1][:5] for p in levels} == {"25025", "25017"}
    assert not excluded.vintages
