"""The outcome registry: the settings, the CLI and the work cache follow it; the typology reads the sources."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import get_args

import click
import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_CONFIG, bundled_config_copy, needs_shared
from pydantic import ValidationError

from risk.cli.main import main
from risk.core.settings import ModelSettings, OutcomeName, Settings, load_settings
from risk.model.backtest import OriginData, build_panel
from risk.model.cache import WorkCache
from risk.outcomes import registry
from risk.outcomes.registry import OUTCOME_NAMES, OUTCOMES, outcome_for
from risk.outcomes.typology.rules import classify
from risk.outcomes.typology.vintages import vintage_roles
from risk.sources import Sources, load_sources


def test_the_registry_names_exactly_the_outcomes_the_settings_accept() -> None:
    assert OUTCOME_NAMES == get_args(OutcomeName) == tuple(spec.name for spec in OUTCOMES)
    for name in OUTCOME_NAMES:
        assert ModelSettings(outcome=name).outcome == name
    with pytest.raises(ValidationError):
        ModelSettings(outcome="rent_spike")


def _outcome_options(group: click.Group) -> list[click.Option]:
    found = []
    for command in group.commands.values():
        if isinstance(command, click.Group):
            found += _outcome_options(command)
        found += [p for p in command.params if isinstance(p, click.Option) and p.name == "outcome"]
    return found


def test_every_outcome_option_of_the_cli_offers_the_registered_outcomes() -> None:
    options = _outcome_options(main)
    assert len(options) >= 4  # labels, backtest, train, models rollback
    for option in options:
        assert isinstance(option.type, click.Choice)
        assert tuple(option.type.choices) == OUTCOME_NAMES


def test_every_registered_outcome_is_built_as_it_is_declared(bundled_settings: Settings) -> None:
    for spec in OUTCOMES:
        outcome = outcome_for(spec.name, bundled_settings)
        assert (outcome.name, outcome.reads) == (spec.name, spec.reads)
        assert spec.label_settings(bundled_settings), f"{spec.name} names no settings its labels depend on"
        assert spec.min_train_origins(bundled_settings) >= 1
    assert [spec.name for spec in OUTCOMES if spec.backtest] == ["eviction_surge", "low_income_loss"]


def _with_model(settings: Settings, **sections: object) -> Settings:
    model = settings.model.model_copy(update={
        name: getattr(settings.model, name).model_copy(update=changes) for name, changes in sections.items()})
    return settings.model_copy(update={"model": model})


def _panel(folder: Path, name: str, settings: Settings, sources: Sources) -> tuple[list[OriginData], WorkCache]:
    cache = WorkCache(folder, settings, sources)
    return build_panel(outcome_for(name, settings), sources, settings, cache=cache), cache


def test_changing_an_outcomes_settings_recomputes_its_labels_and_nothing_else(
        tmp_path: Path, bundled_settings: Settings, bundled_sources: Sources) -> None:
    first, _ = _panel(tmp_path, "low_income_loss", bundled_settings, bundled_sources)
    changed = _with_model(bundled_settings, low_income_loss={"z": 1.0})
    panel, cache = _panel(tmp_path, "low_income_loss", changed, bundled_sources)
    assert cache.misses == len(panel) and cache.hits == len(panel)  # labels recomputed, features reused
    fresh = build_panel(outcome_for("low_income_loss", changed), bundled_sources, changed)
    for new, old, uncached in zip(panel, first, fresh, strict=True):
        assert new.key.split("/")[0] == old.key.split("/")[0]
        assert new.label_key != old.label_key
        pd.testing.assert_frame_equal(new.labels, uncached.labels)
    # reusing the old labels would have been wrong: the changed setting moves some of them
    assert any(not new.labels.equals(old.labels) for new, old in zip(panel, first, strict=True))
    # another outcome's settings are not this one's: its entries are all reused
    other = _with_model(bundled_settings, eviction_surge={"alpha": 0.01})
    again, cache = _panel(tmp_path, "low_income_loss", other, bundled_sources)
    assert cache.misses == 0 and [d.key for d in again] == [d.key for d in first]


def test_the_label_key_follows_the_settings_the_registry_names(
        tmp_path: Path, bundled_settings: Settings, bundled_sources: Sources,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new outcome declares counts: the key is not a list of today's outcomes' sections."""
    spec = registry.REGISTRY["low_income_loss"]
    monkeypatch.setitem(registry.REGISTRY, "low_income_loss",
                        dataclasses.replace(spec, borrows=(lambda s: s.model.tiers,)))
    first, _ = _panel(tmp_path, "low_income_loss", bundled_settings, bundled_sources)
    tiers = _with_model(bundled_settings, tiers={"watch": 0.6})
    panel, _ = _panel(tmp_path, "low_income_loss", tiers, bundled_sources)
    assert all(new.label_key != old.label_key for new, old in zip(panel, first, strict=True))
    # typology_transition borrows low_income_loss's noise model: a change of it is a change of its labels
    typology = registry.REGISTRY["typology_transition"]
    noisier = _with_model(bundled_settings, low_income_loss={"design_effect": 2.0})
    assert typology.label_settings(noisier) != typology.label_settings(bundled_settings)


def test_the_udp_columns_are_dated_by_their_vintages(bundled_settings: Settings, bundled_sources: Sources) -> None:
    udp = bundled_sources.udp
    assert udp is not None
    released = {v.suffix: v.released for v in bundled_settings.sources.demographics.vintages}
    assert udp.released("per_rent_00") == released["00"]
    assert udp.released("lmh_flag_encoded") == released["18"]
    view = bundled_sources.known_at(date(2005, 1, 1))
    assert view.udp is not None and view.udp.known_on == date(2005, 1, 1)
    assert {c.rsplit("_", 1)[1] for c in view.udp.frame.columns} == {"90", "00"}
    assert bundled_sources.known_at(date(2005, 1, 1), ("evictions",)).udp is None
    # the work cache sees a revised column exactly from the day it was released
    revised = udp.frame.copy()
    revised["per_rent_18"] += 0.01
    after = dataclasses.replace(bundled_sources, udp=dataclasses.replace(udp, frame=revised), cache={})
    before_cache, after_cache = WorkCache(Path("unused"), bundled_settings, bundled_sources), \
        WorkCache(Path("unused"), bundled_settings, after)
    assert before_cache.known(date(2019, 12, 18)) == after_cache.known(date(2019, 12, 18))
    assert before_cache.known(date(2019, 12, 19)) != after_cache.known(date(2019, 12, 19))


def test_stored_demographics_bring_back_the_same_udp_columns(tmp_path: Path) -> None:
    settings = load_settings(bundled_config_copy(tmp_path))
    fresh = load_sources(settings, reuse=True)
    again = load_sources(settings, reuse=True)
    assert fresh.udp is not None and again.udp is not None
    pd.testing.assert_frame_equal(again.udp.frame, fresh.udp.frame)
    assert (again.udp.vintages, again.udp.digest) == (fresh.udp.vintages, fresh.udp.digest)


@needs_shared
def test_the_udp_columns_are_every_column_the_typology_reads(shared_sources: Sources) -> None:
    """classify on the kept columns gives what it gives on the whole database file, at every vintage step."""
    settings = load_settings(SHARED_CONFIG)
    whole = pd.read_csv(settings.sources.demographics.path, dtype={"GEOID": str, "FIPS": str}, low_memory=False)
    whole.index = pd.Index(whole["GEOID"].str.zfill(11), name="geoid")
    numeric = whole.select_dtypes("number")
    whole[numeric.columns] = numeric.mask(numeric <= -1e8)
    udp = shared_sources.udp
    assert udp is not None and len(udp.frame) == len(whole)
    checked = 0
    for day in sorted(set(udp.vintages.values())):
        roles = vintage_roles(udp, day)
        if roles is None:
            continue
        args = {"current": roles["current"], "base": roles["base"], "past": roles["past"],
                "rent_from": roles["rent_from"]}
        kept = classify(udp.known_at(day).frame, **args)["typology"]
        full = classify(whole, **args)["typology"]
        assert np.array_equal(kept.to_numpy(), full.to_numpy())
        checked += 1
    assert checked >= 2  # at least Census 2000 against 1990 and ACS 2014-18 against 2000
