"""A recipient who follows an area that matches no tract is refused, by name, before anyone is muted silently."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import bundled_config_copy

from risk.alerts.recipients import check_recipients, load_recipients
from risk.cli.main import main
from risk.core.errors import ConfigError
from risk.core.settings import Settings, load_settings
from risk.sources import Sources

TYPO = """
alerts:
  recipients:
    - {name: "Housing team", email: "housing@example.org", areas: [all]}
    - {name: "Seattle planners", email: "planners@example.org", areas: ["Seatle", "53033"]}
    - {name: "One tract", email: "tract@example.org", areas: ["53033999999"]}
  areas_file: """


def _typo_settings(folder: Path) -> Settings:
    text = bundled_config_copy(folder).read_text()
    head = text[:text.index("\nalerts:")]
    tail = text[text.index("\nschedule:"):]
    areas = Path(__file__).resolve().parents[1] / "data/sample/king/areas.geojson"
    (folder / "config.yaml").write_text(head + TYPO + str(areas) + "\n" + tail)
    return load_settings(folder / "config.yaml")


def test_every_area_that_matches_no_tract_is_named_with_its_recipient_and_line(
        tmp_path: Path, bundled_sources: Sources) -> None:
    settings = _typo_settings(tmp_path)
    with pytest.raises(ConfigError) as caught:
        check_recipients(settings, load_recipients(settings.alerts), bundled_sources.tracts)
    issues = caught.value.issues
    assert [i.key for i in issues] == ["alerts.recipients.1.areas", "alerts.recipients.2.areas"]
    assert "Seattle planners <planners@example.org> follows 'Seatle'" in issues[0].message
    assert "One tract <tract@example.org> follows '53033999999'" in issues[1].message
    assert all(i.line for i in issues)


def test_the_bundled_recipients_all_follow_real_tracts(bundled_settings: Settings, bundled_sources: Sources) -> None:
    check_recipients(bundled_settings, load_recipients(bundled_settings.alerts), bundled_sources.tracts)


def test_config_check_refuses_a_recipient_area_typo_with_exit_code_2(tmp_path: Path) -> None:
    settings = _typo_settings(tmp_path)
    result = CliRunner().invoke(main, ["--config", str(settings.config_path), "config", "check"])
    assert result.exit_code == 2, result.output
    assert "follows 'Seatle', which matches no tract" in result.output
    assert "Traceback" not in result.output


def test_a_run_refuses_a_recipient_area_typo_before_any_stage_and_stores_nothing(tmp_path: Path) -> None:
    settings = _typo_settings(tmp_path)
    result = CliRunner().invoke(main, ["--config", str(settings.config_path), "run"])
    assert result.exit_code == 2, result.output
    assert "Seattle planners <planners@example.org> follows 'Seatle'" in result.output
    assert not list((tmp_path / "models").glob("*/model.txt"))
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").iterdir())
