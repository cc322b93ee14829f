"""The outbox: its tables on an engine, the producer's write and the operations.

Also the process's installed outbox (:meth:`Outbox.install`), the one durable sends write to.
The handler, relay and consumer modules use this one; it uses none of them but the consumer
and the publisher it builds, so the package has no import cycle.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, MetaData
from sqlalchemy.orm import Session

from tidings._dispatch import Signal
from tidings._errors import TidingsRuntimeError, TidingsValueError
from tidings.outbox import _operations
from tidings.outbox._codec import encode
from tidings.outbox._consumer import Consumer
from tidings.outbox._consumer_async import AsyncConsumer
from tidings.outbox._operations import DeadLetter, OutboxStatus
from tidings.outbox._publisher import Publisher
from tidings.outbox._receivers import DurableReceiver, iter_registered
from tidings.outbox._records import Action
from tidings.outbox._remote import (
    REMOTE_MODES,
    check_node,
    default_node,
    open_transport,
)
from tidings.outbox._schema import OutboxTables, build_tables
from tidings.outbox._store import Store

if TYPE_CHECKING:
    from tidings.transport._base import Transport

__all__ = ["Outbox", "installed_outbox"]

_lock = threading.Lock()
_installed: list[Outbox] = []  # a stack: install() pushes, uninstall() removes


def installed_outbox() -> Outbox | None:
    """The outbox durable sends write to, or None."""
    return _installed[-1] if _installed else None


class Outbox:
    """Durable delivery's configuration: the database, the tables, what a worker sets up.

    A worker process is pointed at an ``Outbox`` (``tidings worker package.module:outbox``).

    Args:
        engine: The application's (sync) engine; the tables live in its database.
        metadata: The ``MetaData`` to add the tables to (the application's own, so Alembic's
            autogenerate sees them); a new one if None.
        prefix: The name of the pending-deliveries table; the dead letters and the relay lease
            are ``<prefix>_dead`` and ``<prefix>_relay``.
        schema: The database schema of the tables (None: the default one).
        apps: App names (or configs) a worker populates ``tidings.apps.apps`` with before it
            starts, so models and receivers are imported.
        receivers: The durable receivers the relays of this outbox run; None: every durable
            receiver connected in the worker's process.
        transport: Where queue and broadcast deliveries go: a
            :class:`~tidings.transport.Transport`, or a URL (``redis://...``, ``rediss://...``
            or ``memory://``); None: this outbox takes durable deliveries only.
        node: This process's name in broadcast groups (``{receiver}@{node}``); default
            ``host:pid``, a new node on every start. Give a stable one (per machine or
            container) so a restarted node goes on with the entries it missed.
        wake: Wake the relays when a write commits (PostgreSQL: a ``NOTIFY`` in the sender's
            transaction; SQLite: a kick to this process's relays). False: relays find new
            deliveries at their next poll.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        metadata: MetaData | None = None,
        prefix: str = "tidings_outbox",
        schema: str | None = None,
        apps: Iterable[Any] = (),
        receivers: Iterable[DurableReceiver] | None = None,
        transport: Transport | str | None = None,
        node: str | None = None,
        wake: bool = True,
    ) -> None:
        self.engine = engine
        self.transport: Transport | None = open_transport(transport)
        self.node = check_node(node) if node is not None else default_node()
        self.tables: OutboxTables = build_tables(metadata or MetaData(), prefix, schema)
        self.apps = tuple(apps)
        self.receivers = None if receivers is None else tuple(receivers)
        self._store = Store(engine, self.tables, wake=wake)

    @property
    def metadata(self) -> MetaData:
        """The ``MetaData`` holding the outbox tables."""
        return self.tables.metadata

    def __repr__(self) -> str:
        return f"<Outbox {self.tables.pending.name!r} on {self.engine.url!r}>"

    def create_all(self) -> None:
        """Create the outbox tables that do not exist yet (the other tables are left alone)."""
        tables = [self.tables.pending, self.tables.dead, self.tables.relay]
        self.metadata.create_all(self.engine, tables=tables)

    def drop_all(self) -> None:
        """Drop the outbox tables (and every delivery in them)."""
        tables = [self.tables.pending, self.tables.dead, self.tables.relay]
        self.metadata.drop_all(self.engine, tables=tables)

    def install(self) -> Outbox:
        """Make this the outbox that ``delivery="durable"`` sends of this process write to.

        One outbox is current per process (the last installed); :meth:`uninstall` makes the
        one installed before it current again. ``tidings worker`` installs the outbox it runs,
        so durable sends made by receivers land in it too.

        Returns:
            The outbox itself.
        """
        with _lock:
            if self in _installed:
                _installed.remove(self)
            _installed.append(self)
        return self

    def uninstall(self) -> None:
        """Stop being the outbox durable sends write to (a no-op if it is not installed)."""
        with _lock:
            if self in _installed:
                _installed.remove(self)

    @contextlib.contextmanager
    def installed(self) -> Iterator[Outbox]:
        """Install the outbox for the ``with`` block (tests, scripts).

        Yields:
            The outbox itself.
        """
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    def relay_actions(self) -> dict[str, Action]:
        """What a relay of this outbox does with rows other than durable ones.

        Returns:
            ``{"queue": publish, "broadcast": publish}`` with a transport, else nothing.
        """
        if self.transport is None:
            return {}
        publish = Publisher(self.transport)
        return {"queue": publish, "broadcast": publish}

    def consumer(self, **options: Any) -> Consumer:
        """A consumer of this outbox's queue and broadcast receivers (``tidings worker`` runs one).

        Args:
            options: :class:`~tidings.outbox.Consumer`'s options; ``receivers`` defaults to
                the queue and broadcast receivers among :attr:`receivers`, or if that is None
                every one connected in this process; ``pool="asyncio"`` makes an
                :class:`~tidings.outbox.AsyncConsumer` (``"threads"``, the default, a
                :class:`~tidings.outbox.Consumer`).

        Raises:
            TidingsRuntimeError: The outbox has no transport.
            TidingsValueError: ``pool`` is neither.
        """
        if self.transport is None:
            raise TidingsRuntimeError(
                f"{self!r} has no transport: create it with Outbox(engine, transport=...)"
            )
        receivers = options.pop("receivers", None)
        if receivers is None:
            known = self.receivers if self.receivers is not None else iter_registered()
            receivers = [spec for spec in known if spec.delivery in REMOTE_MODES]
        engine = self.engine
        options.setdefault("open_session", lambda: Session(engine))
        options.setdefault("node", self.node)
        pool = options.pop("pool", "threads")
        if pool not in ("threads", "asyncio"):
            raise TidingsValueError(f"pool must be 'threads' or 'asyncio', not {pool!r}")
        kind = AsyncConsumer if pool == "asyncio" else Consumer
        return kind(self.transport, receivers, **options)

    def setup(self) -> None:
        """Populate the app registry with :attr:`apps`, if any and not done yet."""
        if self.apps:
            from tidings.apps import apps

            if not apps.ready:
                apps.populate(self.apps)

    def write(
        self,
        signal: Signal,
        receivers: Sequence[str],
        sender: Any,
        named: dict[str, Any],
        *,
        connection: Connection | None = None,
    ) -> uuid.UUID:
        """Store one send for ``receivers``: the producer's side of durable delivery.

        Args:
            signal: The signal sent; it must have a stable ``name``.
            receivers: The stable names of the durable receivers to run.
            sender: The send's sender.
            named: The send's other keyword arguments.
            connection: Where to write, inside its open transaction, so the deliveries exist
                exactly when the transaction commits. None: a short transaction of its own
                through the engine, committed before this returns.

        Returns:
            The event id (every receiver's ``event.id``).

        Raises:
            PayloadTypeError: An argument cannot be stored; nothing was written.
            ValueError: The signal has no name.
        """
        if not signal.name:
            raise TidingsValueError(
                f"{signal!r} has no name: durable sends need Signal(name='...')"
            )
        shown = receivers[0] if len(receivers) == 1 else ", ".join(receivers)

        def where(argument: str) -> str:
            return f"{signal!r} cannot store argument {argument!r} for durable receiver {shown}"

        payload = encode({"sender": sender, **named}, where)
        event_id = uuid.uuid4()
        sent_at = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        if connection is not None:
            self._store.write(connection, event_id, signal.name, receivers, payload, sent_at)
        else:
            with self._store.transaction() as conn:
                self._store.write(conn, event_id, signal.name, receivers, payload, sent_at)
        return event_id

    def status(self) -> OutboxStatus:
        """Pending and in-flight deliveries, dead letters, the oldest pending one's send time."""
        return _operations.status(self._store)

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """The dead letters, oldest failure first (at most ``limit``).

        Raises:
            ValueError: ``limit`` is not None or an int of at least 1.
        """
        if limit is not None and (type(limit) is not int or limit < 1):
            raise TidingsValueError(
                f"dead_letters(limit=...) takes None or an int >= 1, got {limit!r}"
            )
        return _operations.dead_letters(self._store, limit)

    def retry(self, ids: Sequence[int] | None = None) -> int:
        """Move dead letters back to the pending deliveries, attempts reset.

        Args:
            ids: Dead-letter ids, or None for all.

        Returns:
            How many were moved.
        """
        return _operations.retry(self._store, ids)

    def purge(self, older_than: datetime.timedelta | float = 0) -> int:
        """Delete dead letters that failed longer ago than ``older_than`` (seconds or a delta).

        Returns:
            How many were deleted.

        Raises:
            ValueError: ``older_than`` is negative, or reaches back before the year 1.
        """
        seconds = (
            older_than.total_seconds()
            if isinstance(older_than, datetime.timedelta)
            else float(older_than)
        )
        if not seconds >= 0:
            raise TidingsValueError(
                f"purge(older_than=...) must not be negative, got {older_than!r}"
            )
        return _operations.purge(self._store, seconds)
