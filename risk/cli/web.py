"""`risk serve` and `risk users`: the planners' review pages, who may use them, and scripts' API tokens.

:mod:`risk.cli.main` adds ``COMMANDS`` to its group.
"""

from __future__ import annotations

import sys

import click

from risk.cli.common import err, handles_errors, out, settings_of
from risk.web.accounts import ROLES


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: web.host, 127.0.0.1).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Port (default: web.port, 8000).")
@click.pass_context
@handles_errors
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the review pages; the session key comes from the variable named in web.secret_key_env."""
    import uvicorn

    from risk.web import create_app
    from risk.web.server import server_config

    settings = settings_of(ctx)
    app = create_app(settings)
    with err.status("loading the tract boundaries and sources"):
        app.state.data.geography()  # fail here, with the data's own message, rather than on the first page
    host = host or settings.web.host
    port = port or settings.web.port
    err.print(f"review pages on http://{host}:{port}/ (Ctrl-C stops)", highlight=False)
    uvicorn.Server(server_config(app, settings, host, port)).run()


@click.group()
def users() -> None:
    """Add, list, change or remove the people who may log in to the review pages, and their API tokens."""


def _read_password() -> str:
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    # one line from a pipe (`printf '%s\n' "$PW" | risk users add ...`): the newline is not part of it
    return sys.stdin.readline().rstrip("\r\n")


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES),
              help="viewer: reads; planner: also records decisions; admin: also manages users.")
@click.pass_context
@handles_errors
def users_add(ctx: click.Context, name: str, role: str) -> None:
    """Add a user; the password is read from standard input (prompted for on a terminal)."""
    from risk.web.accounts import add_user, open_database
    engine = open_database(settings_of(ctx).paths.database)
    add_user(engine, name, role, _read_password(), actor="cli")
    out.print(f"user {name} added as {role}", highlight=False, markup=False)


@users.command("list")
@click.pass_context
@handles_errors
def users_list(ctx: click.Context) -> None:
    """Every user with their role and whether they can log in."""
    from rich.table import Table

    from risk.web.accounts import list_users, open_database
    table = Table("name", "role", "can log in", "created")
    for u in list_users(open_database(settings_of(ctx).paths.database)):
        table.add_row(u.name, u.role, "yes" if u.active else "no (locked)", f"{u.created_at:%Y-%m-%d %H:%M}")
    out.print(table)


@users.command("password")
@click.argument("name")
@click.pass_context
@handles_errors
def users_password(ctx: click.Context, name: str) -> None:
    """Set a user's password (read like `users add`); every session of theirs ends."""
    from risk.web.accounts import open_database, set_password
    engine = open_database(settings_of(ctx).paths.database)
    set_password(engine, name, _read_password(), actor="cli")
    out.print(f"password of {name} changed; their sessions have ended", highlight=False, markup=False)


@users.command("delete")
@click.argument("name")
@click.pass_context
@handles_errors
def users_delete(ctx: click.Context, name: str) -> None:
    """Remove a user with their sessions and API tokens (their decisions keep their name)."""
    from risk.web.accounts import delete_user, open_database
    delete_user(open_database(settings_of(ctx).paths.database), name, actor="cli")
    out.print(f"user {name} deleted", highlight=False, markup=False)


@users.command("token")
@click.argument("name")
@click.pass_context
@handles_errors
def users_token(ctx: click.Context, name: str) -> None:
    """Create a read-only API token for NAME and print it (once: only its hash is kept).

    Scripts send it as `Authorization: Bearer TOKEN` to the /api/ routes."""
    from risk.web.accounts import create_token, open_database
    token_id, token = create_token(open_database(settings_of(ctx).paths.database), name, actor="cli")
    # the token alone on standard output, so `TOKEN=$(risk users token NAME)` captures just it
    click.echo(token)
    err.print(f"API token {token_id} of {name} (read-only); it is not shown again. "
              f"Revoke it with: risk users revoke-token {token_id}", highlight=False, markup=False)


@users.command("tokens")
@click.argument("name", required=False)
@click.pass_context
@handles_errors
def users_tokens(ctx: click.Context, name: str | None) -> None:
    """List API tokens (of NAME if given): id, user, when created and by whom, whether revoked."""
    from rich.table import Table

    from risk.web.accounts import list_tokens, open_database
    table = Table("id", "user", "created", "by", "status")
    for t in list_tokens(open_database(settings_of(ctx).paths.database), name):
        status = "active" if t.revoked_at is None else f"revoked {t.revoked_at:%Y-%m-%d %H:%M}"
        table.add_row(str(t.id), t.user, f"{t.created_at:%Y-%m-%d %H:%M}", t.created_by, status)
    out.print(table)


@users.command("revoke-token")
@click.argument("token_id", metavar="ID", type=click.IntRange(min=1))
@click.pass_context
@handles_errors
def users_revoke_token(ctx: click.Context, token_id: int) -> None:
    """Revoke API token ID (see `risk users tokens`); requests with it are refused from now on."""
    from risk.web.accounts import open_database, revoke_token
    t = revoke_token(open_database(settings_of(ctx).paths.database), token_id, actor="cli")
    out.print(f"API token {t.id} of {t.user} revoked ({t.revoked_at:%Y-%m-%d %H:%M} UTC)", highlight=False,
              markup=False)


COMMANDS = (serve, users)
"""Added to the `risk` group by :mod:`risk.cli.main`."""
