"""The one delivery path of the four send methods (beyond ``send()``'s fast path).

:class:`DeliveryPath` is a base class of :class:`tidings.Signal`. Given a plan (see
:mod:`tidings._connections`) it takes the snapshot, then delivers each matching receiver in
call order: an immediate receiver is called; a deferred one is offered to its mode's handler
(:mod:`tidings._delivery`) and called in its place if the handler declines. ``send`` and
``send_robust`` call the sync receivers in the calling thread and run the async ones in a
private event loop, or through the awaiter (:mod:`tidings._async`) inside a running loop.
``asend`` and ``asend_robust`` deliver consecutive sync receivers together, on the loop when
connected with ``inline=True`` and in one worker thread call otherwise, then the async ones
concurrently.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

from tidings import _async
from tidings._connections import Connection, Plan
from tidings._delivery import IMMEDIATE, ON_COMMIT, Deferral, handler_for
from tidings._errors import (
    AsyncReceiversInEventLoopError,
    InvalidDeliveryError,
    TidingsTypeError,
)
from tidings._refs import describe, safe_repr, safe_str

__all__ = ["DeliveryPath", "Responses"]

logger = logging.getLogger("tidings")

Responses = list[tuple[Callable[..., Any], Any]]
Pairs = list[tuple[Connection, Callable[..., Any]]]


class DeliveryPath:
    """How a signal delivers the receivers of one send; see the module docstring."""

    __slots__ = ()

    def _arguments(self, sender: Any, named: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of every receiver call, built once per send."""
        if "signal" in named:
            raise TidingsTypeError(
                f"{self!r} was sent a keyword argument named 'signal', which receivers "
                "already receive: the signal itself. Rename the argument."
            )
        return {"signal": self, "sender": sender, **named}

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

    def _deferred(self, connection: Connection, kwargs: dict[str, Any]) -> bool:
        """Offer a deferred receiver to its mode's handler; return whether it was taken.

        Raises:
            InvalidDeliveryError: the mode's handler was removed since the connection.
        """
        handler = handler_for(connection.delivery)
        if handler is None:
            if connection.delivery is ON_COMMIT:
                return False  # no integration that opens transactions is loaded: run it now
            raise InvalidDeliveryError(
                f"{self!r} cannot deliver {connection.name}: no handler is registered for "
                f"delivery {connection.delivery.value!r} any more."
            )
        deferral = Deferral(
            self,
            connection.receiver,
            connection.name,
            connection.is_async,
            connection.delivery,
            connection.options,
            dict(kwargs),
        )
        return bool(handler.defer(deferral))

    def _run_sync(self, pairs: Pairs, kwargs: dict[str, Any], robust: bool) -> Responses:
        """Deliver sync receivers in order: defer them or call them in their place."""
        responses: Responses = []
        for connection, r in pairs:
            if connection.delivery is not IMMEDIATE and self._deferred(connection, kwargs):
                responses.append((r, connection.delivery))
            elif robust:
                try:
                    responses.append((r, r(**kwargs)))
                except Exception as error:
                    self._log_failure(r, error)
                    responses.append((r, error))
            else:
                responses.append((r, r(**kwargs)))
        return responses

    def _start_async(
        self, pairs: Pairs, kwargs: dict[str, Any], robust: bool, responses: Responses
    ) -> tuple[list[int], list[Any]]:
        """Defer async receivers or start them; return their slots and awaitables.

        Each receiver gets its slot in ``responses`` now (the marker when deferred); the
        awaitables' results fill the returned slots. If calling a receiver raises at once, the
        coroutines already created are closed, so none is left never awaited.
        """
        slots: list[int] = []
        awaitables: list[Any] = []
        try:
            for connection, r in pairs:
                if connection.delivery is not IMMEDIATE and self._deferred(connection, kwargs):
                    responses.append((r, connection.delivery))
                    continue
                slots.append(len(responses))
                responses.append((r, None))
                awaitables.append(self._await_robust(r, kwargs) if robust else r(**kwargs))
        except BaseException:
            _async.discard(awaitables)
            raise
        return slots, awaitables

    async def _await_robust(self, receiver: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        try:
            return await receiver(**kwargs)
        except Exception as error:
            self._log_failure(receiver, error)
            return error

    def _snapshot(self, plan: Plan) -> tuple[Pairs, Pairs]:
        """Every matching receiver resolved before any is called: (sync pairs, async pairs)."""
        entries = plan[3]
        targets = [c.receiver() for c in entries]
        pairs = [(c, r) for c, r in zip(entries, targets, strict=True) if r is not None]
        split = next((i for i, (c, _) in enumerate(pairs) if c.is_async), len(pairs))
        return pairs[:split], pairs[split:]

    def _deliver(
        self, plan: Plan, sender: Any, named: dict[str, Any], *, robust: bool
    ) -> Responses:
        kwargs = self._arguments(sender, named)
        awaiter = None
        in_loop = _async.in_running_loop()
        if in_loop and any(_may_run_now(c) for c in plan[3] if c.is_async):
            awaiter = _async.current_awaiter()
            if awaiter is None:
                raise self._in_loop_error(sender, robust, called=False)
        sync, asynchronous = self._snapshot(plan)
        responses = self._run_sync(sync, kwargs, robust)
        if not asynchronous:
            return responses
        slots, awaitables = self._start_async(asynchronous, kwargs, robust, responses)
        if awaitables:
            if not in_loop:
                results = _async.run_concurrently(awaitables)
            elif awaiter is not None or (awaiter := _async.current_awaiter()) is not None:
                results = awaiter(_async.gather(awaitables))
            else:
                _async.discard(awaitables)  # a handler declined while the loop is busy
                raise self._in_loop_error(sender, robust, called=True)
            for slot, result in zip(slots, results, strict=True):
                responses[slot] = (responses[slot][0], result)
        return responses

    async def _adeliver(
        self, plan: Plan, sender: Any, named: dict[str, Any], *, robust: bool
    ) -> Responses:
        if not plan[3]:
            return []
        kwargs = self._arguments(sender, named)
        sync, asynchronous = self._snapshot(plan)
        responses: Responses = []
        # Consecutive receivers run alike are delivered together: on the loop for inline
        # ones, in one worker thread call for the others, so their order is kept.
        for inline, group in itertools.groupby(sync, key=lambda pair: pair[0].inline):
            pairs = list(group)
            if inline:
                responses.extend(self._run_sync(pairs, kwargs, robust))
            else:
                responses.extend(await _async.run_in_thread(self._run_sync, pairs, kwargs, robust))
        if asynchronous:
            slots, awaitables = self._start_async(asynchronous, kwargs, robust, responses)
            if awaitables:
                results = await _async.gather(awaitables)
                for slot, result in zip(slots, results, strict=True):
                    responses[slot] = (responses[slot][0], result)
        return responses

    def _in_loop_error(
        self, sender: Any, robust: bool, *, called: bool
    ) -> AsyncReceiversInEventLoopError:
        error = AsyncReceiversInEventLoopError(
            f"{self!r}.{'send_robust' if robust else 'send'}() was called from a running "
            f"event loop while async receivers are connected for sender "
            f"{safe_repr(sender)}; use 'await signal.asend(...)' instead. "
            + (
                "The sync receivers were called before a delivery handler declined an async one."
                if called
                else "No receiver was called."
            )
        )
        error.receivers_called = called
        return error

    def _log_failure(self, receiver: object, error: Exception) -> None:
        try:
            name = getattr(receiver, "__qualname__", None)
        except Exception:
            name = None
        logger.error(
            "Error calling %s in Signal.send_robust() (%s)",
            name if isinstance(name, str) else describe(receiver),
            safe_str(error),
            exc_info=error,
        )


def _may_run_now(connection: Connection) -> bool:
    """Whether a send may call the receiver itself (immediate, or no handler to take it)."""
    return connection.delivery is IMMEDIATE or handler_for(connection.delivery) is None
