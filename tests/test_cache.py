"""The work cache: a retraining week reuses what its inputs did not change, and nothing else."""

from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from risk.core.files import EntryStore
from risk.core.settings import Settings, load_settings
from risk.features.build import build_features
from risk.model.backtest import Backtest, build_panel, run_backtest
from risk.model.cache import KEEP_DAYS, WorkCache
from risk.model.training import train_and_register
from risk.outcomes.registry import outcome_for
from risk.sources import Sources, collect, load_sources


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory, bundled_settings: Settings,
         bundled_sources: Sources) -> tuple[Path, Backtest]:
    """A cache folder filled by one backtest, and that backtest."""
    folder = tmp_path_factory.mktemp("cache")
    return folder, run_backtest(bundled_settings, bundled_sources, "eviction_surge",
                                cache=WorkCache(folder, bundled_settings, bundled_sources))


def _revised(sources: Sources, year: int) -> Sources:
    """The sources with one more eviction filing in every tract in ``year`` (a revised Eviction Lab release)."""
    ev = sources.evictions.copy()
    ev.loc[ev["year"] == year, "filings"] += 1
    return dataclasses.replace(sources, evictions=ev, cache={})


def test_a_second_backtest_on_the_same_inputs_recomputes_nothing_and_reports_the_same_figures(
        warm: tuple[Path, Backtest], bundled_settings: Settings, bundled_sources: Sources) -> None:
    folder, first = warm
    cache = WorkCache(folder, bundled_settings, bundled_sources)
    again = run_backtest(bundled_settings, bundled_sources, "eviction_surge", cache=cache)
    assert cache.misses == 0 and cache.hits > 0
    pd.testing.assert_frame_equal(again.preds, first.preds)
    assert again.to_json() == first.to_json()
    for a, b in zip(again.panel, first.panel, strict=True):
        pd.testing.assert_frame_equal(a.X, b.X)
        pd.testing.assert_frame_equal(a.labels, b.labels)


def test_a_revision_reaches_exactly_the_features_and_labels_that_knew_the_revised_records(
        warm: tuple[Path, Backtest], bundled_settings: Settings, bundled_sources: Sources) -> None:
    folder, first = warm
    revised = _revised(bundled_sources, 2012)
    known_from = revised.evictions.loc[revised.evictions["year"] == 2012, "available"].min()
    cache = WorkCache(folder, bundled_settings, revised)
    panel = build_panel(outcome_for("eviction_surge", bundled_settings), revised, bundled_settings, cache=cache)
    for new, old in zip(panel, first.panel, strict=True):
        features_new, labels_new = new.key.split("/")
        features_old, labels_old = old.key.split("/")
        assert (features_new != features_old) == (pd.Timestamp(new.origin.as_of) >= known_from), new.origin
        assert (labels_new != labels_old) == (pd.Timestamp(new.origin.closes) >= known_from), new.origin
    assert any(pd.Timestamp(d.origin.as_of) < known_from <= pd.Timestamp(d.origin.closes) for d in panel)
    rebuilt = build_panel(outcome_for("eviction_surge", bundled_settings), revised, bundled_settings)
    for cached, fresh in zip(panel, rebuilt, strict=True):
        pd.testing.assert_frame_equal(cached.X, fresh.X)
        pd.testing.assert_frame_equal(cached.labels, fresh.labels)


def test_features_do_not_depend_on_the_order_of_the_records(bundled_settings: Settings,
                                                            bundled_sources: Sources) -> None:
    """The cache fingerprints tables as sets of records; this is what makes that safe."""
    rng = np.random.default_rng(0)

    def shuffled(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        return None if frame is None else frame.iloc[rng.permutation(len(frame))]

    mixed = dataclasses.replace(bundled_sources, cache={}, **{name: shuffled(getattr(bundled_sources, name))
                                for name in ("demographics", "evictions", "rent", "permits")})
    for day in (date(2012, 3, 1), date(2016, 6, 1)):
        pd.testing.assert_frame_equal(build_features(mixed, day, bundled_settings.features),
                                      build_features(bundled_sources, day, bundled_settings.features))
    assert WorkCache(Path("unused"), bundled_settings, mixed).known(date(2016, 6, 1)) == \
        WorkCache(Path("unused"), bundled_settings, bundled_sources).known(date(2016, 6, 1))


def test_a_damaged_entry_is_recomputed_with_a_warning(warm: tuple[Path, Backtest], bundled_settings: Settings,
                                                      bundled_sources: Sources,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    folder, first = warm
    entry = next(p for p in sorted(folder.iterdir()) if p.name.startswith("predict-"))
    (entry / "predictions.parquet").write_bytes(b"not parquet")
    cache = WorkCache(folder, bundled_settings, bundled_sources)
    with caplog.at_level(logging.WARNING, logger="risk.model.cache"):
        again = run_backtest(bundled_settings, bundled_sources, "eviction_surge", cache=cache)
    assert cache.misses == 1
    assert any("unreadable" in r.message and entry.name in r.message for r in caplog.records)
    pd.testing.assert_frame_equal(again.preds, first.preds)
    assert (entry / "predictions.parquet").read_bytes()[:4] == b"PAR1"  # written again


def test_a_reused_production_fit_registers_the_same_model_file(tmp_path: Path, warm: tuple[Path, Backtest],
                                                               bundled_settings: Settings,
                                                               bundled_sources: Sources) -> None:
    folder, backtest = warm
    files = []
    for run in ("first", "second"):
        settings = bundled_settings.model_copy(update={"paths": bundled_settings.paths.model_copy(
            update={"models": tmp_path / run})})
        cache = WorkCache(folder, settings, bundled_sources)
        result = train_and_register(settings, bundled_sources, date(2016, 3, 1), backtest, cache=cache)
        files.append((result.record.folder / "model.txt").read_bytes())
        assert (cache.hits, cache.misses) == ((0, 1) if run == "first" else (1, 0))
    assert files[0] == files[1]


def test_entries_unused_for_eight_weeks_are_pruned_and_nothing_else_in_the_folder(
        tmp_path: Path, bundled_settings: Settings, bundled_sources: Sources) -> None:
    cache = WorkCache(tmp_path, bundled_settings, bundled_sources)
    old, recent = cache.key("null", "old"), cache.key("null", "recent")
    cache.put_frames(old, {}, 1)
    cache.put_frames(recent, {}, 2)
    (tmp_path / "notes").mkdir()  # not an entry: a user's folder must survive a misconfigured paths.cache
    stale = (tmp_path / old).stat().st_mtime - (KEEP_DAYS + 1) * 86400
    for path in (tmp_path / old, tmp_path / "notes"):
        os.utime(path, (stale, stale))
    assert cache.prune() == 1
    assert cache.frames(old) is None and cache.frames(recent) == ({}, 2)
    assert (tmp_path / "notes").is_dir()


def test_keys_ignore_settings_that_cannot_change_an_entry_and_follow_those_that_can(
        tmp_path: Path, bundled_settings: Settings, bundled_sources: Sources) -> None:
    def key(**model: object) -> str:
        settings = bundled_settings.model_copy(update={"model": bundled_settings.model.model_copy(update=model)})
        return WorkCache(tmp_path, settings, bundled_sources).key("origin", 2010)

    same = key()
    assert key(promotion_tolerance=0.5) == same
    assert key(retrain=bundled_settings.model.retrain.model_copy(update={"policy": "never"})) == same
    assert key(seed=bundled_settings.model.seed + 1) != same
    assert key(null_simulations=bundled_settings.model.null_simulations + 1) != same


def test_keys_follow_what_files_hold_not_what_they_are_called(tmp_path: Path, bundled_settings: Settings,
                                                              bundled_sources: Sources) -> None:
    """Next year's eviction file under a new name reuses every entry its records leave unchanged; a file read
    directly (the boundaries) counts by its content."""
    from conftest import bundled_config_copy

    ev, tracts = bundled_settings.sources.evictions.path, bundled_settings.sources.boundaries.path
    renamed, edited = tmp_path / f"next-{ev.name}", tmp_path / f"edited-{tracts.name}"
    moved = tmp_path / f"moved-{tracts.name}"
    renamed.write_bytes(ev.read_bytes())
    moved.write_bytes(tracts.read_bytes())
    edited.write_bytes(tracts.read_bytes() + b"\n")  # the same tracts, other bytes

    def key(**paths: Path) -> str:
        config = bundled_config_copy(tmp_path)
        text = config.read_text()
        for old, new in paths.items():
            text = text.replace(str({"ev": ev, "tracts": tracts}[old]), str(new))
        config.write_text(text)
        settings = load_settings(config)
        return WorkCache(tmp_path / "cache", settings, load_sources(settings)).key("origin", 2010)

    same = WorkCache(tmp_path / "cache", bundled_settings, bundled_sources).key("origin", 2010)
    assert key(ev=renamed) == same
    assert key(tracts=moved) == same
    assert key(tracts=edited) != same


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("source-"))


def _with_eviction_file_at(tmp_path: Path, copy: Path) -> Settings:
    """The bundled configuration, its Eviction Lab file copied to ``copy`` and read from there."""
    from conftest import ROOT, bundled_config_copy

    bundled = ROOT / "data/sample/king/evictions_evictionlab_king.csv.gz"
    copy.write_bytes(bundled.read_bytes())
    config = bundled_config_copy(tmp_path)
    config.write_text(config.read_text().replace(str(bundled), str(copy)))
    return load_settings(config)


def test_unchanged_files_are_read_back_with_the_same_tables_and_warnings_and_a_changed_file_alone_is_parsed(
        tmp_path: Path) -> None:
    evictions = tmp_path / "evictions.csv.gz"
    settings = _with_eviction_file_at(tmp_path, evictions)
    fresh = load_sources(settings)
    load_sources(settings, reuse=True)
    again = load_sources(settings, reuse=True)
    for name in ("demographics", "evictions", "permits"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(fresh, name))
    assert (again.permit_files, again.permit_coverage, again.warnings, again.exclusions) == \
        (fresh.permit_files, fresh.permit_coverage, fresh.warnings, fresh.exclusions)
    pd.testing.assert_frame_equal(pd.DataFrame(again.tracts.drop(columns="geometry")),
                                  pd.DataFrame(fresh.tracts.drop(columns="geometry")))
    assert again.tracts.crs == fresh.tracts.crs and again.tracts.geom_equals_exact(fresh.tracts, 0).all()
    before = _entries(settings.paths.cache)
    assert sorted(name.split("-")[1] for name in before) == ["boundaries", "demographics", "evictions", "permits",
                                                             "rent"]
    evictions.write_bytes(gzip.compress(gzip.decompress(evictions.read_bytes()), mtime=1))  # new bytes, same rows
    load_sources(settings, reuse=True)
    after = _entries(settings.paths.cache)
    assert [n for n in before if n not in after] == [n for n in before if "-evictions-" in n]  # superseded
    assert len(after) == 5


def test_stored_warnings_name_their_files_as_seen_from_the_folder_of_the_run_that_reads_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import ROOT, bundled_config_copy

    settings = load_settings(bundled_config_copy(tmp_path))
    monkeypatch.chdir(tmp_path)  # the storing run starts here: its paths are shown absolute
    load_sources(settings, reuse=True)
    monkeypatch.chdir(ROOT)  # a later run starts in the checkout: the data paths are shown relative to it
    fresh, again = load_sources(settings), load_sources(settings, reuse=True)
    assert fresh.warnings and any(w.file.startswith("data/") for w in fresh.warnings)
    assert again.warnings == fresh.warnings


def test_a_stored_warning_keeps_a_file_name_that_holds_a_comma_whole(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    odd = tmp_path / "evictions, 2000-2018.csv.gz"
    settings = _with_eviction_file_at(tmp_path, odd)
    monkeypatch.chdir(tmp_path)
    fresh = load_sources(settings, reuse=True)
    again = load_sources(settings, reuse=True)
    assert any(w.file.endswith(odd.name) for w in fresh.warnings)
    assert again.warnings == fresh.warnings


def test_a_family_with_errors_is_never_stored_and_a_day_before_its_latest_date_checks_it_again(
        tmp_path: Path) -> None:
    from conftest import bundled_config_copy

    settings = load_settings(bundled_config_copy(tmp_path))
    store = EntryStore(settings.paths.cache)
    _, problems = collect(settings, date(2015, 6, 1), store)  # the sample runs to 2018: future years are errors
    assert any(p.family == "evictions" and p.severity == "error" for p in problems)
    assert not [n for n in _entries(settings.paths.cache) if "-evictions-" in n]
    collect(settings, date(2026, 11, 1), store)
    assert len([n for n in _entries(settings.paths.cache) if "-evictions-" in n]) == 1
    _, again = collect(settings, date(2015, 6, 1), store)  # a stored clean family, read on an earlier day
    assert [str(p) for p in again if p.family == "evictions"] == [str(p) for p in problems if p.family == "evictions"]


def test_moving_the_project_folder_with_its_data_keeps_the_file_keys_and_forces_no_retraining(
        world, tmp_path_factory: pytest.TempPathFactory) -> None:
    from risk.features.dictionary import feature_names
    from risk.model.registry import ModelRecord
    from risk.service.pipeline import retrain_reason

    before = load_sources(load_settings(world.config))
    moved = tmp_path_factory.mktemp("elsewhere") / "moved"
    shutil.copytree(world.root, moved)
    shutil.rmtree(world.root)
    settings = load_settings(moved / world.config.name)
    after = load_sources(settings)
    assert after.file_hashes == before.file_hashes
    assert all(not key.startswith("/") for key in after.file_hashes)
    trained = ModelRecord("m", moved, {"features": feature_names(settings.features.spatial_lags),
                                       "data_hashes": before.file_hashes, "as_of": "2018-03-05"})
    assert retrain_reason(settings, trained, None, after, date(2018, 3, 5)) is None


def test_a_file_rewritten_to_the_same_size_and_modification_time_is_hashed_again(tmp_path: Path) -> None:
    import os

    import risk.sources as sources_module

    evictions = tmp_path / "evictions.csv.gz"
    settings = _with_eviction_file_at(tmp_path, evictions)
    first = load_sources(settings, reuse=True).file_hashes
    assert any(p.name.startswith("file-hash-") for p in settings.paths.cache.iterdir())
    stat = evictions.stat()
    data = bytearray(evictions.read_bytes())
    data[-9] ^= 0xFF  # the gzip trailer's CRC: same size, other bytes
    evictions.write_bytes(bytes(data))
    os.utime(evictions, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # only the change time tells the write apart
    sources_module._HASHED.clear()  # a new process: only the stored hashes remain
    key = next(k for k in first if k.endswith("evictions.csv.gz"))
    second, _ = sources_module.collect(settings, store=sources_module.EntryStore(settings.paths.cache))
    assert second is not None and second.file_hashes[key] != first[key]


def test_fingerprints_kept_under_the_sources_content_key_equal_those_hashed_from_the_tables(
        tmp_path: Path) -> None:
    settings = _with_eviction_file_at(tmp_path, tmp_path / "evictions.csv.gz")
    plain = load_sources(settings)
    stored = load_sources(settings, reuse=True)
    assert plain.content_key == "" and stored.content_key
    assert stored.known_at(date(2015, 1, 1)).content_key == ""  # a view is not the records the key names
    days = [date(2009, 6, 1), date(2015, 1, 1), date(2019, 12, 31)]
    expected = [WorkCache(tmp_path / "plain", settings, plain).known(d) for d in days]
    first = WorkCache(settings.paths.cache, settings, stored)
    assert [first.known(d) for d in days] == expected
    again = WorkCache(settings.paths.cache, settings, load_sources(settings, reuse=True))
    assert [again.known(d) for d in days] == expected and again.hits == 1 and again.misses == 0
