"""Crash points are gathered: every checkpoint the package passes and every point a test kills at is declared in
risk.core.crashpoints.CRASH_POINTS with its meaning, and an undeclared name is refused."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TypeGuard

import pytest
from conftest import ROOT

from risk.core.crashpoints import CRASH_POINTS, POINT_ENV, SIGNAL_ENV, checkpoint
from risk.service.pipeline import STAGES

PACKAGE = ROOT / "risk"
TESTS = ROOT / "tests"


def _is_checkpoint_call(node: ast.AST) -> TypeGuard[ast.Call]:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "checkpoint") or (
        isinstance(func, ast.Attribute) and func.attr == "checkpoint")


def _passed_points() -> set[str]:
    """Every name the package gives ``checkpoint``: literal strings, and ``f"{stage}.done"`` for each stage."""
    names: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not _is_checkpoint_call(node):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            (arg,) = node.args
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
            elif (isinstance(arg, ast.JoinedStr) and len(arg.values) == 2
                  and isinstance(arg.values[0], ast.FormattedValue)
                  and isinstance(arg.values[1], ast.Constant) and arg.values[1].value == ".done"):
                names.update(f"{stage}.done" for stage in STAGES)  # the pipeline's end of every stage
            else:
                pytest.fail(f"{where}: name the crash point with a literal string, not {ast.unparse(arg)}")
    return names


def _points_tests_kill_at() -> set[str]:
    """Every crash point a test names: lists (or dicts of lists) assigned to ``*POINTS*`` and the point given ``run_until`` or
    ``_start_paused``, without their ``#n`` pass number."""
    names: set[str] = set()
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            found: list[ast.AST] = []
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and "POINTS" in t.id
                                                    for t in node.targets):
                # a list of points, or a dict of them per week (its keys are dates)
                found = [v for v in node.value.values if v] if isinstance(node.value, ast.Dict) else [node.value]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                position = {"run_until": 2, "_start_paused": 1}.get(node.func.id)
                if position is not None and len(node.args) > position:
                    found = [node.args[position]]
            for value in found:
                names.update(c.value.partition("#")[0] for c in ast.walk(value)
                             if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return names


def test_every_checkpoint_the_package_passes_is_declared_and_every_declared_point_is_passed() -> None:
    passed = _passed_points()
    assert passed - set(CRASH_POINTS) == set(), "checkpoints missing from CRASH_POINTS"
    assert set(CRASH_POINTS) - passed == set(), "declared crash points that no code passes"
    assert all(meaning.strip() for meaning in CRASH_POINTS.values())


def test_every_crash_point_a_test_kills_at_is_declared() -> None:
    named = _points_tests_kill_at()
    assert {"deliver.sent", "score.done", "run.finishing"} <= named  # the scan sees the crash-safety tests
    assert named - set(CRASH_POINTS) == set()


def test_an_undeclared_crash_point_is_refused_with_or_without_fault_injection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POINT_ENV, raising=False)
    checkpoint("alerts.composed")  # declared, no fault asked for: nothing happens
    with pytest.raises(ValueError, match="unknown crash point 'alerts.compose'"):
        checkpoint("alerts.compose")
    monkeypatch.setenv(POINT_ENV, "alerts.composd#2")
    with pytest.raises(ValueError, match="names no crash point"):
        checkpoint("alerts.composed")


def test_a_declared_point_not_asked_for_lets_the_run_go_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(POINT_ENV, "run.finishing")
    monkeypatch.setenv(SIGNAL_ENV, str(tmp_path / "reached"))
    checkpoint("alerts.composed")
    assert not (tmp_path / "reached").exists()
