"""Readable tract names: the tract's number, then the named area it lies in or else its county (issue 21,
item 7)."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
from pydantic import ValidationError

from risk.alerts.messages import tract_names
from risk.core.settings import RegionSettings, Settings
from risk.sources import Sources, load_sources


def test_an_eviction_lab_files_parent_location_names_the_county_of_every_tract(bundled_sources: Sources) -> None:
    assert set(bundled_sources.tracts["county"]) == {"King County"}


def test_a_tract_outside_every_named_area_is_named_with_its_county() -> None:
    tracts = gpd.GeoDataFrame({"name": ["9800.21", "317.05", "12"], "county": ["Los Angeles County", "King County",
                                                                              pd.NA]},
                              index=pd.Index(["06037980021", "53033031705", "53033001200"], name="geoid"))
    names = tract_names(tracts, {"Seattle": {"53033031705"}})
    assert names == {"06037980021": "Census tract 9800.21, Los Angeles County",
                     "53033031705": "Census tract 317.05 (Seattle)", "53033001200": "Census tract 12"}


def test_configured_county_names_come_before_the_files(bundled_settings: Settings) -> None:
    region = bundled_settings.region.model_copy(update={"county_names": {"53033": "King County, Washington"}})
    sources = load_sources(bundled_settings.model_copy(update={"region": region}))
    assert set(sources.tracts["county"]) == {"King County, Washington"}


def test_a_county_name_for_a_county_outside_the_region_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match=r"county_names names counties that are not in county_fips: \['06037'\]"):
        RegionSettings(county_fips=("53033",), county_names={"06037": "Los Angeles County"})
