"""The lease heartbeat: a relay's thread that keeps the leases of the deliveries in its hands.

A claim leases its rows for ``lease`` seconds, and a relay holds them longer than the time its
receivers take: the rows whose receivers returned stay leased until the next claim records
them. A batch of slow receivers, or one receiver slower than the lease, would let the leases
expire under a live relay, and another relay would claim those rows and run them a second
time, no worker having died. So while a relay holds rows, this thread renews their leases
every third of the lease, whatever the receiver in hand is doing; a relay holding nothing
writes nothing, and a batch shorter than a third of the lease is renewed at most once.

On SQLite it renews the database's relay lease in the same transaction (one relay runs per
database file, and a relay waiting for the file takes it over once that lease expires). If
another relay holds it by then, the heartbeat says so in :attr:`Heartbeat.lost`: the relay
stops running the batch and waits for the lease again.

An engine whose pool hands every thread the same connection (``StaticPool``, a common setup
for an in-memory SQLite database in tests) gets no heartbeat: a second thread's transaction on
the connection the receivers use would end theirs. Its leases are not renewed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from tidings.outbox._records import Claimed
from tidings.outbox._store import Store

__all__ = ["Heartbeat"]

logger = logging.getLogger("tidings.outbox")

#: Seconds stop() waits for a renewal in progress before it leaves the thread to end alone.
_JOIN_TIMEOUT = 5.0


class Heartbeat:
    """Renews a relay's leases from a thread of its own while the relay holds deliveries.

    Args:
        store: The outbox's store.
        me: The relay's name in the leases.
        lease: The relay's lease, in seconds.
    """

    def __init__(self, store: Store, me: str, lease: float) -> None:
        self._store = store
        self._me = me
        self._lease = lease
        self._held: Sequence[Claimed] = ()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._shared = isinstance(store.engine.pool, StaticPool)
        #: Set when the SQLite relay lease turned out to be another relay's.
        self.lost = threading.Event()

    def hold(self, rows: Sequence[Claimed]) -> None:
        """The deliveries the relay holds from now on, in place of those before.

        Kept as they are (the relay does not change them): their ids are read only when a
        renewal is due, off the relay's path.
        """
        self._held = rows
        if rows and self._thread is None and not self._shared:
            # Each thread has its own stop event: one left behind by stop() never runs on.
            self._stopping = threading.Event()
            self._thread = threading.Thread(
                target=self._run,
                args=(self._stopping,),
                name=f"tidings lease heartbeat {self._me}",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop renewing (a later hold starts another thread).

        Waits for a renewal in progress to end, for a few seconds at most: a daemon thread held
        up in the database longer (a connection gone silent) ends on its own once it returns,
        without delaying the relay's shutdown.
        """
        self._held = ()
        if self._thread is not None:
            self._stopping.set()
            self._thread.join(_JOIN_TIMEOUT)
            self._thread = None

    def _run(self, stopping: threading.Event) -> None:
        interval = self._lease / 3
        while not stopping.wait(interval):
            held = self._held
            if not held:
                continue
            try:
                kept = self._store.extend(self._me, [row.id for row in held], self._lease)
            except Exception as exc:  # the thread must outlive any failure: it is the leases'
                logger.warning(
                    "relay %s cannot renew the lease of the %d deliveries it holds (%s); "
                    "trying again in %.1f s",
                    self._me,
                    len(held),
                    exc.orig if isinstance(exc, DBAPIError) else repr(exc),
                    interval,
                )
                continue
            if not kept and not self.lost.is_set():
                logger.warning(
                    "relay %s lost the relay lease of its SQLite database to another relay: "
                    "it stops running its batch",
                    self._me,
                )
                self.lost.set()
