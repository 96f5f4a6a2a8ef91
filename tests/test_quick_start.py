"""The README's two quick-start commands are what CI runs, and the test command sets itself up."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", quick, flags=re.S)]


def test_readme_quick_start_has_two_commands_and_ci_runs_the_second() -> None:
    run, tests = _readme_commands()
    assert "risk run" in run and "pip install" in run
    assert tests == "scripts/test"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^exec scripts/test\s*$", ci, flags=re.M), ci


def test_test_script_installs_its_own_browser_and_database_server_when_missing() -> None:
    script = ROOT / "scripts" / "test"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text(encoding="utf-8")
    # the apt set-up names both Debian packages the suite needs, and the venv gets both extras
    assert "need+=(chromium)" in text and "need+=(postgresql)" in text and "apt-get install" in text
    assert ".[test,postgres]" in text and "pytest" in text
