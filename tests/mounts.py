"""Real small and read-only file systems for tests of full disks: a tmpfs mounted for the test and removed after.

Mounting needs root (as in CI); elsewhere the tests that need it are skipped with the reason."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64k", *, readonly: bool = False, fill_from: Path | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (created), holding a copy of ``fill_from`` if given; read-only if asked."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'})"
        if os.geteuid() == 0 or os.environ.get("CI"):  # root (as in CI) can: a refusal there is a real failure
            pytest.fail(reason)
        pytest.skip(f"{reason}; needs root, as CI has")
    try:
        if fill_from is not None:
            shutil.copytree(fill_from, path, dirs_exist_ok=True)
        if readonly:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> None:
    """Fill the file system holding ``path`` to its last byte."""
    with contextlib.suppress(OSError), open(path / ".filler", "wb") as fh:  # closing flushes: it fails too
        while True:
            fh.write(b"\0" * 4096)
            fh.flush()
