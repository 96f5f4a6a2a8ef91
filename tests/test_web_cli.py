"""`risk users add|list` and `risk serve` from the command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.error import HTTPError, URLError

import pytest
from click.testing import CliRunner
from web_support import SECRET, SECRET_ENV, WebState, build_state, web_config

from risk.cli.main import main
from risk.core.settings import load_settings
from risk.web import accounts


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return web_config(tmp_path)


def _risk(config: Path, *args: str, stdin: str = "") -> object:
    return CliRunner().invoke(main, ["--config", str(config), *args], input=stdin)


def test_users_add_reads_the_password_from_stdin_and_stores_only_an_argon2_hash(config: Path) -> None:
    result = _risk(config, "users", "add", "maria", "--role", "planner", stdin="a password with spaces\n")
    assert result.exit_code == 0, result.output
    assert "user maria added as planner" in result.output
    engine = accounts.open_database(load_settings(config).paths.database)
    assert accounts.authenticate(engine, "maria", "a password with spaces").role == "planner"
    with engine.connect() as conn:
        stored = conn.execute(accounts.users.select()).mappings().one()["password_hash"]
    assert stored.startswith("$argon2id$") and "a password with spaces" not in stored
    assert accounts.audit_entries(engine, target="maria")[0]["action"] == "user.add"


def test_users_list_shows_names_roles_and_access(config: Path) -> None:
    _risk(config, "users", "add", "ann", "--role", "admin", stdin="admin-password\n")
    _risk(config, "users", "add", "vic", "--role", "viewer", stdin="viewer-password\n")
    result = _risk(config, "users", "list")
    assert result.exit_code == 0
    assert "ann" in result.output and "admin" in result.output and "vic" in result.output


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["users", "add", "bo", "--role", "viewer"], "short\n", "password: must be at least 8 characters"),
    (["users", "add", "bad name!", "--role", "viewer"], "long-enough-pw\n", "name: use 1 to 100 letters"),
])
def test_users_add_refuses_bad_input_with_exit_1_and_a_message_naming_the_field(
        config: Path, args: list[str], stdin: str, message: str) -> None:
    result = _risk(config, *args, stdin=stdin)
    assert result.exit_code == 1 and message in result.output


def test_users_add_refuses_an_unknown_role_and_a_taken_name(config: Path) -> None:
    assert _risk(config, "users", "add", "x", "--role", "root", stdin="long-enough-pw\n").exit_code == 2
    _risk(config, "users", "add", "kim", "--role", "viewer", stdin="long-enough-pw\n")
    again = _risk(config, "users", "add", "kim", "--role", "admin", stdin="long-enough-pw\n")
    assert again.exit_code == 1 and "already exists" in again.output


def test_serve_without_the_secret_variable_exits_2_naming_it(config: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    result = _risk(config, "serve")
    assert result.exit_code == 2 and f"{SECRET_ENV} is not set" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_risk_serve_answers_on_the_given_port_and_asks_for_a_login(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    state: WebState = build_state(tmp_path_factory)
    port = _free_port()
    env = {**os.environ, SECRET_ENV: SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "risk", "--config", str(state.config), "serve", "--host",
                             "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tracts", timeout=2):
                    status = 200
            except HTTPError as e:
                status = e.code
            except URLError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                time.sleep(0.2)
        assert status == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)
