"""Request signals for any ASGI application: a pure ASGI middleware, no framework needed.

Wrap the application (``app = SignalsMiddleware(app)``, or ``app.add_middleware(...)`` in
Starlette and FastAPI) and the signals of :mod:`tidings.http` are sent for every ``http``
request. ``lifespan`` and ``websocket`` scopes pass through untouched.

Timing, per ``http`` request:

1. ``request_started(sender=<middleware class>, scope=scope)`` is awaited before the application
   is called, so before the request body is read (Django reads the body first).
2. The application runs with a wrapped ``send``. The message that completes the response (the
   ``http.response.body`` without ``more_body``, a ``http.response.pathsend``, or the last
   ``http.response.trailers`` when trailers were announced) is passed to the server first;
   then ``request_finished(sender=<middleware class>)`` is awaited.
3. If an exception escapes the application, ``got_request_exception(sender=None,
   request=Request, exception=exc)`` is awaited and the exception is re-raised unchanged.
   An ``OSError`` from the server's own ``send`` (the client went away) is not reported as an
   application error.
4. If the request ends without a complete response (the application raised, returned early
   after the client disconnected, or the task was cancelled), ``request_finished`` is sent as
   the middleware exits, shielded from a repeated cancellation so it still runs exactly once.

request_finished and got_request_exception are sent with ``asend_robust``: a receiver that
raises is logged to the ``tidings`` logger, the other receivers still run, and nothing reaches
the server. By then the response is out and the server cannot act on an error any more; an
error raised to it would only make it drop the connection, and with it the next request a
keep-alive client has already sent on it. request_started is sent with ``asend``: a receiver
that raises stops the request.

Async receivers are awaited, sync receivers follow the dispatcher's policy (a worker thread
unless connected with ``inline=True``). With no receiver connected for any of the three signals
the application is called directly, with the server's own ``send``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tidings._middleware import SignalsMiddlewareBase, claim_report, is_wsgi_app
from tidings.http import (
    Request,
    got_request_exception,
    has_request_listeners,
    request_finished,
    request_started,
)

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "SignalsMiddleware",
    "report_exception",
]

Scope = MutableMapping[str, Any]
"""An ASGI connection scope."""
Message = MutableMapping[str, Any]
"""An ASGI event message."""
Receive = Callable[[], Awaitable[Message]]
"""The ASGI ``receive`` callable."""
Send = Callable[[Message], Awaitable[None]]
"""The ASGI ``send`` callable."""
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application."""

_logger = logging.getLogger("tidings.asgi")

_BODY_TYPES = frozenset({"http.response.body", "http.response.zerocopysend"})


def _log_orphan(task: asyncio.Task[Any]) -> None:
    # The waiter of a shielded request_finished was cancelled again; nobody else will look at
    # the outcome, so log a failure asend_robust let through (a BaseException) here instead of
    # letting asyncio complain at GC time.
    if not task.cancelled() and (exc := task.exception()) is not None:
        _logger.error("request_finished receiver failed", exc_info=exc)


class SignalsMiddleware(SignalsMiddlewareBase[ASGIApp]):
    """Send the :mod:`tidings.http` signals around every HTTP request of an ASGI app.

    Args:
        app: The ASGI application to wrap.
        sender: The ``sender`` of ``request_started`` and ``request_finished``; defaults to the
            middleware's class, as Django sends its handler class.

    Example:
        >>> from tidings.asgi import SignalsMiddleware
        >>> async def app(scope, receive, send): ...
        >>> app = SignalsMiddleware(app)
    """

    __slots__ = ()

    _other_kind = staticmethod(is_wsgi_app)
    _other_kind_advice = (
        "is a WSGI application (it is called with environ and "
        "start_response), but tidings.asgi.SignalsMiddleware wraps ASGI applications; "
        "wrap it with tidings.wsgi.SignalsMiddleware instead (for a Flask app, call "
        "tidings.flask.init_app(app))"
    )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection; see the module docstring for the signal timing."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sender = self.sender
        if not has_request_listeners(sender):
            await self.app(scope, receive, send)
            return
        await self._handle(scope, receive, send, sender)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, sender: object) -> None:
        await request_started.asend(sender, scope=scope)
        notify = request_finished.has_listeners(sender)
        finishing: asyncio.Task[Any] | None = None
        send_failed = False
        trailers = False

        def finish() -> asyncio.Task[Any] | None:
            nonlocal finishing
            if finishing is None and notify:
                # The receivers run in a task of their own: frameworks cancel the task that
                # streamed the body as soon as the response is complete (Starlette does), and
                # that must not cut request_finished short or skip it.
                finishing = asyncio.ensure_future(request_finished.asend_robust(sender))
            return finishing

        async def send_wrapper(message: Message) -> None:
            nonlocal send_failed, trailers
            try:
                await send(message)
            except OSError:
                # ASGI 2.4: a server raises an OSError subclass when the client has gone away.
                # That is not the application's error; a RuntimeError about a bad message is.
                send_failed = True
                raise
            kind = message["type"]
            if kind == "http.response.start":
                trailers = bool(message.get("trailers", False))
                return
            if finishing is not None:
                return
            if kind in _BODY_TYPES:
                done = not trailers and not message.get("more_body", False)
            elif kind == "http.response.pathsend":
                done = not trailers
            elif kind == "http.response.trailers":
                done = not message.get("more_trailers", False)
            else:
                done = False
            task = finish() if done else None
            if task is not None:
                # wait() neither raises into the application's ``send`` nor cancels the
                # receivers when the application's task is cancelled meanwhile.
                await asyncio.wait((task,))

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            if not send_failed:
                await report_exception(exc, scope)
            raise
        finally:
            task = finish()
            error = None if task is None else await _settle(task)
            if error is not None:
                # asend_robust has logged every receiver's Exception; what is left is a
                # BaseException such as SystemExit, which must not be swallowed.
                raise error


async def report_exception(exc: Exception, scope: Scope) -> None:
    """Send ``got_request_exception`` for an exception a framework turned into a response.

    For frameworks that catch errors before an ASGI middleware can see them. The signature is
    that of Litestar's ``after_exception`` hooks: a hook that skips Litestar's 4xx HTTP
    exceptions and awaits this is the whole bridge (see the http docs). The exception is
    recorded in the scope under :data:`tidings.http.REPORTED_KEY`, so the middleware does not
    report it again if it propagates later. A receiver that raises is logged (``tidings``
    logger); ``exc`` stays the error.

    Args:
        exc: The exception the application raised.
        scope: The ASGI scope of the failing request.
    """
    if not got_request_exception.has_listeners(None) or not claim_report(exc, scope):
        return
    # asend_robust logs a failing receiver; the application's exception must stay the error.
    await got_request_exception.asend_robust(None, request=Request.from_scope(scope), exception=exc)


async def _settle(task: asyncio.Task[Any]) -> BaseException | None:
    """Wait for the request_finished task, even under cancellation; return its error, if any."""
    if not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            # Cancelled again while waiting: the receivers keep running; report their outcome.
            task.add_done_callback(_log_orphan)
            raise
    return None if task.cancelled() else task.exception()
