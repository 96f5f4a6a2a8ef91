"""People who use the review pages, their sessions, API tokens and login failures, their decisions on tracts,
and the audit log of every change.

The ``users``, ``sessions``, ``api_tokens``, ``login_failures`` and ``audit``
tables are defined on :data:`risk.core.store.metadata`, so
:func:`risk.core.store.engine_for` creates them (in an older database too) once
this module is imported.
Decisions go to the existing ``reviews`` table, which the alert rules read
through :func:`risk.core.store.latest_decisions`; each decision and its audit entry
are written in one transaction, so there is never a decision without its
record of who made it and what it replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from risk.core.errors import AccountError, OutputError
from risk.core.store import engine_for, metadata, reviews

Role = Literal["viewer", "planner", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "planner", "admin")
"""Each role can do everything the ones before it can: viewers read, planners decide, admins manage users."""

DECISIONS: dict[str, str] = {"confirmed": "Confirmed", "monitoring": "Monitoring", "false_alarm": "False alarm",
                             "escalated": "Escalated"}
"""Stored value -> label. The alert rules suppress on the stored values (``alerts.suppress_decisions``)."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_NOTE = 2000

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("role", String(10), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(40), nullable=False),
    Column("target", String(100), nullable=False, index=True),
    Column("before", Text),
    Column("after", Text),
)

sessions = Table(
    "sessions", metadata,
    # sha256 of the secret in the cookie: a copy of the database is no way into anyone's session
    Column("id", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
"""One row per login; ending a session deletes its row, so a cookie captured before that is worth nothing."""

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)
"""Read-only API tokens; only their sha256 is stored, the token itself is shown once."""

login_failures = Table(
    "login_failures", metadata,
    Column("subject", String(200), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_at", Float, nullable=False, index=True),
)
"""Login attempts per ``name:<user name>`` and ``addr:<client address>``, shared by every server process."""

TOKEN_PREFIX = "risk_"
"""API tokens start with this, so a token pasted somewhere it should not be is easy to recognise."""

_hasher = PasswordHasher()
# verified against when the user does not exist, so an unknown name takes as long as a wrong password
_DUMMY_HASH = _hasher.hash("not a password anyone has")


@dataclass(frozen=True)
class User:
    """A person who may log in."""

    name: str
    role: Role
    active: bool
    created_at: datetime

    def can(self, role: Role) -> bool:
        """Whether this user has ``role`` or a higher one."""
        return ROLES.index(self.role) >= ROLES.index(role)


def open_database(url_or_path: str) -> Engine:
    """The job's database with the users and audit tables created if missing."""
    return engine_for(url_or_path)


def _now() -> datetime:
    return datetime.now(UTC)


def check_name(name: str) -> str:
    """A user name: letters, digits and ``. _ @ -``, up to 100 characters."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise AccountError("name", "use 1 to 100 letters, digits or . _ @ - (starting with a letter or digit)")
    return name


def check_role(role: str) -> Role:
    """One of :data:`ROLES`."""
    if role not in ROLES:
        raise AccountError("role", f"must be one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def check_password(password: str) -> str:
    """A password of a sensible length (the hash, not the password, is stored)."""
    if len(password) < MIN_PASSWORD:
        raise AccountError("password", f"must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError("password", f"must be at most {MAX_PASSWORD} characters")
    return password


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite gives back naive times; every time stored here is UTC, so say so."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _user(row: Any) -> User:
    return User(row["name"], row["role"], bool(row["active"]), as_utc(row["created_at"]))  # type: ignore[arg-type]


def _audit(conn: Connection, actor: str, action: str, target: str, before: dict | None, after: dict | None) -> None:
    conn.execute(insert(audit).values(
        at=_now(), actor=actor, action=action, target=target,
        before=None if before is None else json.dumps(before, default=str, sort_keys=True),
        after=None if after is None else json.dumps(after, default=str, sort_keys=True)))


@contextlib.contextmanager
def _write(engine: Engine, what: str) -> Iterator[Connection]:
    """A transaction whose database errors (other than a broken unique key) name what was being written."""
    try:
        with engine.begin() as conn:
            yield conn
    except IntegrityError:
        raise
    except SQLAlchemyError as e:
        raise OutputError(f"cannot store {what}: {e.__class__.__name__}: {e.args[0]}") from e


def add_user(engine: Engine, name: str, role: str, password: str, actor: str = "cli") -> User:
    """Create a user with an argon2 password hash; refuses a name that exists."""
    check_name(name)
    check_role(role)
    check_password(password)
    created = _now()
    try:
        with _write(engine, f"user {name}") as conn:
            conn.execute(insert(users).values(name=name, password_hash=_hasher.hash(password), role=role,
                                              active=True, created_at=created))
            _audit(conn, actor, "user.add", name, None, {"role": role, "active": True})
    except IntegrityError as e:
        raise AccountError("name", f"a user named '{name}' already exists") from e
    return User(name, role, True, created)  # type: ignore[arg-type]


def get_user(engine: Engine, name: str) -> User | None:
    """The user of that name, if any."""
    with engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).mappings().first()
    return _user(row) if row else None


def list_users(engine: Engine) -> list[User]:
    """Every user, by name."""
    with engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.name)).mappings().all()
    return [_user(r) for r in rows]


def authenticate(engine: Engine, name: str, password: str) -> User | None:
    """The active user whose password this is, or None (unknown names cost as much time as wrong passwords)."""
    with engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).mappings().first()
    try:
        _hasher.verify(row["password_hash"] if row else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or not row["active"]:
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):
        # the hashing parameters were raised since this password was set: store it under the new ones
        with engine.begin() as conn:
            conn.execute(update(users).where(users.c.name == name).values(password_hash=_hasher.hash(password)))
    return _user(row)


def _user_id(conn: Connection, name: str) -> int:
    found = conn.execute(select(users.c.id).where(users.c.name == name)).scalar()
    if found is None:
        raise AccountError("name", f"no user named '{name}'")
    return int(found)


def _end_sessions(conn: Connection, user_id: int) -> int:
    return int(conn.execute(delete(sessions).where(sessions.c.user_id == user_id)).rowcount or 0)


def _revoke_tokens(conn: Connection, user_id: int, name: str, actor: str) -> None:
    live = conn.execute(select(api_tokens.c.id).where(api_tokens.c.user_id == user_id,
                                                       api_tokens.c.revoked_at.is_(None))).scalars().all()
    if live:
        conn.execute(update(api_tokens).where(api_tokens.c.id.in_(live)).values(revoked_at=_now()))
    for token_id in live:
        _audit(conn, actor, "token.revoke", name, {"token": token_id}, None)


def set_access(engine: Engine, name: str, role: str, active: bool, actor: str) -> User:
    """Change a user's role or lock them out, with an audit entry.

    Any change ends the user's sessions (they log in again under the new role); locking also revokes their
    API tokens for good."""
    check_role(role)
    with _write(engine, f"user {name}") as conn:
        row = conn.execute(select(users).where(users.c.name == name)).mappings().first()
        if row is None:
            raise AccountError("name", f"no user named '{name}'")
        current = _user(row)
        conn.execute(update(users).where(users.c.id == row["id"]).values(role=role, active=active))
        _audit(conn, actor, "user.access", name, {"role": current.role, "active": current.active},
               {"role": role, "active": active})
        if (role, active) != (current.role, current.active):
            _end_sessions(conn, row["id"])
        if not active:
            _revoke_tokens(conn, row["id"], name, actor)
    return User(name, role, active, current.created_at)  # type: ignore[arg-type]


def set_password(engine: Engine, name: str, password: str, actor: str) -> None:
    """Replace a user's password (argon2 hash); every session of theirs ends, so only the new one logs in."""
    check_password(password)
    with _write(engine, f"user {name}") as conn:
        user_id = _user_id(conn, name)
        conn.execute(update(users).where(users.c.id == user_id).values(password_hash=_hasher.hash(password)))
        ended = _end_sessions(conn, user_id)
        _audit(conn, actor, "user.password", name, None, {"sessions_ended": ended})


def delete_user(engine: Engine, name: str, actor: str) -> None:
    """Remove a user with their sessions and API tokens; their decisions and the audit log keep the name."""
    with _write(engine, f"user {name}") as conn:
        row = conn.execute(select(users).where(users.c.name == name)).mappings().first()
        if row is None:
            raise AccountError("name", f"no user named '{name}'")
        _end_sessions(conn, row["id"])
        conn.execute(delete(api_tokens).where(api_tokens.c.user_id == row["id"]))
        conn.execute(delete(users).where(users.c.id == row["id"]))
        _audit(conn, actor, "user.delete", name, {"role": row["role"], "active": bool(row["active"])}, None)


# ---------------------------------------------------------------- sessions


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def open_session(engine: Engine, name: str, max_age_s: float) -> str:
    """A new session of the user: the secret to put in the cookie (only its hash is stored).

    Sessions older than ``max_age_s`` are deleted on the way, so the table holds only live ones."""
    secret = secrets.token_urlsafe(32)
    now = _now()
    with _write(engine, f"a session of {name}") as conn:
        user_id = _user_id(conn, name)
        conn.execute(delete(sessions).where(sessions.c.created_at < now - timedelta(seconds=max_age_s)))
        conn.execute(insert(sessions).values(id=_digest(secret), user_id=user_id, created_at=now))
    return secret


def session_user(engine: Engine, secret: str) -> tuple[User, datetime] | None:
    """The active user of a session that has not been ended, and when it began; None otherwise."""
    query = (select(users, sessions.c.created_at.label("session_start"))
             .join(sessions, sessions.c.user_id == users.c.id)
             .where(sessions.c.id == _digest(secret), users.c.active.is_(True)))
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return (_user(row), as_utc(row["session_start"])) if row else None  # type: ignore[return-value]


def end_session(engine: Engine, secret: str) -> None:
    """End one session (logging out); the user's other sessions go on."""
    with _write(engine, "the end of a session") as conn:
        conn.execute(delete(sessions).where(sessions.c.id == _digest(secret)))


# ---------------------------------------------------------------- API tokens


@dataclass(frozen=True)
class ApiToken:
    """A read-only API token as listed (the token itself is never stored)."""

    id: int
    user: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


def create_token(engine: Engine, name: str, actor: str) -> tuple[int, str]:
    """A new read-only API token of an active user: its id and the token, which cannot be shown again."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with _write(engine, f"an API token of {name}") as conn:
        row = conn.execute(select(users.c.id, users.c.active).where(users.c.name == name)).first()
        if row is None:
            raise AccountError("name", f"no user named '{name}'")
        if not row.active:
            raise AccountError("name", f"user '{name}' is locked; unlock them before giving them a token")
        token_id = conn.execute(insert(api_tokens).values(
            user_id=row.id, token_hash=_digest(token), created_at=_now(), created_by=actor)
        ).inserted_primary_key[0]  # type: ignore[index]
        _audit(conn, actor, "token.add", name, None, {"token": int(token_id)})
    return int(token_id), token


def list_tokens(engine: Engine, name: str | None = None) -> list[ApiToken]:
    """API tokens (of one user if given), oldest first, revoked ones included."""
    query = (select(api_tokens, users.c.name).join(users, users.c.id == api_tokens.c.user_id)
             .order_by(api_tokens.c.id))
    if name is not None:
        query = query.where(users.c.name == name)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [ApiToken(r["id"], r["name"], as_utc(r["created_at"]), r["created_by"],  # type: ignore[arg-type]
                     as_utc(r["revoked_at"])) for r in rows]


def revoke_token(engine: Engine, token_id: int, actor: str) -> ApiToken:
    """Revoke an API token for good (revoking one already revoked changes nothing)."""
    with _write(engine, f"API token {token_id}") as conn:
        row = conn.execute(select(api_tokens, users.c.name).join(users, users.c.id == api_tokens.c.user_id)
                           .where(api_tokens.c.id == token_id)).mappings().first()
        if row is None:
            raise AccountError("id", f"no API token with id {token_id} (`risk users tokens` lists them)")
        revoked = as_utc(row["revoked_at"])
        if revoked is None:
            revoked = _now()
            conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(revoked_at=revoked))
            _audit(conn, actor, "token.revoke", row["name"], {"token": token_id}, None)
    created = as_utc(row["created_at"])
    return ApiToken(token_id, row["name"], created, row["created_by"], revoked)  # type: ignore[arg-type]


def token_user(engine: Engine, token: str) -> User | None:
    """The active user of an API token that has not been revoked; None for any other string."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    query = (select(users).join(api_tokens, api_tokens.c.user_id == users.c.id)
             .where(api_tokens.c.token_hash == _digest(token), api_tokens.c.revoked_at.is_(None),
                    users.c.active.is_(True)))
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return _user(row) if row else None


# ---------------------------------------------------------------- login attempts


def count_login_attempt(engine: Engine, subject: str, now: float, window_s: float, cap: int) -> int:
    """Count one login attempt against ``subject``; the count including it.

    One atomic statement per attempt, so parallel requests and several server processes each see a
    different count. A count whose last attempt is older than ``window_s`` starts again at 1. The count
    stops at ``cap + 1`` without moving its time: attempts refused past the cap do not prolong the refusal.
    """
    t = login_failures
    stale = t.c.last_at < now - window_s
    bump = (update(t).where(t.c.subject == subject)
            .values(failures=case((stale, 1), (t.c.failures > cap, t.c.failures), else_=t.c.failures + 1),
                    last_at=case((stale | (t.c.failures <= cap), now), else_=t.c.last_at))
            .returning(t.c.failures))
    for _ in range(3):
        with _write(engine, "a login attempt") as conn:
            count = conn.execute(bump).scalar()
        if count is not None:
            return int(count)
        try:
            with _write(engine, "a login attempt") as conn:
                conn.execute(delete(t).where(t.c.last_at < now - window_s))  # the forgotten ones
                conn.execute(insert(t).values(subject=subject, failures=1, last_at=now))
            return 1
        except IntegrityError:
            continue  # a parallel attempt made the row first: count on it
    raise OutputError(f"cannot count a login attempt for {subject}: the row keeps changing")


def uncount_login_attempt(engine: Engine, subject: str, forget: bool = False) -> None:
    """Take back an attempt that turned out right (``forget``: drop the subject's whole count)."""
    t = login_failures
    with _write(engine, "a login attempt") as conn:
        if forget:
            conn.execute(delete(t).where(t.c.subject == subject))
        else:
            conn.execute(update(t).where(t.c.subject == subject, t.c.failures > 0)
                         .values(failures=t.c.failures - 1))


# ---------------------------------------------------------------- decisions


def check_decision(decision: str) -> str:
    """One of the stored decision values."""
    if decision not in DECISIONS:
        raise AccountError("decision", f"choose one of: {', '.join(DECISIONS.values())}")
    return decision


def check_note(note: str) -> str:
    """A note of at most :data:`MAX_NOTE` characters, trailing space removed."""
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise AccountError("note", f"must be at most {MAX_NOTE} characters (it has {len(note)})")
    if "\x00" in note:
        raise AccountError("note", "contains a NUL character")
    return note


def _review_dict(row: Any) -> dict[str, Any]:
    return {"decision": row["decision"], "note": row["note"],
            "follow_up": row["follow_up"].isoformat() if row["follow_up"] else None,
            "percentile": row["percentile"], "user": row["user"], "decided_at": as_utc(row["decided_at"])}


def record_decision(engine: Engine, geoid: str, decision: str, note: str, follow_up: date | None,
                    percentile: float, user: str) -> int:
    """Store a planner's decision on a tract and its audit entry (before and after) in one transaction."""
    check_decision(decision)
    note = check_note(note)
    with _write(engine, f"the decision on tract {geoid}") as conn:
        last = conn.execute(select(reviews).where(reviews.c.geoid == geoid).order_by(reviews.c.id.desc())
                            .limit(1)).mappings().first()
        review_id = conn.execute(insert(reviews).values(
            geoid=geoid, decision=decision, note=note, follow_up=follow_up, percentile=float(percentile),
            user=user, decided_at=_now())).inserted_primary_key[0]  # type: ignore[index]
        after = {"decision": decision, "note": note, "follow_up": follow_up.isoformat() if follow_up else None,
                 "percentile": float(percentile)}
        before = None if last is None else {k: v for k, v in _review_dict(last).items()
                                            if k in ("decision", "note", "follow_up", "percentile")}
        _audit(conn, user, "review", geoid, before, after)
    return int(review_id)


def review_history(engine: Engine, geoid: str) -> list[dict[str, Any]]:
    """Every decision on a tract, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(reviews).where(reviews.c.geoid == geoid).order_by(reviews.c.id.desc())
                            ).mappings().all()
    return [{"id": r["id"], **_review_dict(r)} for r in rows]


def latest_reviews(engine: Engine) -> dict[str, dict[str, Any]]:
    """The newest decision of every reviewed tract, by GEOID."""
    newest = select(func.max(reviews.c.id)).group_by(reviews.c.geoid).scalar_subquery()
    with engine.connect() as conn:
        rows = conn.execute(select(reviews).where(reviews.c.id.in_(newest))).mappings().all()
    return {r["geoid"]: _review_dict(r) for r in rows}


def reviews_version(engine: Engine) -> int:
    """The newest review id (0 if none): caches of review status are stale once it changes."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.max(reviews.c.id))).scalar() or 0)


def all_reviews(engine: Engine) -> list[dict[str, Any]]:
    """Every decision, oldest first, with its GEOID."""
    with engine.connect() as conn:
        rows = conn.execute(select(reviews).order_by(reviews.c.id)).mappings().all()
    return [{"geoid": r["geoid"], **_review_dict(r)} for r in rows]


def audit_entries(engine: Engine, target: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The newest audit entries (of one target if given), newest first, before/after decoded."""
    query = select(audit).order_by(audit.c.id.desc()).limit(limit)
    if target is not None:
        query = query.where(audit.c.target == target)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [{**dict(r), "at": as_utc(r["at"]), "before": json.loads(r["before"]) if r["before"] else None,
             "after": json.loads(r["after"]) if r["after"] else None} for r in rows]
