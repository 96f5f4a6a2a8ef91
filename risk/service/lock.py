"""A run lock in the database, so two processes (two schedulers, a scheduler and a manual run) never run the
weekly job on the same database at once.

The lock is a row in ``locks``. Taking it is one transaction: insert the row,
or take over a row whose holder is dead (same host, process gone) or has not
refreshed it for ``stale_s`` seconds. A background thread refreshes it while
the run goes on; if a refresh finds the row no longer ours, the lock is lost
and the run stops at its next write (:meth:`RunLock.check`). Releasing
deletes the row only if we still hold it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import TracebackType

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from risk.core.errors import DatabaseBusyError, LockBusyError, RiskError
from risk.core.store import locks

log = logging.getLogger(__name__)


def host_identity() -> str:
    """The host name plus the PID namespace: two containers sharing a host name do not share process ids."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}/{namespace}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


class RunLock:
    """Context manager holding the named lock for the duration of a run."""

    def __init__(self, engine: Engine, stale_s: int, name: str = "weekly") -> None:
        self.engine = engine
        self.name = name
        self.stale = timedelta(seconds=stale_s)
        self.host = host_identity()
        self.pid = os.getpid()
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread: threading.Thread | None = None

    def _holder(self) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(locks).where(locks.c.name == self.name)).mappings().first()
        return dict(row) if row else None

    def _dead(self, holder: dict, now: datetime) -> bool:
        beat = holder["heartbeat_at"]
        beat = beat if beat.tzinfo else beat.replace(tzinfo=UTC)  # SQLite drops the zone
        if now - beat > self.stale:
            return True
        return holder["host"] == self.host and not _process_alive(int(holder["pid"]))

    def acquire(self, _attempts: int = 3) -> None:
        """Take the lock, or raise LockBusyError naming the holder."""
        now = datetime.now(UTC)
        row = {"name": self.name, "owner": self.owner, "host": self.host, "pid": self.pid,
               "acquired_at": now, "heartbeat_at": now}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(locks).values(**row))
        except IntegrityError:
            holder = self._holder()
            if holder is None and _attempts > 1:  # released between our insert and our read: try again
                return self.acquire(_attempts - 1)
            if holder is None or not self._dead(holder, now):
                who = f"{holder['owner']} since {holder['acquired_at']:%Y-%m-%d %H:%M:%S}" if holder else "unknown"
                raise LockBusyError(f"another run holds the lock on this database ({who})") from None
            # compare-and-swap on owner and heartbeat: a holder that refreshed since we looked keeps its lock
            with self.engine.begin() as conn:
                taken = conn.execute(update(locks).where(
                    locks.c.name == self.name, locks.c.owner == holder["owner"],
                    locks.c.heartbeat_at == holder["heartbeat_at"]).values(**row)).rowcount
            if not taken:
                raise LockBusyError("another process took over the stale run lock first") from None
            log.warning("took over the run lock of %s, which is no longer running", holder["owner"])
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        """Refresh the heartbeat until released; a failed refresh is retried, a row no longer ours is lost."""
        interval = max(1.0, self.stale.total_seconds() / 8)
        while not self._stop.wait(interval):
            try:
                with self.engine.begin() as conn:
                    ours = conn.execute(update(locks).where(locks.c.name == self.name, locks.c.owner == self.owner)
                                        .values(heartbeat_at=datetime.now(UTC))).rowcount
            except (SQLAlchemyError, DatabaseBusyError) as e:  # busy for a while: the next beat tries again
                log.warning("could not refresh the run lock (will retry): %s", e.__class__.__name__)
                continue
            if not ours:
                log.error("the run lock was taken over by another process")
                self.lost.set()
                return

    def check(self) -> None:
        """Raise if the lock was lost, so a run never writes outputs another process may be writing."""
        if self.lost.is_set():
            raise RiskError("this run lost the database run lock to another process and stopped")

    def release(self) -> None:
        """Give the lock back (only if this process still holds it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(locks).where(locks.c.name == self.name, locks.c.owner == self.owner))
        except DatabaseBusyError:
            # the work is done and committed; the row names this process, so once it has ended the next run
            # on this host takes the lock over (on another host, once stale)
            log.warning("could not release the run lock: the database is busy; the next run takes it over")

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
