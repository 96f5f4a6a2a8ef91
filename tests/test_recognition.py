"""`risk init` recognises each file by its header (issue 21, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from risk.service.scaffold import draft_config
from risk.sources.recognition import known_vintage, recognise

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_tract_table_with_a_wkt_column_is_boundaries_with_its_geometry_column(tmp_path: Path) -> None:
    found = recognise(_write(tmp_path / "tracts.csv", 'GEOID,NAME,shape\n06037980021,9800.21,"POLYGON ((0 0, 1 0, '
                             '1 1, 0 0))"\n'))
    assert found is not None and (found.family, found.format) == ("boundaries", "wkt")
    assert found.columns == {"geoid": "GEOID", "geometry": "shape", "name": "NAME"}
    assert found.counties == {"06037"}


def test_zillow_zip_files_and_the_hud_crosswalk_are_told_apart(tmp_path: Path) -> None:
    zips = recognise(_write(tmp_path / "zori.csv", "RegionID,RegionName,2019-01-31,2019-02-28\n1,98101,1,2\n"))
    walk = recognise(_write(tmp_path / "walk.csv", "ZIP,TRACT,RES_RATIO\n98101,53033008100,0.5\n"))
    assert zips is not None and (zips.family, zips.format) == ("rent", "zillow_zip")
    assert walk is not None and walk.family == "crosswalk" and walk.counties == {"53033"}


def test_a_zillow_zip_file_without_a_crosswalk_leaves_rent_out_and_says_why(tmp_path: Path) -> None:
    _write(tmp_path / "zori.csv", "RegionID,RegionName,2019-01-31\n1,98101,1\n")
    draft = draft_config(tmp_path)
    assert "format: none" in draft.text and any("crosswalk" in n for n in draft.notes)
    assert any("no outcome can be labelled" in n for n in draft.notes)


def test_a_file_of_no_known_format_is_listed_as_not_recognised(tmp_path: Path) -> None:
    _write(tmp_path / "notes.csv", "a,b\n1,2\n")
    assert recognise(tmp_path / "notes.csv") is None
    assert draft_config(tmp_path).unknown == [tmp_path / "notes.csv"]


def test_vintage_suffixes_become_releases_and_the_newest_knows_its_successor() -> None:
    assert known_vintage("90").shares_over_one == "drop"  # type: ignore[union-attr]
    acs = known_vintage("17", newest=True)
    assert acs is not None and (acs.label, acs.released, acs.next_release) == ("ACS 2013-2017", "2018-12-06",
                                                                              "2019-12-19")
    assert known_vintage("17").next_release is None  # type: ignore[union-attr]
    assert known_vintage("06") is None  # ACS 5-year estimates begin with 2005-2009


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is beside the checkout in CI")
def test_the_udp_typology_output_and_census_tables_of_shared_data_are_recognised() -> None:
    seattle = recognise(SHARED / "udp/Seattle/Seattle_typology_output.csv")
    boston = recognise(SHARED / "udp/Boston/Bostoncensus_summ_2018.csv")
    lab = recognise(SHARED / "evictions/WA/evictionlab_v1_tracts_WA.csv")
    assert seattle is not None and (seattle.family, seattle.format) == ("demographics", "udp_typology_output")
    assert {"53033", "53053", "53061"} <= seattle.counties
    assert boston is not None and boston.format == "census_tables" and boston.suffixes[-1] == "18"
    assert lab is not None and (lab.family, lab.format) == ("evictions", "evictionlab")
