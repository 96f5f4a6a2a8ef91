"""Errors in one place: every error class and its exit code in risk/core/errors.py, the README's exit-code table
equal to its one mapping, and every HTTP status of the review pages chosen by one table."""

from __future__ import annotations

import ast
import re

import pytest
from conftest import ROOT
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from risk.core import errors
from risk.core.errors import EXIT_CODES, RiskError
from risk.web.common import (
    HTTP_STATUS,
    BadInput,
    BadToken,
    Forbidden,
    LoginRequired,
    NotFound,
    WebError,
    http_status,
)

PACKAGE = ROOT / "risk"
ERRORS_PY = PACKAGE / "core" / "errors.py"


def _readme_exit_codes() -> dict[int, str]:
    """The README's table under the header ``| exit code | meaning |``, as code -> meaning."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"\|\s*exit code\s*\|\s*meaning\s*\|", line))
    table: dict[int, str] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        code, meaning = (cell.strip() for cell in line.strip().strip("|").split("|", 1))
        assert int(code) not in table, f"exit code {code} is in the README's table twice"
        table[int(code)] = meaning
    return table


def _error_classes() -> list[type[RiskError]]:
    """RiskError and every subclass of it, however deep."""
    found: list[type[RiskError]] = [RiskError]
    for cls in found:
        found.extend(c for c in cls.__subclasses__() if c not in found)
    return found


def test_the_readme_exit_code_table_is_the_one_mapping() -> None:
    assert _readme_exit_codes() == EXIT_CODES


def test_every_error_has_an_exit_code_the_mapping_explains_and_every_code_has_an_error() -> None:
    classes = _error_classes()
    assert len(classes) > 10
    for cls in classes:
        assert cls.exit_code in EXIT_CODES, f"{cls.__name__}.exit_code {cls.exit_code} is not in EXIT_CODES"
        assert cls.exit_code != 0, f"{cls.__name__} would exit with success"
    assert set(EXIT_CODES) - {0} == {cls.exit_code for cls in classes}, "an exit code no error gives"


def test_every_error_class_is_defined_in_errors_py() -> None:
    # importing the whole package is slow and has side effects; the source names every class and its bases
    known = {cls.__name__ for cls in _error_classes()}
    defined_here = {node.name for node in ast.walk(ast.parse(ERRORS_PY.read_text(encoding="utf-8")))
                    if isinstance(node, ast.ClassDef)}
    assert known <= defined_here
    elsewhere = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == ERRORS_PY:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & known:
                    elsewhere.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not elsewhere, f"error classes defined outside risk/core/errors.py: {elsewhere}"
    assert {cls.__module__ for cls in _error_classes()} == {errors.__name__}


@pytest.mark.parametrize(("error", "status"), [
    (BadInput("area", "no such area"), 400),
    (errors.AccountError("name", "no user named 'x'"), 400),
    (errors.UnknownArea("x"), 400),
    (LoginRequired(), 401),
    (BadToken(), 401),  # a WebError, but listed itself: its own status wins over its base's 400
    (Forbidden("no"), 403),
    (NotFound("no"), 404),
    (errors.UnknownTract("no"), 404),
    (RequestValidationError([]), 422),
    (errors.NoRunYet("no run"), 503),
    (errors.DatabaseBusyError("busy"), 503),  # not listed: its nearest listed base, RiskError
    (HTTPException(405), 405),  # Starlette's own carries its status
    (KeyError("bug"), 500),
])
def test_an_error_takes_its_http_status_from_its_nearest_class_in_the_table(error: Exception, status: int) -> None:
    assert http_status(error) == status


def test_the_web_app_chooses_no_status_outside_the_table() -> None:
    assert HTTP_STATUS[Exception] == 500 and HTTP_STATUS[WebError] == 400
    literal = []
    for path in sorted((PACKAGE / "web").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # a class attribute ``status = 404`` or an error page ``_error(request, 404, ...)``
            if isinstance(node, ast.ClassDef):
                literal += [f"{path.name}: {node.name}.status" for stmt in node.body if isinstance(stmt, ast.Assign)
                            for t in stmt.targets if isinstance(t, ast.Name) and t.id == "status"]
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_error"
                    and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)):
                literal.append(f"{path.name}:{node.lineno} _error({node.args[1].value})")
    assert not literal, f"statuses chosen outside risk.web.common.HTTP_STATUS: {literal}"

