"""examples/regions.yaml on the real files of ../shared/data: every artefact the data's README names is reported
by name (region, county, column, years), and nothing stops the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from risk.core.settings import load_settings
from risk.sources.validation import validate

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "regions.yaml"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the checkout")


@pytest.fixture(scope="module")
def messages() -> list[str]:
    report = validate(load_settings(EXAMPLE))
    assert report.ok, [str(p) for p in report.errors]
    return [str(p) for p in report.warnings]


def _named(messages: list[str], *parts: str) -> bool:
    return any(all(p in m for p in parts) for m in messages)


CALIFORNIA_UDP = ("Riverside County", "San Bernardino County", "Imperial County", "Ventura County",
                  "Monterey County", "San Luis Obispo County", "Santa Barbara County", "Santa Cruz County")


def test_every_region_of_the_example_is_read(messages: list[str]) -> None:
    report = validate(load_settings(EXAMPLE))
    assert len({f.region for f in report.families}) == 21
    # South Carolina, San Diego and the California UDP regions have no boundary file: their sources name the tracts
    unmapped = [m for m in messages if "no boundaries are configured" in m]
    assert len(unmapped) == 3 + len(CALIFORNIA_UDP)  # and New Hampshire


def test_the_california_artefacts_are_named(messages: list[str]) -> None:
    assert _named(messages, "geoid_leading_zero_restored", "SanDiego_06073.csv")
    for region in CALIFORNIA_UDP:
        # the 1990 renter and owner counts swapped, the 1990 non-white share never filled
        assert _named(messages, "swapped_columns", region, "renter_share", "Census 1990")
        assert _named(messages, "constant_column", region, "nonwhite_share", "Census 1990")
    # UDP's 2000 low-income threshold, inconsistent with 2018's
    for region in ("Riverside County", "San Bernardino County"):
        assert _named(messages, "implausible_vintage_jump", region, "low_income_households", "Census 2000",
                      "ACS 2014-2018")


def test_the_known_artefacts_are_named(messages: list[str]) -> None:
    assert _named(messages, "implausible_vintage_jump", "Atlanta metro", "low_income_households", "Census 2000",
                  "ACS 2014-2018")
    assert _named(messages, "court_coverage_break", "Massachusetts", "county 25025", "2012-2016")  # Suffolk
    assert _named(messages, "court_coverage_break", "Massachusetts", "county 25017")  # Middlesex
    assert _named(messages, "court_coverage_break", "Cleveland metro", "county 39035", "2014")
    assert _named(messages, "court_coverage_break", "Columbus (Franklin County)", "2014")
    assert _named(messages, "court_coverage_break", "District of Columbia", "2013-2015")
    for city in ("cleveland", "cincinnati", "columbus"):
        assert _named(messages, "shifted_fields_repaired", f"tracts_{city}_past.csv")


def test_clean_counties_are_not_flagged(messages: list[str]) -> None:
    for county in ("53033", "53053", "39061"):  # King, Pierce, Hamilton: no coverage break
        assert not _named(messages, "court_coverage_break", f"county {county}")


def test_eviction_labs_low_flag_is_counted_over_the_regions_rows(messages: list[str]) -> None:
    wa = [m for m in messages if "evictionlab_v1_tracts_WA.csv" in m and "low-flag" in m]
    assert len(wa) == 2  # Seattle metro and the rest of Washington, each its own count
    totals = sorted(int(m.split("of the region's ")[1].split(" ")[0]) for m in wa)
    assert sum(totals) <= 24786 and totals[0] < totals[1]
