"""Connections and plans: the bookkeeping behind :class:`tidings.Signal`.

A *connection* is one connected receiver: its identity key, getters for the receiver and the
sender (see :mod:`tidings._refs`), its flags and its delivery mode. A *plan* is what a send to
one sender needs, precomputed whenever that sender's connections change. Plans are immutable
tuples, so a send reads one without a lock. :class:`ReceiverInfo` is a live connection as
:meth:`tidings.Signal.live_receivers` lists it.

A plan built for one sender carries a getter of that sender's identity, and a send uses the
plan only if the getter yields the very object sent from. A sender's ``id()`` can be reused by
a new object once the sender has died; this check makes a stale plan (one still installed while
another thread purges the dead sender's connections) unusable for the newcomer, whatever the
interleaving of sends, deaths and purges.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tidings._delivery import IMMEDIATE, Delivery
from tidings._refs import (
    Getter,
    Key,
    id_of,
    identity_of,
    inherit_watch,
    peek,
    receiver_getter,
    sender_refs,
)

__all__ = [
    "NO_PLAN",
    "Connection",
    "Plan",
    "ReceiverInfo",
    "alive",
    "deref",
    "make_plan",
    "own_plan",
    "sender_plan",
]

EMPTY_OPTIONS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ReceiverInfo:
    """A live connection of a signal, as listed by :meth:`Signal.live_receivers`.

    Attributes:
        receiver: The connected callable (for a weakly connected bound method, a new bound
            method equal to the one connected).
        sender: The sender it was connected for, ``None`` for any sender.
        weak: Whether the signal references the receiver weakly.
        dispatch_uid: The ``dispatch_uid`` it was connected with, or ``None``.
        is_async: Whether it is awaited (an ``async def`` function or equivalent).
        inline: Whether ``asend`` calls it on the event loop instead of in a worker thread.
        delivery: Its delivery mode (:class:`tidings.Delivery`).
        options: The delivery mode's options it was connected with (read-only).
    """

    receiver: Callable[..., Any]
    sender: Any
    weak: bool
    dispatch_uid: Any
    is_async: bool
    inline: bool
    delivery: Delivery = Delivery.IMMEDIATE
    options: Mapping[str, Any] = field(default_factory=lambda: EMPTY_OPTIONS)


class Connection:
    """One connected receiver (a row of ``Signal.receivers``)."""

    __slots__ = (
        "delivery",
        "dispatch_uid",
        "identity",
        "inline",
        "is_async",
        "key",
        "name",
        "options",
        "owner",
        "receiver",
        "sender",
        "seq",
        "weak",
    )

    def __init__(
        self,
        owner: object,
        key: tuple[Any, Key | None],
        receiver: Callable[..., Any],
        sender: Any,
        *,
        on_death: Callable[[Any], None],
        is_async: bool,
        inline: bool,
        weak: bool,
        dispatch_uid: object,
        delivery: Delivery = Delivery.IMMEDIATE,
        options: Mapping[str, Any] = EMPTY_OPTIONS,
        name: str = "",
    ) -> None:
        # The owner is the signal whose bookkeeping ``on_death`` reports deaths to.
        self.owner = owner
        self.key = key
        self.receiver = receiver_getter(receiver, weak, on_death, owner)
        self.identity: Getter | None
        self.sender: Getter | None
        if sender is None:
            self.identity = self.sender = None
        else:
            self.identity, self.sender = sender_refs(sender, on_death)
        self.is_async = is_async
        self.inline = inline
        self.weak = weak
        self.dispatch_uid = dispatch_uid
        self.delivery = delivery
        self.options = options
        self.name = name
        self.seq = 0  # position in connection order, set by the signal when installed

    def adopted_by(self, owner: object, on_death: Callable[[Any], None]) -> Connection | None:
        """This connection for ``owner``: itself, or a copy whose references report to it.

        Returns None when the receiver or the sender has died.
        """
        if self.owner is owner:
            return self
        receiver = peek(self.receiver)
        sender = None if self.sender is None else self.sender()
        if receiver is None or (self.sender is not None and sender is None):
            return None
        copy = Connection(
            owner,
            self.key,
            receiver,
            sender,
            on_death=on_death,
            is_async=self.is_async,
            inline=self.inline,
            weak=self.weak,
            dispatch_uid=self.dispatch_uid,
            delivery=self.delivery,
            options=self.options,
            name=self.name,
        )
        inherit_watch(self.receiver, copy.receiver)
        return copy

    @property
    def sender_key(self) -> Key | None:
        """The sender's identity key, ``None`` for a connection to any sender."""
        return self.key[1]

    def alive(self) -> bool:
        """Whether neither the receiver nor the sender has died."""
        return peek(self.receiver) is not None and (
            self.identity is None or self.identity() is not None
        )

    def __repr__(self) -> str:
        target = peek(self.receiver)
        sender = None if self.sender is None else self.sender()
        return f"<connection of {target!r} for sender {sender!r}>"


# Calls a getter; operator.call is a C function (Python 3.11+), cheaper than a lambda.
deref: Callable[[Getter], Any] = getattr(operator, "call", lambda getter: getter())


def alive(getters: tuple[Getter, ...]) -> list[Callable[..., Any]]:
    """Dereference every getter first, then drop the dead: the snapshot a send works on."""
    return [r for r in list(map(deref, getters)) if r is not None]


# (getters of the immediate sync receivers, whether anything else matches (async receivers or
#  deferred ones: the send takes the general path), the sender's identity getter or None for
#  the plan of every other sender, every matching connection in call order (sync ones first),
#  whether asend can call them all on the loop (immediate, sync, inline))
Plan = tuple[tuple[Getter, ...], bool, Getter | None, tuple[Connection, ...], bool]
NO_PLAN: Plan = ((), False, None, (), False)


def make_plan(connections: Iterable[Connection], identity: Getter | None) -> Plan:
    """The plan of the given connections (in connection order) for one sender.

    Args:
        connections: The matching connections, in connection order.
        identity: The identity getter of the sender the plan is for, ``None`` for the plan of
            senders without connections of their own.
    """
    sync: list[Connection] = []
    asynchronous: list[Connection] = []
    general = False
    inline_only = True
    for c in connections:
        if c.is_async:
            asynchronous.append(c)
            general = True
        else:
            sync.append(c)
            general = general or c.delivery is not IMMEDIATE
            inline_only = inline_only and c.inline
    entries = (*sync, *asynchronous)
    getters = tuple([c.receiver for c in sync])
    return (getters, general, identity, entries, bool(entries) and inline_only and not general)


def sender_plan(anyone: Iterable[Connection], own: dict[Any, Connection]) -> Plan:
    """The plan of one sender: its own and the any-sender connections, checked by identity."""
    connections = own.values()
    if not anyone and len(own) == 1:
        # The per-object sender: one receiver connected for it alone (kept cheap, since
        # connecting thousands of them must stay linear and fast).
        (c,) = connections
        if c.delivery is IMMEDIATE and not c.is_async:
            return ((c.receiver,), False, c.identity, (c,), c.inline)
    identity = next(iter(connections)).identity
    return make_plan(merged(anyone, connections) if anyone else connections, identity)


def own_plan(plans: dict[Key, Plan], others: Plan, sender: Any) -> Plan:
    """The plan for ``sender`` when some keys are bound methods' (a slower lookup)."""
    plan = plans.get(id_of(sender), others)
    identity = plan[2]
    if identity is not None and identity() is not identity_of(sender):
        return others
    return plan


def merged(anyone: Iterable[Connection], own: Iterable[Connection]) -> Iterable[Connection]:
    """The any-sender and one sender's connections (each in order), in connection order."""
    return heapq.merge(anyone, own, key=_SEQ)


_SEQ = operator.attrgetter("seq")
