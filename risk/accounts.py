"""People who use the review pages, their decisions on tracts, and the audit log of every change.

The ``users`` and ``audit`` tables are defined on :data:`risk.store.metadata`,
so :func:`risk.store.engine_for` creates them once this module is imported.
Decisions go to the existing ``reviews`` table, which the alert rules read
through :func:`risk.store.latest_decisions`; each decision and its audit entry
are written in one transaction, so there is never a decision without its
record of who made it and what it replaced.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from risk.errors import OutputError, RiskError
from risk.store import engine_for, metadata, reviews

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

_hasher = PasswordHasher()
# verified against when the user does not exist, so an unknown name takes as long as a wrong password
_DUMMY_HASH = _hasher.hash("not a password anyone has")


class AccountError(RiskError):
    """A user name, role, password or decision that cannot be accepted; the message names the field."""

    exit_code = 1

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


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


def set_access(engine: Engine, name: str, role: str, active: bool, actor: str) -> User:
    """Change a user's role or lock them out, with an audit entry."""
    check_role(role)
    current = get_user(engine, name)
    if current is None:
        raise AccountError("name", f"no user named '{name}'")
    with _write(engine, f"user {name}") as conn:
        conn.execute(update(users).where(users.c.name == name).values(role=role, active=active))
        _audit(conn, actor, "user.access", name, {"role": current.role, "active": current.active},
               {"role": role, "active": active})
    return User(name, role, active, current.created_at)  # type: ignore[arg-type]


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
