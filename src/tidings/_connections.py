"""Connections and plans: the bookkeeping behind :class:`tidings.Signal`.

A *connection* is one connected receiver: its identity key, getters for the receiver and the
sender (see :mod:`tidings._refs`), and its flags. A *plan* is what a send to one sender needs,
precomputed whenever the connections change: the sync getters, the async getters, and the sync
getters grouped into runs of equal ``inline`` flags (for ``asend``). Plans are immutable
tuples, so a send can read one without a lock.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tidings._refs import Getter, Key, receiver_getter, sender_getter

if TYPE_CHECKING:
    from tidings._dispatch import Signal

__all__ = ["NO_PLAN", "Connection", "Plan", "alive", "deref", "make_plan", "make_plans"]


class Connection:
    """One connected receiver (a row of ``Signal.receivers``)."""

    __slots__ = (
        "dispatch_uid",
        "inline",
        "is_async",
        "key",
        "owner",
        "receiver",
        "sender",
        "weak",
    )

    def __init__(
        self,
        owner: Signal,
        key: tuple[Any, Key | None],
        receiver: Callable[..., Any],
        sender: Any,
        *,
        is_async: bool,
        inline: bool,
        weak: bool,
        dispatch_uid: object,
    ) -> None:
        # The owner is the signal whose dead flag the references' callbacks raise.
        self.owner = owner
        self.key = key
        self.receiver = receiver_getter(receiver, weak, owner._flag_dead, owner)
        self.sender = None if sender is None else sender_getter(sender, owner._flag_dead)
        self.is_async = is_async
        self.inline = inline
        self.weak = weak
        self.dispatch_uid = dispatch_uid

    def adopted_by(self, signal: Signal) -> Connection | None:
        """This connection for ``signal``: itself, or a copy whose references flag ``signal``.

        Returns None when the receiver or the sender has died.
        """
        if self.owner is signal:
            return self
        receiver = self.receiver()
        sender = None if self.sender is None else self.sender()
        if receiver is None or (self.sender is not None and sender is None):
            return None
        return Connection(
            signal,
            self.key,
            receiver,
            sender,
            is_async=self.is_async,
            inline=self.inline,
            weak=self.weak,
            dispatch_uid=self.dispatch_uid,
        )

    @property
    def sender_key(self) -> Key | None:
        return self.key[1]

    def alive(self) -> bool:
        return self.receiver() is not None and (self.sender is None or self.sender() is not None)

    def __repr__(self) -> str:
        return f"<connection of {self.receiver()!r} for sender {self.sender and self.sender()!r}>"


# Calls a getter; operator.call is a C function (Python 3.11+), cheaper than a lambda.
deref: Callable[[Getter], Any] = getattr(operator, "call", lambda getter: getter())


def alive(getters: tuple[Getter, ...]) -> list[Callable[..., Any]]:
    """Dereference every getter first, then drop the dead: the snapshot a send works on."""
    return [r for r in list(map(deref, getters)) if r is not None]


Plan = tuple[tuple[Getter, ...], tuple[Getter, ...], tuple[tuple[bool, tuple[Getter, ...]], ...]]
NO_PLAN: Plan = ((), (), ())


def make_plan(connections: Iterable[Connection]) -> Plan:
    sync: list[Connection] = []
    asynchronous: list[Getter] = []
    for connection in connections:
        if connection.is_async:
            asynchronous.append(connection.receiver)
        else:
            sync.append(connection)
    runs: list[tuple[bool, list[Getter]]] = []
    for connection in sync:
        if runs and runs[-1][0] == connection.inline:
            runs[-1][1].append(connection.receiver)
        else:
            runs.append((connection.inline, [connection.receiver]))
    return (
        tuple(c.receiver for c in sync),
        tuple(asynchronous),
        tuple((inline, tuple(getters)) for inline, getters in runs),
    )


def make_plans(connections: tuple[Connection, ...]) -> tuple[dict[Key, Plan], Plan]:
    """Every sender's plan and the plan for any other sender, in one pass per plan."""
    others: list[tuple[int, Connection]] = []
    own: dict[Key, list[tuple[int, Connection]]] = {}
    for index, connection in enumerate(connections):
        if connection.sender_key is None:
            others.append((index, connection))
        else:
            own.setdefault(connection.sender_key, []).append((index, connection))
    plans = {
        key: make_plan(c for _, c in heapq.merge(others, entries, key=_FIRST))
        for key, entries in own.items()
    }
    return plans, make_plan(c for _, c in others)


_FIRST = operator.itemgetter(0)
