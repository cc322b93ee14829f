"""The dispatcher: :class:`Signal` and the :func:`receiver` decorator.

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
  connections die with it, so a new object that reuses its ``id()`` inherits nothing. Senders
  that cannot be weakly referenced are held strongly while connected.
* **Threads.** ``lock`` serialises connect, disconnect and clean-up. A send reads an immutable
  snapshot of the matching plan and calls receivers without holding any lock, so receivers may
  connect, disconnect or send on the same signal. Weak-reference callbacks only raise a flag;
  dead connections are purged under the lock by the next operation.
* **Async.** ``send()`` calls async receivers concurrently in a fresh event loop after the sync
  ones; inside a running loop it refuses, before calling anything. ``asend()`` runs sync
  receivers in a worker thread (or inline on the loop when connected with ``inline=True``),
  then awaits the async receivers concurrently.
* **Errors.** ``send``/``asend`` let a receiver's exception propagate unchanged.
  ``send_robust``/``asend_robust`` catch :class:`Exception` per receiver, return it as that
  receiver's response and log it to the ``tidings`` logger.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tidings import _async
from tidings._connections import NO_PLAN, Connection, Plan, alive, deref, make_plan, make_plans
from tidings._errors import (
    AsyncReceiversInEventLoopError,
    InvalidReceiverError,
    InvalidSenderError,
    TidingsTypeError,
)
from tidings._refs import (
    Getter,
    Key,
    check_receiver,
    describe,
    id_of,
    safe_repr,
)

__all__ = ["ReceiverInfo", "Signal", "receiver"]

logger = logging.getLogger("tidings")

F = TypeVar("F", bound=Callable[..., Any])
Responses = list[tuple[Callable[..., Any], Any]]


class _Everyone(enum.Enum):
    """Sentinels meaning "every sender"."""

    ALL_SENDERS = enum.auto()  # Signal.live_receivers() called without a sender
    EVERY_PLAN = enum.auto()  # a change after which every sender's plan is rebuilt


ALL_SENDERS = _Everyone.ALL_SENDERS
_EVERY_PLAN = _Everyone.EVERY_PLAN


# asgiref's markcoroutinefunction sets this marker on Python < 3.12.
_ASGIREF_MARKER = getattr(asyncio.coroutines, "_is_coroutine", object())


def _is_async(func: object) -> bool:
    """Whether calling ``func`` returns a coroutine, decided once at connect time."""
    return inspect.iscoroutinefunction(func) or (
        getattr(func, "_is_coroutine", None) is _ASGIREF_MARKER
    )


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
    """

    receiver: Callable[..., Any]
    sender: Any
    weak: bool
    dispatch_uid: Any
    is_async: bool
    inline: bool


class Signal:
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
        # Re-entrant, so that a caller can hold it to read and assign ``receivers`` atomically.
        self.lock = threading.RLock()
        self._connections: tuple[Connection, ...] = ()
        # (plans by sender key, plan for every other sender, whether any key is a method's)
        self._state: tuple[dict[Key, Plan], Plan, bool] | None = None
        self._dead = False

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

        Raises:
            InvalidReceiverError: ``receiver`` is not callable, cannot be weakly referenced
                although ``weak`` is true, or is async while ``inline`` is true.
            InvalidSenderError: ``sender`` is a string and the signal was not created with
                ``string_senders=True``.
            ReceiverSignatureError: ``receiver`` does not accept ``**kwargs``.
        """
        self._check_sender(receiver, sender)
        self._connect(receiver, sender, weak, dispatch_uid, inline=inline)

    def _connect(
        self,
        receiver: Callable[..., Any],
        sender: Any,
        weak: bool,
        dispatch_uid: Any,
        *,
        inline: bool,
    ) -> None:
        """:meth:`connect` without the check of ``sender`` (any sender is taken literally)."""
        is_async = self._check_connectable(receiver, inline)
        sender_key = None if sender is None else id_of(sender)
        key = (dispatch_uid or id_of(receiver), sender_key)
        connection = Connection(
            self,
            key,
            receiver,
            sender,
            is_async=is_async,
            inline=inline,
            weak=weak,
            dispatch_uid=dispatch_uid or None,
        )
        with self.lock:
            live = self._live_connections()
            if not any(c.key == key for c in live):
                changed = sender_key if live is self._connections else _EVERY_PLAN
                self._install((*live, connection), changed)

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
            live = self._live_connections()
            for index, connection in enumerate(live):
                if connection.key == key:
                    changed = key[1] if live is self._connections else _EVERY_PLAN
                    self._install(live[:index] + live[index + 1 :], changed)
                    return True
            if len(live) != len(self._connections):
                self._install(live)
            return False

    @property
    def receivers(self) -> list[Connection]:
        """The connections, in connection order (dead ones included until purged).

        Assigning a list previously read from this property restores those connections,
        which is how test helpers (tidings.testing's ``muted``, factory_boy's ``mute_signals``)
        silence a signal and bring it back. Hold ``lock`` around the read and the assignment to
        make the pair atomic with respect to other threads.
        """
        return list(self._connections)

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
            adopted = (c.adopted_by(self) for c in connections)
            self._install(tuple(c for c in adopted if c is not None))
            self._dead = True  # the restored connections may hold dead references

    @property
    def sender_receivers_cache(self) -> dict[Any, Any]:
        """Always an empty dict: tidings keeps no cache to clear (plans are rebuilt on change).

        Present because code written for Django clears it after swapping ``receivers``.
        """
        return {}

    # -- sending ----------------------------------------------------------------------------

    def send(self, sender: Any, **named: Any) -> Responses:
        """Call every receiver matching ``sender``; return ``[(receiver, response), ...]``.

        A receiver's exception propagates at once; receivers after it are not called.

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
        sync, asynchronous, _ = plans.get(id_of(sender) if by_method else id(sender), others)
        if asynchronous:
            return self._send_mixed(self._arguments(sender, named), sync, asynchronous, False)
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
        for r in list(map(deref, sync)):
            if r is not None:
                responses.append((r, r(**kwargs)))
        return responses

    def send_robust(self, sender: Any, **named: Any) -> Responses:
        """Like :meth:`send`, but a receiver's :class:`Exception` becomes its response.

        Each caught exception keeps its ``__traceback__`` and is logged to the ``tidings``
        logger at ERROR level with ``exc_info``. ``BaseException`` subclasses that are not
        ``Exception`` (``KeyboardInterrupt``, ``SystemExit``, cancellation) propagate.
        """
        sync, asynchronous, _ = self._plan(sender)
        if not (sync or asynchronous):
            return []
        kwargs = self._arguments(sender, named)
        if asynchronous:
            return self._send_mixed(kwargs, sync, asynchronous, True)
        return self._call_robust(alive(sync), kwargs)

    async def asend(self, sender: Any, **named: Any) -> Responses:
        """Call every receiver matching ``sender`` from async code.

        Sync receivers run first, in connection order, in a worker thread (or on the loop when
        connected with ``inline=True``); then async receivers run concurrently. Results come
        in the same order as from :meth:`send`. The first exception propagates.
        """
        _, asynchronous, runs = self._plan(sender)
        if not asynchronous and len(runs) == 1 and runs[0][0]:
            # Only inline receivers: nothing to await, so this is send() without the loop check.
            return self._call(alive(runs[0][1]), self._arguments(sender, named))
        return await self._asend(asynchronous, runs, sender, named, robust=False)

    async def asend_robust(self, sender: Any, **named: Any) -> Responses:
        """Like :meth:`asend`, catching and logging each receiver's :class:`Exception`."""
        _, asynchronous, runs = self._plan(sender)
        return await self._asend(asynchronous, runs, sender, named, robust=True)

    # -- introspection ----------------------------------------------------------------------

    def has_listeners(self, sender: Any = None) -> bool:
        """Whether a send from ``sender`` would reach at least one live receiver."""
        if self._state is None:
            return False  # integrations call this per request or per row: keep it cheap
        sync, asynchronous, _ = self._plan(sender)
        return bool(sync or asynchronous)

    def live_receivers(self, sender: Any = ALL_SENDERS) -> list[ReceiverInfo]:
        """List the live connections (tidings extension; Django has only private helpers).

        Args:
            sender: Without it, every live connection in connection order. With it, the
                receivers a send from ``sender`` would call, in the order it would call them.
        """
        connections = [c for c in self._connections if c.alive()]
        if sender is not ALL_SENDERS:
            key = id_of(sender)
            connections = [c for c in connections if c.sender_key in (None, key)]
            connections.sort(key=lambda c: c.is_async)
        infos = []
        for c in connections:
            target = c.receiver()
            owner = None if c.sender is None else c.sender()
            if target is not None and (c.sender is None or owner is not None):
                infos.append(
                    ReceiverInfo(target, owner, c.weak, c.dispatch_uid, c.is_async, c.inline)
                )
        return infos

    # -- internals --------------------------------------------------------------------------

    def _check_connectable(self, receiver: object, inline: bool) -> bool:
        """Validate a receiver for :meth:`connect`; return whether it is async.

        Raises:
            InvalidReceiverError: not callable, or async while ``inline`` is true.
            ReceiverSignatureError: no ``**kwargs`` parameter.
        """
        check_receiver(receiver, self)
        is_async = _is_async(receiver)
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

    def _flag_dead(self, _ref: object) -> None:
        # Runs inside garbage collection, possibly while this thread holds the lock: only flag.
        self._dead = True

    def _live_connections(self) -> tuple[Connection, ...]:
        """The connections without dead ones; call with the lock held."""
        if not self._dead:
            return self._connections
        self._dead = False
        return tuple(c for c in self._connections if c.alive())

    def _install(
        self, connections: tuple[Connection, ...], changed: Key | _Everyone | None = _EVERY_PLAN
    ) -> None:
        """Replace the connections and rebuild the plans; call with the lock held.

        ``changed`` names the only sender whose plan can differ (a connection for that sender
        was added or removed), so that connecting many senders stays linear; a change to the
        any-sender connections, or :data:`_EVERY_PLAN`, rebuilds every plan.
        """
        self._connections = connections
        if not connections:
            self._state = None
            return
        if changed is None or isinstance(changed, _Everyone) or self._state is None:
            plans, others = make_plans(connections)
        else:
            plans, others = dict(self._state[0]), self._state[1]
            relevant = [c for c in connections if c.sender_key in (None, changed)]
            if any(c.sender_key is not None for c in relevant):
                plans[changed] = make_plan(relevant)
            else:
                plans.pop(changed, None)
        self._state = (plans, others, any(isinstance(key, tuple) for key in plans))

    def _purge(self) -> tuple[dict[Key, Plan], Plan, bool] | None:
        with self.lock:
            live = self._live_connections()
            if live is not self._connections:
                self._install(live)
            return self._state

    def _plan(self, sender: Any) -> Plan:
        state = self._state
        if state is not None and self._dead:
            state = self._purge()
        if state is None:
            return NO_PLAN
        plans, others, by_method = state
        return plans.get(id_of(sender) if by_method else id(sender), others)

    def _arguments(self, sender: Any, named: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of every receiver call, built once per send."""
        if "signal" in named:
            raise TidingsTypeError(
                f"{self!r} was sent a keyword argument named 'signal', which receivers "
                "already receive: the signal itself. Rename the argument."
            )
        return {"signal": self, "sender": sender, **named}

    def _call(self, receivers: list[Callable[..., Any]], kwargs: dict[str, Any]) -> Responses:
        return [(r, r(**kwargs)) for r in receivers]

    def _call_robust(
        self, receivers: list[Callable[..., Any]], kwargs: dict[str, Any]
    ) -> Responses:
        responses: Responses = []
        for r in receivers:
            try:
                responses.append((r, r(**kwargs)))
            except Exception as error:
                self._log_failure(r, error)
                responses.append((r, error))
        return responses

    async def _await_robust(self, receiver: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        try:
            return await receiver(**kwargs)
        except Exception as error:
            self._log_failure(receiver, error)
            return error

    def _awaitables(
        self, receivers: list[Callable[..., Any]], kwargs: dict[str, Any], robust: bool
    ) -> list[Any]:
        if robust:
            return [self._await_robust(r, kwargs) for r in receivers]
        return [r(**kwargs) for r in receivers]

    def _send_mixed(
        self,
        kwargs: dict[str, Any],
        sync: tuple[Getter, ...],
        asynchronous: tuple[Getter, ...],
        robust: bool,
    ) -> Responses:
        if _async.in_running_loop():
            raise AsyncReceiversInEventLoopError(
                f"{self!r}.{'send_robust' if robust else 'send'}() was called from a running "
                f"event loop while async receivers are connected for sender "
                f"{kwargs['sender']!r}; use 'await signal.asend(...)' instead. "
                "No receiver was called."
            )
        sync_receivers = alive(sync)
        async_receivers = alive(asynchronous)
        responses = (self._call_robust if robust else self._call)(sync_receivers, kwargs)
        if async_receivers:
            results = _async.run_concurrently(self._awaitables(async_receivers, kwargs, robust))
            responses.extend(zip(async_receivers, results, strict=True))
        return responses

    async def _asend(
        self,
        asynchronous: tuple[Getter, ...],
        runs: tuple[tuple[bool, tuple[Getter, ...]], ...],
        sender: Any,
        named: dict[str, Any],
        *,
        robust: bool,
    ) -> Responses:
        if not runs and not asynchronous:
            return []
        kwargs = self._arguments(sender, named)
        snapshot = [(inline, alive(getters)) for inline, getters in runs]
        async_receivers = alive(asynchronous)
        call = self._call_robust if robust else self._call
        responses: Responses = []
        for inline, receivers in snapshot:
            if inline:
                responses.extend(call(receivers, kwargs))
            elif receivers:
                responses.extend(await _async.run_in_thread(call, receivers, kwargs))
        if async_receivers:
            results = await _async.gather(self._awaitables(async_receivers, kwargs, robust))
            responses.extend(zip(async_receivers, results, strict=True))
        return responses

    def _log_failure(self, receiver: object, error: Exception) -> None:
        try:
            name = getattr(receiver, "__qualname__", None)
        except Exception:
            name = None
        logger.error(
            "Error calling %s in Signal.send_robust() (%s)",
            name if isinstance(name, str) else safe_repr(receiver),
            error,
            exc_info=error,
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
