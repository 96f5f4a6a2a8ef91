"""The durable outbox: every message is stored before any send, and sent once.

A message enters the outbox (SQLite) with its idempotency key before any
attempt; queueing the same key again does nothing, so re-running a week sends
nothing twice. A message is claimed (``sending``) just before it is handed to
the transport and marked ``sent`` just after; if the process dies between the
server's acceptance and that mark, the next run sends it again with the same
Message-ID (at least once, never lost: no SMTP client can close that window).
The file transport names its file after the key, so it has no such window. Temporary failures (4xx replies, refused connections,
timeouts) are retried with exponential backoff and, if they persist, left
queued for the next run; permanent ones (5xx) end as ``failed`` with the
server's reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_string, policy
from email.errors import MessageError
from email.message import EmailMessage

from sqlalchemy import Engine, Insert, insert, select, update
from sqlalchemy.dialects import postgresql

from risk.alerts.messages import Outgoing
from risk.core.crashpoints import checkpoint
from risk.core.settings import DeliverySettings
from risk.core.store import outbox, runs
from risk.delivery import folder, smtp
from risk.delivery.transport import (
    PermanentFailure,
    Send,
    TemporaryFailure,
    wire_policy,
)

log = logging.getLogger(__name__)


def _insert_new(engine: Engine) -> Insert:
    """An insert into the outbox that skips keys already there, in the database's own words."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(outbox).on_conflict_do_nothing(index_elements=[outbox.c.key])
    return insert(outbox).prefix_with("OR IGNORE", dialect="sqlite")


def queue(engine: Engine, run_id: int | None, items: list[Outgoing]) -> int:
    """Store messages not yet in the outbox; returns how many were new.

    With a ``run_id``, the same transaction marks the run as alerted, so its
    scores become the baseline of the next run even if this process dies
    before the run is finished."""
    with engine.connect() as conn:
        known = set(conn.execute(select(outbox.c.key).where(outbox.c.key.in_([i.key for i in items]))).scalars())
    fresh = []
    for i in items:  # one address listed twice makes the same key twice: keep the first
        if i.key not in known:
            known.add(i.key)
            fresh.append(i)
    now = datetime.now(UTC)
    # serialised before the transaction opens: a long write transaction would block the run lock's heartbeat
    rows = []
    for i in fresh:
        try:
            eml = i.message.as_string(policy=wire_policy(i.recipient))
        except (ValueError, UnicodeError, MessageError) as e:  # never one recipient for everyone's week
            log.warning("message %s to %r cannot be written, not queued: %s", i.key, i.recipient, e)
            continue
        rows.append({"key": i.key, "run_id": run_id, "week": i.week, "kind": i.kind, "recipient": i.recipient,
                     "subject": str(i.message["Subject"]), "message_id": str(i.message["Message-ID"]),
                     "eml": eml, "state": "queued", "attempts": 0, "created_at": now})
    with engine.begin() as conn:
        if rows:
            conn.execute(_insert_new(engine), rows)
        if run_id is not None:
            conn.execute(update(runs).where(runs.c.id == run_id).values(alerted_at=now))
    return len(rows)


TRANSPORTS: dict[str, Send] = {"file": folder.send, "smtp": smtp.send}
"""Every transport by its ``delivery.transport`` name: a new transport is a module with a ``send`` and a line here."""


def transport(cfg: DeliverySettings) -> Callable[[EmailMessage, str, str], None]:
    """A function sending one message to one recipient (key names the file for the file transport)."""
    send = TRANSPORTS[cfg.transport]
    return lambda msg, recipient, key: send(cfg, msg, recipient, key)


@dataclass
class SendReport:
    """What one pass over the outbox did."""

    sent: int = 0
    failed: int = 0
    still_queued: int = 0


def requeue_interrupted(engine: Engine) -> int:
    """Put messages a dead sender had claimed (state ``sending``) back in the queue; call under the run lock.

    A message is claimed just before it is handed to the server and marked sent
    just after; a process killed in between may or may not have delivered it.
    Sending it again is the safer side: its Message-ID is the same, so mail
    clients show one message."""
    with engine.begin() as conn:
        return int(conn.execute(update(outbox).where(outbox.c.state == "sending").values(state="queued")).rowcount)


def send_queued(engine: Engine, cfg: DeliverySettings, sleep: Callable[[float], None] = time.sleep,
                stop: threading.Event | None = None, guard: Callable[[], None] | None = None) -> SendReport:
    """Try every queued message; mark each sent, failed, or leave it queued after temporary failures.

    With ``stop`` set, it ends between two messages and leaves the rest queued; ``guard`` is called before
    each claim and may raise (the run lock's check)."""
    send = transport(cfg)
    report = SendReport()
    with engine.connect() as conn:
        pending = conn.execute(select(outbox.c.key, outbox.c.recipient, outbox.c.eml, outbox.c.attempts)
                               .where(outbox.c.state == "queued").order_by(outbox.c.created_at)).all()
    for key, recipient, eml, attempts in pending:
        if stop is not None and stop.is_set():
            report.still_queued += 1
            continue
        if guard is not None:
            guard()
        # claim the message first, so a second sender running at the same time skips it
        with engine.begin() as conn:
            claimed = conn.execute(update(outbox).where(outbox.c.key == key, outbox.c.state == "queued")
                                   .values(state="sending")).rowcount
        if not claimed:
            continue
        checkpoint("deliver.claimed")
        msg = message_from_string(eml, policy=policy.SMTP)
        state, error, delay = "queued", None, cfg.backoff_s
        for attempt in range(1, cfg.max_attempts + 1):
            attempts += 1
            try:
                send(msg, recipient, key)  # type: ignore[arg-type]
                checkpoint("deliver.sent")
                state, error = "sent", None
                break
            except PermanentFailure as e:
                state, error = "failed", str(e)
                break
            except TemporaryFailure as e:
                error = str(e)
                if attempt < cfg.max_attempts:
                    if stop is not None and stop.wait(delay):
                        break  # leave it queued for the next run rather than hold up a stop
                    if stop is None:
                        sleep(delay)
                    delay *= 2
        with engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.key == key).values(
                state=state, attempts=attempts, last_error=error,
                sent_at=datetime.now(UTC) if state == "sent" else None))
        checkpoint("deliver.marked")
        report.sent += state == "sent"
        report.failed += state == "failed"
        report.still_queued += state == "queued"
    return report


def outbox_rows(engine: Engine) -> list[dict]:
    """Every message in the outbox, newest first (without the message body)."""
    columns = [c for c in outbox.c if c.name != "eml"]
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(*columns).order_by(outbox.c.created_at.desc())).mappings()]
