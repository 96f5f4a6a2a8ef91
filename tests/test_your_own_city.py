"""The README's "Your own city" walk-through, run line by line as it is written: from `risk init` on a folder of
files to the first e-mail (issue 21, item 1)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _walkthrough() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Your own city", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_walkthrough_goes_from_risk_init_to_the_first_email(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    outputs = {}
    for line in _walkthrough():
        done = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr
        outputs[line] = done.stdout
    config = yaml.safe_load((tmp_path / "mycity/config.yaml").read_text())
    assert config["region"]["county_fips"] == ["06001"]
    assert {"boundaries", "demographics", "evictions", "rent", "permits"} <= set(config["sources"])
    assert config["model"]["outcome"] == "eviction_surge"
    init = outputs["risk init mycity"]
    assert "_06 are not a release" in init and "coverage.csv" in init and "not recognised" in init
    emails = list((tmp_path / "mycity/outbox").glob("*.eml"))
    assert len(emails) == 1 and "planning@example.org" in emails[0].read_text(errors="replace")


def test_init_refuses_to_overwrite_a_config_and_names_the_way_out(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("region: {}\n")
    done = subprocess.run([sys.executable, "-m", "risk", "init", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "pass --force" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr and (tmp_path / "config.yaml").read_text() == "region: {}\n"
