"""Waking an idle relay when a delivery is committed, instead of at its next poll.

A relay that finds nothing due waits ``poll_interval`` seconds before it claims again; the
poll is what guarantees delivery. A wake-up only cuts the wait short:

* PostgreSQL: every outbox write also notifies ``<channel>`` in the sender's transaction, in
  the INSERT itself (``RETURNING pg_notify(...)``, built by :mod:`tidings.outbox._insert`).
  PostgreSQL delivers a notification when that transaction commits and never when it rolls
  back, so it arrives exactly when the row is visible. Each relay LISTENs on a connection of
  its own (psycopg 3) and claims as soon as a notification arrives, from this process or any
  other. The channel is the pending table's name (schema-qualified), so two outboxes in one
  database do not wake each other's relays.
* SQLite: an in-process kick. While a relay runs in this process, a transaction that wrote an
  outbox row wakes it as it commits (the engine's ``commit`` event, just before the database
  commit: the relay's claim takes the write lock, so it waits for that commit to finish). A
  relay in another process is not woken: it polls.
* Other databases: the poll only.

A relay whose LISTEN connection is lost (the server restarted, the backend terminated) logs
it once, polls meanwhile, reconnects with a backoff (0.5 s doubling to 30 s) and claims once
at reconnection for what was committed while it was not listening. A missed notification
costs at most one ``poll_interval``.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, Table, event

__all__ = ["Wakeup", "channel_name", "notifier"]

logger = logging.getLogger("tidings.outbox")

#: Seconds a LISTEN connection waits for notifications before it checks whether to stop.
LISTEN_SLICE = 0.25
#: PostgreSQL truncates identifiers (channel names) to 63 bytes.
_MAX_CHANNEL = 63
_WROTE = "tidings.outbox.wrote"  # Connection.info: the channels written in this transaction

_lock = threading.Lock()
_kicks: dict[str, set[Wakeup]] = {}  # channel -> the wake-ups of this process's relays on it
_followed: weakref.WeakSet[Engine] = weakref.WeakSet()  # engines with the commit listener


def channel_name(table: Table) -> str:
    """The notification channel of an outbox: its pending table's schema-qualified name.

    A name longer than PostgreSQL's 63 bytes is shortened with a digest of the whole, so two
    long prefixes that share their start still get two channels.
    """
    name = f"{table.schema}.{table.name}" if table.schema else table.name
    if len(name.encode()) <= _MAX_CHANNEL:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:20]
    return f"{name.encode()[:40].decode(errors='ignore')}_{digest}"


def _quoted(channel: str) -> str:
    return '"' + channel.replace('"', '""') + '"'


def notifier(engine: Engine, table: Table) -> Callable[[Connection], None] | None:
    """What an outbox write calls with its connection to wake the relays, or None.

    SQLite: mark the transaction, so its commit kicks this process's relays (if any). Others:
    None (PostgreSQL's wake-up is part of the write's statement).
    """
    channel = channel_name(table)
    if engine.dialect.name == "sqlite":

        def mark(conn: Connection) -> None:
            if channel not in _kicks:  # no relay of this outbox runs in this process
                return
            _follow(conn.engine)
            conn.info.setdefault(_WROTE, set()).add(channel)

        return mark
    return None


def _follow(engine: Engine) -> None:
    if engine in _followed:
        return
    with _lock:
        if engine not in _followed:
            event.listen(engine, "commit", _committed)
            event.listen(engine, "rollback", _rolled_back)
            _followed.add(engine)


def _committed(conn: Connection) -> None:
    channels = conn.info.pop(_WROTE, None)
    for channel in channels or ():
        for wakeup in list(_kicks.get(channel, ())):
            wakeup.set()


def _rolled_back(conn: Connection) -> None:
    conn.info.pop(_WROTE, None)


class Wakeup:
    """What an idle relay waits on: its poll interval, cut short by a commit or by stop.

    Args:
        engine: The outbox's engine.
        table: The outbox's pending table (names the channel).
        owner: Shown in the log lines (the relay).
    """

    def __init__(self, engine: Engine, table: Table, owner: object) -> None:
        self.engine = engine
        self.channel = channel_name(table)
        self.owner = owner
        self._event = threading.Event()
        self._closing = threading.Event()
        self._listener: threading.Thread | None = None
        #: Whether the LISTEN connection is up (PostgreSQL).
        self.listening = False
        #: Times the LISTEN connection was (re)established.
        self.connects = 0

    def __repr__(self) -> str:
        return f"<Wakeup {self.channel!r} of {self.owner!r}>"

    def start(self) -> None:
        """Listen for the commits of this outbox (idempotent until :meth:`close`)."""
        self._closing.clear()
        dialect = self.engine.dialect.name
        if dialect == "postgresql" and self._listener is None:
            self._listener = threading.Thread(
                target=self._listen, name=f"{self.owner!r} LISTEN", daemon=True
            )
            self._listener.start()
        elif dialect == "sqlite":
            _follow(self.engine)
            with _lock:
                _kicks.setdefault(self.channel, set()).add(self)

    def close(self) -> None:
        """Stop listening (the LISTEN connection is closed within :data:`LISTEN_SLICE`)."""
        self._closing.set()
        with _lock:
            waiting = _kicks.get(self.channel)
            if waiting is not None:
                waiting.discard(self)
                if not waiting:
                    del _kicks[self.channel]
        if self._listener is not None:
            self._listener.join(LISTEN_SLICE * 8)
            self._listener = None

    def set(self) -> None:
        """Wake the waiting relay (or make its next wait return at once)."""
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a wake-up; return whether one came.

        The wake-up is consumed before this returns, so a commit after it wakes the next wait.
        """
        woken = self._event.wait(timeout)
        self._event.clear()
        return woken

    # -- the LISTEN connection (PostgreSQL) ------------------------------------------------

    def _listen(self) -> None:
        failures = 0
        lost = False
        while not self._closing.is_set():
            raw: Any = None
            try:
                raw = self.engine.raw_connection()
                driver = raw.driver_connection
                raw.detach()  # a connection of its own, out of the pool, for as long as it lives
                notifies = self._subscribe(driver)
                if notifies is None:
                    return
                self.set()  # for what was committed while nothing listened
                self.connects += 1
                self.listening = True
                if lost:
                    logger.warning("%r listens again", self)
                    lost = False
                failures = 0
                while not self._closing.is_set():
                    for _ in notifies(timeout=LISTEN_SLICE):
                        self.set()
            except Exception as exc:
                if self._closing.is_set():
                    return
                failures += 1
                if not lost:
                    logger.warning(
                        "%r lost its LISTEN connection (%s: %s); the relay polls while it "
                        "reconnects",
                        self,
                        type(exc).__name__,
                        exc,
                    )
                    lost = True
                self._closing.wait(min(30.0, 0.5 * 2 ** (failures - 1)))
            finally:
                self.listening = False
                if raw is not None:
                    with contextlib.suppress(Exception):  # a dead connection is gone anyway
                        raw.close()

    def _subscribe(self, driver: Any) -> Callable[..., Any] | None:
        """LISTEN on ``driver`` (a psycopg 3 connection); None if the driver cannot wait."""
        notifies = getattr(driver, "notifies", None)
        if not callable(notifies) or "timeout" not in inspect.signature(notifies).parameters:
            logger.info(
                "%r: the driver %s cannot wait for notifications (psycopg 3.2 or later can); "
                "the relay polls",
                self,
                type(driver).__module__,
            )
            return None
        driver.autocommit = True
        driver.execute(f"LISTEN {_quoted(self.channel)}")
        waiting: Callable[..., Any] = notifies
        return waiting
