"""The dispatcher: :class:`Signal` and the :func:`receiver` decorator.

The connections' bookkeeping (indexes per sender, plans, purging the dead, reporting receivers
that died unheard) is :class:`tidings._index.ConnectionIndex`; the delivery of one send's
receivers is :class:`tidings._calls.DeliveryPath`. Both are bases of :class:`Signal`.

Semantics (those of ``django.dispatch`` in Django 5.2, with its plain bugs fixed):

* **Matching.** A receiver connected with ``sender=None`` receives every send; one connected
  with a sender receives sends from exactly that object (identity, never equality, so any
  object, hashable or not, can be a sender). ``send(None)`` reaches only the ``sender=None``
  receivers.
* **Order.** Receivers are called in connection order, all sync receivers before all async
  ones. A connection is identified by ``(receiver or dispatch_uid, sender)``; connecting an
  identified pair again is ignored and the first connection keeps its place.
* **Snapshot.** Each send first resolves the matching receivers into strong references, then
  calls them: receivers connected during a send are not called by it, receivers disconnected
  (or garbage-collected) during it still are.
* **Lifetime.** Receivers are weakly referenced unless connected with ``weak=False``; a dead
  receiver is never called. Senders are weakly referenced where possible; when one dies its
  connections die with it, so a new object that reuses its ``id()`` inherits nothing (a
  sender's plan checks the sender's identity, so this holds under every interleaving with
  purges in other threads). Senders that cannot be weakly referenced are held strongly while
  connected.
* **Threads.** ``lock`` serialises connect, disconnect and clean-up. A send reads an immutable
  snapshot of the matching plan and calls receivers without holding any lock, so receivers may
  connect, disconnect or send on the same signal. Weak-reference callbacks only queue the dead
  connection's key and raise a flag; the next operation purges those connections under the
  lock, replanning only their senders. Connections are indexed per sender, so connecting,
  disconnecting or losing one sender costs the same whatever the number of other senders.
* **Uncalled receivers.** A watched receiver (see :mod:`tidings._refs`) that dies before any
  send reached it, while its sender (if any) lives, is queued by the purge; the operation that
  purged it issues one :class:`~tidings.UncalledReceiverWarning` per receiver once it holds no
  lock of its own, never from inside garbage collection.
* **Delivery.** Each connection has a delivery mode (:class:`tidings.Delivery`); a deferred
  receiver is handed to its mode's handler in its place in the call order and its response is
  the mode itself (see :mod:`tidings._delivery` and :mod:`tidings._calls`).
* **Async.** ``send()`` calls async receivers concurrently in a fresh event loop after the sync
  ones; inside a running loop it refuses, before calling anything. ``asend()`` runs sync
  receivers in a worker thread (or inline on the loop when connected with ``inline=True``),
  then awaits the async receivers concurrently.
* **Errors.** ``send``/``asend`` let a receiver's exception propagate unchanged.
  ``send_robust``/``asend_robust`` catch :class:`Exception` per receiver, return it as that
  receiver's response and log it to the ``tidings`` logger.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

from tidings._calls import DeliveryPath, Responses
from tidings._connections import (
    EMPTY_OPTIONS,
    Connection,
    ReceiverInfo,
    alive,
    deref,
    own_plan,
)
from tidings._delivery import IMMEDIATE, Delivery, resolve
from tidings._errors import (
    InvalidReceiverError,
    InvalidSenderError,
    TidingsTypeError,
)
from tidings._index import ConnectionIndex
from tidings._refs import (
    UNHEARD_TYPES,
    Getter,
    check_receiver,
    describe,
    id_of,
    inherit_watch,
    is_async_callable,
    peek,
)

__all__ = ["ReceiverInfo", "Signal", "receiver"]

F = TypeVar("F", bound=Callable[..., Any])


class _Everyone(enum.Enum):
    """Sentinel meaning "every sender"."""

    ALL_SENDERS = enum.auto()  # Signal.live_receivers() called without a sender


ALL_SENDERS = _Everyone.ALL_SENDERS


class Signal(ConnectionIndex, DeliveryPath):
    """A signal: receivers connect to it, senders send through it.

    Args:
        use_caching: Accepted for compatibility with Django. tidings always keeps a per-sender
            plan of receivers, for every sender kind, so the flag changes nothing.
        name: A name used in ``repr()`` and in error messages (tidings extension).
        string_senders: Allow ``connect(..., sender="...")`` with a string sender (tidings
            extension). Without it a string sender is refused, because on a plain signal it is
            almost always a lazy model reference meant for a ``ModelSignal``.

    Raises:
        TypeError: ``use_caching`` or ``string_senders`` is not a bool (``Signal("name")``
            passes the name as ``use_caching``: use ``Signal(name="name")``), or ``name`` is
            not a string.
    """

    def __init__(
        self,
        use_caching: bool = False,
        *,
        name: str | None = None,
        string_senders: bool = False,
    ) -> None:
        if not isinstance(use_caching, bool):
            hint = (
                f" To name the signal, pass it as a keyword: Signal(name={use_caching!r})."
                if isinstance(use_caching, str)
                else ""
            )
            raise TidingsTypeError(
                f"Signal(use_caching=...) must be True or False, not {use_caching!r}.{hint}"
            )
        if name is not None and not isinstance(name, str):
            raise TidingsTypeError(f"Signal(name=...) must be a string or None, not {name!r}")
        if not isinstance(string_senders, bool):
            raise TidingsTypeError(
                f"Signal(string_senders=...) must be True or False, not {string_senders!r}"
            )
        self.use_caching = use_caching
        self.name = name
        self.string_senders = string_senders
        super().__init__()

    def __repr__(self) -> str:
        cls = type(self)
        if self.name:
            return f"<{cls.__qualname__} {self.name!r}>"
        # The public path of the class: tidings.Signal, not the private module it lives in.
        module = "tidings" if cls.__module__ == __name__ else cls.__module__
        return f"<{module}.{cls.__qualname__} at {id(self):#x}>"

    # -- connecting -------------------------------------------------------------------------

    def connect(
        self,
        receiver: Callable[..., Any],
        sender: Any = None,
        weak: bool = True,
        dispatch_uid: Any = None,
        *,
        inline: bool = False,
        delivery: Delivery | str = Delivery.IMMEDIATE,
        **options: Any,
    ) -> None:
        """Connect ``receiver`` to this signal.

        Args:
            receiver: A callable accepting keyword arguments (``**kwargs``); it is called as
                ``receiver(signal=self, sender=sender, **named)``. ``async def`` receivers are
                awaited.
            sender: Receive only sends from this object (by identity); ``None`` for any sender.
            weak: Reference the receiver weakly, so that connecting it does not keep it alive.
            dispatch_uid: An identifier that replaces the receiver's identity, to prevent
                duplicate connections of equal receivers.
            inline: For a sync receiver: let ``asend``/``asend_robust`` call it directly on the
                event loop instead of in a worker thread. Only for receivers that return quickly
                and never block.
            delivery: When the receiver runs: ``"immediate"`` (inside the send, the default) or
                ``"on_commit"`` (after the current transaction commits); a
                :class:`tidings.Delivery` member or its value.
            **options: Options of the delivery mode, checked by the mode's handler.

        Raises:
            InvalidReceiverError: ``receiver`` is not callable, cannot be weakly referenced
                although ``weak`` is true, or is async while ``inline`` is true.
            InvalidSenderError: ``sender`` is a string and the signal was not created with
                ``string_senders=True``.
            ReceiverSignatureError: ``receiver`` does not accept ``**kwargs``.
            InvalidDeliveryError: ``delivery`` is not a usable delivery mode.
            DeliveryOptionsError: ``options`` holds options the mode does not take.
        """
        if isinstance(sender, str):
            self._check_sender(receiver, sender)
        self._connect(
            receiver, sender, weak, dispatch_uid, inline=inline, delivery=delivery, **options
        )
        if self._unheard:
            self._speak()

    def _connect(
        self,
        receiver: Callable[..., Any],
        sender: Any,
        weak: bool,
        dispatch_uid: Any,
        *,
        inline: bool,
        delivery: Delivery | str = Delivery.IMMEDIATE,
        origin: Getter | None = None,
        **options: Any,
    ) -> None:
        """:meth:`connect` without the check of ``sender`` (any sender is taken literally).

        ``origin``: the getter of an earlier hold of the receiver (a lazy sender's), whose
        connect site the connection keeps.
        """
        is_async = self._check_connectable(receiver, inline)
        mode = resolve(delivery, options, self, receiver)
        sender_key = None if sender is None else id_of(sender)
        key = (dispatch_uid or id_of(receiver), sender_key)
        connection = Connection(
            self,
            key,
            receiver,
            sender,
            on_death=functools.partial(self._on_death, key),
            is_async=is_async,
            inline=inline,
            weak=weak,
            dispatch_uid=dispatch_uid or None,
            delivery=mode,
            options=MappingProxyType(dict(options)) if options else EMPTY_OPTIONS,
            name="" if mode is IMMEDIATE else options.get("name") or describe(receiver),
        )
        if origin is not None:
            inherit_watch(origin, connection.receiver)
        with self.lock:
            if self._dead:
                self._reap()
            if key not in self._table:
                self._link(connection)
                self._replan(sender_key)

    def disconnect(
        self,
        receiver: Callable[..., Any] | None = None,
        sender: Any = None,
        dispatch_uid: Any = None,
    ) -> bool:
        """Disconnect a receiver; return whether one was connected.

        Args:
            receiver: The receiver to disconnect (ignored when ``dispatch_uid`` is given).
            sender: The sender it was connected for (``None`` if it was connected for any).
            dispatch_uid: The ``dispatch_uid`` it was connected with.
        """
        key = (dispatch_uid or id_of(receiver), None if sender is None else id_of(sender))
        with self.lock:
            if self._dead:
                self._reap()
            connection = self._table.get(key)
            if connection is not None:
                self._unlink(connection)
                self._replan(key[1])
        if self._unheard:
            self._speak()
        return connection is not None

    @property
    def sender_receivers_cache(self) -> dict[Any, Any]:
        """Always an empty dict: tidings keeps no cache to clear (plans are rebuilt on change).

        Present because code written for Django clears it after swapping ``receivers``.
        """
        return {}

    # -- sending ----------------------------------------------------------------------------

    def send(self, sender: Any, **named: Any) -> Responses:
        """Call every receiver matching ``sender``; return ``[(receiver, response), ...]``.

        A receiver's exception propagates at once; receivers after it are not called. A
        deferred receiver's response is its delivery mode (e.g. ``Delivery.ON_COMMIT``).

        Raises:
            AsyncReceiversInEventLoopError: async receivers match and the calling thread is
                running an event loop (use ``await asend(...)``); raised before any receiver
                runs.
            TypeError: ``named`` contains ``signal``, which every receiver receives already.
        """
        state = self._state
        if state is None:
            return []
        if self._dead:
            state = self._purge()
            if state is None:
                return []
        plans, others, by_method = state
        if by_method:
            plan = own_plan(plans, others, sender)
        else:
            plan = plans.get(id(sender), others)
            identity = plan[2]
            if identity is not None and identity() is not sender:
                plan = others  # the plan of a dead sender whose id() the sender reuses
        sync = plan[0]
        if plan[1]:
            return self._deliver(plan, sender, named, robust=False)
        if not sync:
            return []
        if "signal" in named:
            self._arguments(sender, named)  # raises the explanatory TypeError
        kwargs = {"signal": self, "sender": sender, **named}
        if len(sync) == 1:
            # The common case, without building a snapshot list: nothing else can run between
            # dereferencing the only receiver and calling it.
            r = sync[0]()
            return [] if r is None else [(r, r(**kwargs))]
        responses = []
        # The snapshot first (every receiver dereferenced before any is called), inline: a
        # call of alive() here costs the pure path about a tenth with 10 receivers.
        for r in list(map(deref, sync)):
            if r is not None:
                responses.append((r, r(**kwargs)))
        return responses

    def send_robust(self, sender: Any, **named: Any) -> Responses:
        """Like :meth:`send`, but a receiver's :class:`Exception` becomes its response.

        Each caught exception keeps its ``__traceback__`` and is logged to the ``tidings``
        logger at ERROR level with ``exc_info``. ``BaseException`` subclasses that are not
        ``Exception`` (``KeyboardInterrupt``, ``SystemExit``, cancellation) propagate, and so
        does an exception of a delivery mode's handler (it is not the receiver's failure).
        """
        plan = self._plan(sender)
        if not plan[3]:
            return []
        if plan[1]:
            return self._deliver(plan, sender, named, robust=True)
        return self._call_robust(alive(plan[0]), self._arguments(sender, named))

    async def asend(self, sender: Any, **named: Any) -> Responses:
        """Call every receiver matching ``sender`` from async code.

        Sync receivers run first, in connection order, in a worker thread (or on the loop when
        connected with ``inline=True``); then async receivers run concurrently. Results come
        in the same order as from :meth:`send`. The first exception propagates.
        """
        plan = self._plan(sender)
        if plan[4]:
            # Only inline receivers: nothing to await, so this is send() without the loop check.
            kwargs = self._arguments(sender, named)
            return [(r, r(**kwargs)) for r in alive(plan[0])]
        return await self._adeliver(plan, sender, named, robust=False)

    async def asend_robust(self, sender: Any, **named: Any) -> Responses:
        """Like :meth:`asend`, catching and logging each receiver's :class:`Exception`."""
        return await self._adeliver(self._plan(sender), sender, named, robust=True)

    # -- introspection ----------------------------------------------------------------------

    def has_listeners(self, sender: Any = None) -> bool:
        """Whether a send from ``sender`` would reach at least one live receiver."""
        if self._state is None:
            return False  # integrations call this per request or per row: keep it cheap
        # A loop, not any() over a generator: half the cost, and this runs once per row.
        # peek() only for watched references that no send reached yet: a plain getter is
        # called directly, which is what keeps this loop cheap.
        for c in self._plan(sender)[3]:
            getter = c.receiver
            if (peek(getter) if type(getter) in UNHEARD_TYPES else getter()) is not None:
                return True
        return False

    def has_connections(self) -> bool:
        """Whether anything at all is connected, for any sender (tidings extension).

        Cheaper than :meth:`has_listeners`: code that would send once per row or per request
        can skip building the send's arguments when this is False. Connections whose receiver
        or sender died count until they are purged, so True does not promise a live receiver.
        """
        return self._state is not None

    def live_receivers(self, sender: Any = ALL_SENDERS) -> list[ReceiverInfo]:
        """List the live connections (tidings extension; Django has only private helpers).

        Args:
            sender: Without it, every live connection in connection order. With it, the
                receivers a send from ``sender`` would call, in the order it would call them.
        """
        if sender is ALL_SENDERS:
            with self.lock:
                connections: Iterable[Connection] = list(self._table.values())
        else:
            connections = self._plan(sender)[3]
        infos = []
        for c in connections:
            target = peek(c.receiver)
            owner = None if c.sender is None else c.sender()
            if target is not None and (c.sender is None or owner is not None):
                infos.append(
                    ReceiverInfo(
                        target,
                        owner,
                        c.weak,
                        c.dispatch_uid,
                        c.is_async,
                        c.inline,
                        c.delivery,
                        c.options,
                    )
                )
        return infos

    # -- checks ----------------------------------------------------------------------------

    def _check_connectable(self, receiver: object, inline: bool) -> bool:
        """Validate a receiver for :meth:`connect`; return whether it is async.

        Raises:
            InvalidReceiverError: not callable, or async while ``inline`` is true.
            ReceiverSignatureError: no ``**kwargs`` parameter.
        """
        check_receiver(receiver, self)
        is_async = is_async_callable(receiver)
        if inline and is_async:
            raise InvalidReceiverError(
                f"Cannot connect {describe(receiver)} to {self!r} with inline=True: inline only "
                "applies to sync receivers; async receivers always run on the event loop."
            )
        return is_async

    def _check_sender(self, receiver: object, sender: object) -> None:
        """Refuse a string sender unless the signal takes them (``string_senders=True``).

        Raises:
            InvalidSenderError: ``sender`` is a string and the signal does not take them.
        """
        if not isinstance(sender, str) or self.string_senders:
            return
        raise InvalidSenderError(
            f"Cannot connect {describe(receiver)} to {self!r} with the string sender "
            f'{sender!r}: only a ModelSignal (post_save, ...) resolves "app_label.ModelName" '
            "references; a plain Signal would take the string literally. Connect the sender "
            "object itself, or create the signal with Signal(string_senders=True) if its "
            "senders really are strings."
        )


def receiver(signal: Signal | Sequence[Signal], **kwargs: Any) -> Callable[[F], F]:
    """Decorate a function to connect it to ``signal`` (or to each of a list of signals).

    Args:
        signal: A :class:`Signal`, or a list or tuple of them.
        **kwargs: Passed to each :meth:`Signal.connect` (``sender``, ``weak``, ``dispatch_uid``,
            ``inline``).

    Returns:
        A decorator returning the function unchanged.

    Example::

        @receiver(post_save, sender=User)
        def create_profile(sender, instance, created, **kwargs): ...
    """
    signals: list[object] = list(signal) if isinstance(signal, (list, tuple)) else [signal]
    for s in signals:
        if not isinstance(s, Signal):
            raise TidingsTypeError(f"@receiver() expects a Signal or a list of Signals, not {s!r}")
    checked = [s for s in signals if isinstance(s, Signal)]

    def connect(func: F) -> F:
        sender = kwargs.get("sender")
        for s in checked:
            # Check every plain signal before connecting any, so that a mistake connects
            # nothing (a ModelSignal, whose connect is its own, resolves string senders).
            if type(s).connect is Signal.connect:
                s._check_sender(func, sender)
        for s in checked:
            s.connect(func, **kwargs)
        return func

    return connect
