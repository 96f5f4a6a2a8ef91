"""config.yaml: loaded once, frozen, every problem named by section, key and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from world import World

from risk.cli.main import main
from risk.core.errors import ConfigError
from risk.core.settings import describe_keys, load_settings


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_paths_resolve_against_the_config_folder_not_the_working_folder(world: World, monkeypatch) -> None:
    monkeypatch.chdir("/")
    s = load_settings(world.config)
    assert s.paths.database == str(world.root / "state" / "risk.sqlite")
    assert s.sources.evictions is not None and s.sources.evictions.path == world.evictions


def test_settings_are_frozen(world: World) -> None:
    s = load_settings(world.config)
    with pytest.raises(ValidationError):
        s.region.name = "elsewhere"  # type: ignore[misc]


def test_unknown_key_is_named_with_its_line_and_a_suggestion(world: World) -> None:
    _replace(world.config, "    available_after_days: 60", "    available_after_dayz: 60")
    with pytest.raises(ConfigError) as e:
        load_settings(world.config)
    (issue,) = e.value.issues
    assert issue.key == "sources.evictions.available_after_dayz"
    assert issue.line == 20
    assert "did you mean 'available_after_days'" in issue.message


def test_every_config_problem_is_reported_at_once(world: World) -> None:
    _replace(world.config, 'county_fips: ["53033"]', 'county_fips: ["5303"]')
    _replace(world.config, "available_after_days: 60", "available_after_days: soon")
    _replace(world.config, "path: udp.csv", "path: missing.csv")
    with pytest.raises(ConfigError) as e:
        load_settings(world.config)
    keys = {i.key for i in e.value.issues}
    assert keys == {"region.county_fips", "sources.evictions.available_after_days", "sources.demographics.path"}
    messages = {i.key: i.message for i in e.value.issues}
    assert "file not found" in messages["sources.demographics.path"]


def test_yaml_syntax_error_names_the_line(world: World) -> None:
    world.config.write_text("region:\n  name: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_settings(world.config)
    assert e.value.issues[0].line is not None


def test_format_needs_its_files(world: World) -> None:
    _replace(world.config, "    format: zillow_tract\n    path: zillow_tract.csv", "    format: zillow_zip\n    path: zillow_zip.csv")
    with pytest.raises(ConfigError) as e:
        load_settings(world.config)
    assert e.value.issues[0].key == "sources.rent"
    assert "needs `crosswalk`" in e.value.issues[0].message


def test_config_check_exits_2_with_one_line_per_problem(world: World) -> None:
    _replace(world.config, "    available_after_days: 60", "    available_after_days: -5")
    result = CliRunner().invoke(main, ["--config", str(world.config), "config", "check"])
    assert result.exit_code == 2
    assert "sources.evictions.available_after_days (line 20): Input should be greater than or equal to 0" in result.stderr
    assert "Traceback" not in result.output


def test_config_check_prints_the_effective_config_with_defaults(world: World) -> None:
    result = CliRunner().invoke(main, ["--config", str(world.config), "config", "check"])
    assert result.exit_code == 0, result.output
    assert "max_filings_per_renter_household: 10.0" in result.stdout
    assert str(world.root / "state" / "risk.sqlite") in result.stdout


def test_config_comes_from_the_environment_when_no_option(world: World) -> None:
    result = CliRunner().invoke(main, ["config", "check"], env={"RISK_CONFIG": str(world.config)})
    assert result.exit_code == 0, result.output
    assert str(world.config) in result.stdout


def test_missing_config_file_is_a_config_error() -> None:
    result = CliRunner().invoke(main, ["--config", "/nonexistent/config.yaml", "validate"])
    assert result.exit_code == 2
    assert "config file not found" in result.stderr


def test_every_key_has_help_text() -> None:
    rows = describe_keys()
    keys = {k for k, _, _ in rows}
    assert {"region.county_fips", "sources.evictions.available_after_days", "paths.database"} <= keys
    assert all(help_text for _, _, help_text in rows), [k for k, _, h in rows if not h]


def test_the_bundled_config_is_valid() -> None:
    s = load_settings(Path(__file__).resolve().parents[1] / "config.yaml")
    assert s.sources.rent.format == "none"  # the bundle carries no Zillow data


def test_the_database_may_be_any_sqlalchemy_url(world: World) -> None:
    _replace(world.config, "  database: state/risk.sqlite", "  database: postgresql://risk@db.example/risk")
    assert load_settings(world.config).paths.database == "postgresql://risk@db.example/risk"


def test_a_yaml_alias_bomb_is_refused_at_once_with_exit_2(world: World) -> None:
    import time

    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    world.config.write_text(world.config.read_text() + "\nbomb:\n" + "\n".join("  " + x for x in lines) + "\n")
    started = time.monotonic()
    result = CliRunner().invoke(main, ["--config", str(world.config), "config", "check"])
    assert result.exit_code == 2, result.output
    assert "(aliases)" in result.output and "20,000" in result.output
    assert time.monotonic() - started < 5  # expanded, this file would hold 10^9 strings


def test_a_few_yaml_aliases_within_the_limit_still_work(world: World) -> None:
    text = world.config.read_text().replace("region:", "x-shared: &fips [\"53033\"]\nregion:", 1)
    world.config.write_text(text.replace('county_fips: ["53033"]', "county_fips: *fips"))
    with pytest.raises(ConfigError) as e:  # the anchor's own key is unknown; the alias itself is fine
        load_settings(world.config)
    assert [i.key for i in e.value.issues] == ["x-shared"]


def test_a_cron_expression_that_never_fires_is_refused(world: World) -> None:
    world.config.write_text(world.config.read_text() + '\nschedule:\n  cron: "0 0 30 2 *"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(world.config)
    (issue,) = e.value.issues
    assert issue.key == "schedule.cron" and "never fires" in issue.message and issue.line is not None


def test_a_cron_expression_firing_only_on_leap_days_is_accepted(world: World) -> None:
    world.config.write_text(world.config.read_text() + '\nschedule:\n  cron: "0 0 29 2 *"\n')
    assert load_settings(world.config).schedule.cron == "0 0 29 2 *"
