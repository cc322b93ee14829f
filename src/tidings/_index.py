"""The connections of a signal, indexed per sender, and the plans its sends read.

:class:`ConnectionIndex` is the bookkeeping half of :class:`tidings.Signal`: every connection
by key, in connection order, split into the any-sender ones and each sender's own, and the
immutable per-sender plans (:mod:`tidings._connections`) a send reads without a lock.

* Connecting, disconnecting or purging one sender's connections replans that sender only,
  whatever the number of other senders; a change to an any-sender connection replans all.
* Every method but the weak-reference callbacks (``_note_death``, ``_note_unheard``),
  ``_plan`` and ``_speak`` runs with ``lock`` held. The callbacks only queue and raise the
  flag; the next operation (or send) purges under the lock, and reports the receivers that
  died before any send reached them once it holds no lock.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from tidings._connections import NO_PLAN, Connection, Plan, make_plan, own_plan, sender_plan
from tidings._errors import TidingsTypeError
from tidings._refs import UNHEARD_TYPES, Key, Site, unheard_death
from tidings._warnings import UncalledReceiverWarning

__all__ = ["ConnectionIndex", "ConnectionKey", "State", "uncalled_receivers_reported"]

ConnectionKey = tuple[Any, Key | None]
State = tuple[dict[Key, Plan], Plan, bool]

# Signals whose watched receiver died unheard, queued by weak-reference callbacks (a lock-free
# append) so that Apps.populate() can report the receivers its ready() hooks lost. Bounded:
# signals beyond it still report at their next operation.
_UNHEARD_SIGNALS: deque[ConnectionIndex] = deque(maxlen=64)


@contextlib.contextmanager
def uncalled_receivers_reported() -> Iterator[None]:
    """Report, when the block ends without an error, the watched receivers that died in it.

    The warnings of every signal whose watched receiver died unheard during the block are
    issued at its end. Deaths from before the block are left to their signals' next operation.
    """
    _UNHEARD_SIGNALS.clear()
    yield
    seen: set[int] = set()
    while _UNHEARD_SIGNALS:
        try:
            signal = _UNHEARD_SIGNALS.popleft()
        except IndexError:  # another thread emptied it
            return
        if id(signal) not in seen:
            seen.add(id(signal))
            signal._purge()


class ConnectionIndex:
    """A signal's connections and plans (a base of :class:`tidings.Signal`)."""

    def __init__(self) -> None:
        # Re-entrant, so that a caller can hold it to read and assign ``receivers`` atomically.
        self.lock = threading.RLock()
        # Every connection by key in connection order; the any-sender ones; each sender's own.
        # A sender's connections are indexed by its key so that connecting, disconnecting and
        # purging a sender touch only that sender's plan, whatever the number of other senders.
        self._table: dict[ConnectionKey, Connection] = {}
        self._anyone: dict[ConnectionKey, Connection] = {}
        self._own: dict[Key, dict[ConnectionKey, Connection]] = {}
        self._method_keys = 0  # how many keys of ``_own`` are a bound method's (id, id) pair
        self._order = itertools.count()
        # (plans by sender key, plan for every other sender, whether any key is a method's);
        # None exactly when nothing is connected.
        self._state: State | None = None
        # Keys of connections whose receiver or sender died, queued by weak-reference callbacks
        # (a lock-free append) for the next operation to purge under the lock.
        self._dying: deque[ConnectionKey] = deque()
        self._dead = False
        # Bound once: each connection's death callback is a partial of it, and binding the
        # method per connect would keep one more object alive per connection.
        self._on_death = self._note_death
        # What purges found of watched receivers that died before any send reached them,
        # reported once the purging operation holds no lock (see _speak).
        self._unheard: deque[tuple[str, Site]] = deque()

    @property
    def receivers(self) -> list[Connection]:
        """The connections, in connection order (dead ones included until purged).

        Assigning a list previously read from this property restores those connections,
        which is how test helpers (tidings.testing's ``muted``, factory_boy's ``mute_signals``)
        silence a signal and bring it back. Hold ``lock`` around the read and the assignment to
        make the pair atomic with respect to other threads.
        """
        with self.lock:
            return list(self._table.values())

    @receivers.setter
    def receivers(self, connections: Iterable[Connection]) -> None:
        connections = tuple(connections)
        for connection in connections:
            if not isinstance(connection, Connection):
                raise TidingsTypeError(
                    f"{self!r}.receivers accepts only connections read from a signal's "
                    f"receivers, not {connection!r}"
                )
        with self.lock:
            self._table, self._anyone, self._own, self._method_keys = {}, {}, {}, 0
            for connection in connections:
                adopted = connection.adopted_by(
                    self, functools.partial(self._on_death, connection.key)
                )
                # The restored connections may hold references that died meanwhile; the first
                # of two connections with one key wins, as when connecting.
                if adopted is not None and adopted.alive() and adopted.key not in self._table:
                    self._link(adopted)
            self._replan_all()

    def _note_death(self, key: ConnectionKey, _ref: object) -> None:
        # A weak-reference callback: it runs inside garbage collection, possibly while this
        # thread holds the lock, so it only queues the key (deque.append needs no lock) and
        # raises the flag. A stale plan left meanwhile is harmless: see _connections.
        self._dying.append(key)
        self._dead = True
        if type(_ref) in UNHEARD_TYPES:
            _UNHEARD_SIGNALS.append(self)

    def _note_unheard(self, ref: object) -> None:
        # The weak-reference callback of a receiver held outside any connection (one waiting
        # for a lazy sender): like _note_death, only lock-free appends and the flag, which
        # makes the next operation report it.
        death = unheard_death(ref)  # type: ignore[arg-type]
        if death is not None:
            self._unheard.append(death)
            self._dead = True
            _UNHEARD_SIGNALS.append(self)

    def _link(self, connection: Connection) -> None:
        """Add ``connection`` to the indexes, last in connection order (no replanning)."""
        connection.seq = next(self._order)
        key = connection.key
        self._table[key] = connection
        sender_key = key[1]
        if sender_key is None:
            self._anyone[key] = connection
            return
        own = self._own.get(sender_key)
        if own is None:
            own = self._own[sender_key] = {}
            self._method_keys += isinstance(sender_key, tuple)
        own[key] = connection

    def _unlink(self, connection: Connection) -> None:
        """Remove ``connection`` from the indexes (no replanning)."""
        key = connection.key
        del self._table[key]
        sender_key = key[1]
        if sender_key is None:
            del self._anyone[key]
            return
        own = self._own[sender_key]
        del own[key]
        if not own:
            del self._own[sender_key]
            self._method_keys -= isinstance(sender_key, tuple)

    def _replan(self, sender_key: Key | None) -> None:
        """Rebuild the plan of one sender, or every plan when an any-sender one changed."""
        state = self._state
        if sender_key is None or state is None or not self._table:
            self._replan_all()
            return
        plans, others, _ = state
        own = self._own.get(sender_key)
        if own:
            # Assigning one key of the shared dict is atomic: a send sees the old plan or the
            # new one, never a mix, and connecting N senders stays linear.
            plans[sender_key] = sender_plan(self._anyone.values(), own)
        else:
            plans.pop(sender_key, None)
        self._state = (plans, others, self._method_keys > 0)

    def _replan_all(self) -> None:
        if not self._table:
            self._state = None
            return
        anyone = tuple(self._anyone.values())
        plans = {key: sender_plan(anyone, own) for key, own in self._own.items()}
        self._state = (plans, make_plan(anyone, None), self._method_keys > 0)

    def _reap(self) -> None:
        """Purge the connections whose receiver or sender died, replanning only their senders.

        The flag goes down only after the plans are consistent again; a death queued while
        purging raises it again.
        """
        dying = self._dying
        everyone = False
        senders: set[Key] = set()
        while dying:
            key = dying.popleft()
            connection = self._table.get(key)
            if connection is None or connection.alive():
                continue  # already gone, or the key now belongs to a live connection
            self._unlink(connection)
            death = unheard_death(connection.receiver)
            if death is not None and (
                connection.identity is None or connection.identity() is not None
            ):
                # A receiver that died with its sender could not have been reached any more.
                self._unheard.append(death)
            if key[1] is None:
                everyone = True
            else:
                senders.add(key[1])
        if everyone:
            self._replan_all()
        else:
            for sender_key in senders:
                self._replan(sender_key)
        self._dead = False
        if dying:
            self._dead = True

    def _purge(self) -> State | None:
        with self.lock:
            if self._dead:
                self._reap()
            state = self._state
        if self._unheard:
            self._speak()
        return state

    def _speak(self) -> None:
        """Issue the warning of each receiver a purge found dead and never reached.

        Called without this signal's lock held by the operation itself. Each warning is taken
        off the queue before it is issued, so one turned into an error leaves the others for
        the next operation.
        """
        unheard = self._unheard
        while unheard:
            try:
                what, (filename, lineno, module) = unheard.popleft()
            except IndexError:  # another thread took the last one
                return
            if unheard:
                # Raised by the flag, so that the next operation (even a send's fast path)
                # reports the rest if this warning is turned into an error.
                self._dead = True
            warnings.warn_explicit(
                f"{what} was connected to {self!r} at {filename}:{lineno} and was "
                "garbage-collected before any send reached it, so it was never called: the "
                "signal holds receivers weakly and nothing else referenced it. Keep a "
                "reference to it (define it at module level, or store it), or connect it "
                "with weak=False.",
                UncalledReceiverWarning,
                filename,
                lineno,
                module=module,
            )

    def _plan(self, sender: Any) -> Plan:
        state = self._state
        if state is not None and self._dead:
            state = self._purge()
        if state is None:
            return NO_PLAN
        plans, others, by_method = state
        if by_method:
            return own_plan(plans, others, sender)
        plan = plans.get(id(sender), others)
        identity = plan[2]
        return others if identity is not None and identity() is not sender else plan
