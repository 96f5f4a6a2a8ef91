"""A throw-away PostgreSQL server for the tests: Debian's binaries, a temporary data folder, loopback only.

The server listens on 127.0.0.1 on a free port, keeps its socket in the
temporary folder, trusts local connections and runs without fsync (nothing
in it outlives the test session). PostgreSQL refuses to run as root, so
under root the server runs as the ``postgres`` user (``nobody`` when that
user is missing), which then owns the folder. Tests that need it are
skipped, with the reason, only where the PostgreSQL binaries or the driver
are absent.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

SERVER_USER = "risk"
START_TIMEOUT_S = 60


def bin_dir() -> Path | None:
    """The folder of initdb and pg_ctl: ``pg_config --bindir``, else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(Path(found.stdout.strip()))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                      if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in versions]
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A running server: ``url(name)`` for a database on it, ``create_database()`` for a fresh one."""

    port: int
    folder: Path

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3) of a database on this server."""
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={SERVER_USER} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def missing(reason: str) -> NoReturn:
    """Fail, never skip: the README's test command (`scripts/test`) installs the server and the extra, so a
    missing one is a broken set-up that must not pass as skipped tests."""
    pytest.fail(f"{reason} (scripts/test installs it)")


def _server_user() -> tuple[int, int] | None:
    """The (uid, gid) to run the server as when this process is root; None when it is not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    missing("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as")


def _run(args: list[str], as_user: tuple[int, int] | None, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program, as ``as_user`` if given (no supplementary groups: root's would stay)."""
    uid, gid = as_user or (None, None)
    return subprocess.run(args, user=uid, group=gid, extra_groups=[] if as_user else None, cwd=folder,
                          env={**os.environ, "LC_ALL": "C", "LANG": "C"}, capture_output=True, text=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[Server]:
    """Start a server in a temporary folder; stop it and delete the folder afterwards."""
    binaries = bin_dir()
    if binaries is None:
        missing("PostgreSQL is not installed (no initdb/pg_ctl from `pg_config --bindir` or in "
                "/usr/lib/postgresql/*/bin); `apt-get install postgresql` provides it")
    if importlib.util.find_spec("psycopg") is None:
        missing("the postgres extra is not installed: pip install -e '.[postgres]'")
    as_user = _server_user()
    # not under pytest's own tmp folder: under root that one is closed to the unprivileged server user
    folder = Path(tempfile.mkdtemp(prefix="risk-pg-"))
    data, log = folder / "data", folder / "server.log"
    if as_user:
        os.chown(folder, *as_user)
    try:
        made = _run([str(binaries / "initdb"), "-D", str(data), "-U", SERVER_USER, "--auth=trust",
                     "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"], as_user, folder)
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed: {made.stderr}")
        port = _free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        started = _run([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", str(START_TIMEOUT_S),
                        "-o", options, "start"], as_user, folder)
        if started.returncode != 0:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{text}")
        try:
            yield Server(port, folder)
        finally:
            _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], as_user, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
