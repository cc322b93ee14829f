"""Request signals for any WSGI (PEP 3333) application, no framework needed.

Wrap the application (``app = SignalsMiddleware(app)``, or ``app.wsgi_app =
SignalsMiddleware(app.wsgi_app)`` in Flask) and the signals of :mod:`tidings.http` are sent for
every request:

1. ``request_started(sender=<middleware class>, environ=environ)`` before the application is
   called.
2. ``got_request_exception(sender=None, request=Request, exception=exc)`` when the application
   raises, either while it is called or while the server iterates the response body; the
   exception then propagates unchanged to the server.
3. ``request_finished(sender=<middleware class>)`` from the ``close()`` of the response
   iterable, which PEP 3333 servers call after the last chunk has been written (or the
   client went away), as Django does; or, when the application raised before returning a
   response, as the exception leaves the middleware. Exactly once either way. A server that
   never calls ``close()`` never gets ``request_finished``, as with Django. The application's
   own ``close()`` is called exactly once, first, also when the server stops iterating early.

request_finished and got_request_exception are sent with ``send_robust``: a receiver that
raises is logged to the ``tidings`` logger and the other receivers still run. Raised from
``close()``, the error could only make the server drop the connection, and with it the next
request a keep-alive client has already sent (Django raises it). request_started is sent with
``send``: a receiver that raises stops the request.

An exception already reported by a framework bridge (see :mod:`tidings.flask`) is marked in the
environ under :data:`tidings.http.REPORTED_KEY` and not reported twice. With no receiver
connected for any of the three signals the application's own response is returned untouched.
With receivers, a response made with the server's ``wsgi.file_wrapper`` is still returned as
is, its ``close()`` hooked, so the server keeps its file fast path; other responses are
wrapped, keeping ``len()`` (which servers use to set ``Content-Length``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tidings._middleware import SignalsMiddlewareBase, claim_report, is_asgi_app
from tidings.http import (
    Request,
    got_request_exception,
    has_request_listeners,
    request_finished,
    request_started,
)

__all__ = [
    "SignalsMiddleware",
    "StartResponse",
    "WSGIApp",
    "WSGIEnviron",
    "report_exception",
]

WSGIEnviron = dict[str, Any]
"""A WSGI environ."""

StartResponse = Callable[..., Callable[[bytes], object]]
"""The WSGI ``start_response`` callable: ``(status, headers, exc_info=None) -> write``."""

WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]
"""A WSGI application."""


def report_exception(exc: Exception, environ: WSGIEnviron) -> None:
    """Send ``got_request_exception`` for an exception a framework turned into a response.

    For frameworks that catch errors before a WSGI middleware can see them (Flask's bridge in
    :mod:`tidings.flask` uses this). The exception is recorded in ``environ`` under
    :data:`tidings.http.REPORTED_KEY`, so the middleware does not report it again if it
    propagates later. A receiver that raises is logged (``tidings`` logger); ``exc`` stays the
    error.

    Args:
        exc: The exception the application raised.
        environ: The WSGI environ of the failing request.
    """
    if not got_request_exception.has_listeners(None) or not claim_report(exc, environ):
        return
    # send_robust logs a failing receiver; the application's exception must stay the error.
    got_request_exception.send_robust(None, request=Request.from_environ(environ), exception=exc)


def _send_finished(sender: object) -> None:
    # Robust: the response is out (or the request is over) by now, so the server cannot act on a
    # receiver's error; raised from close() it would only make the server drop the keep-alive
    # connection and the next request already sent on it. send_robust logs it instead.
    request_finished.send_robust(sender)


class _FinishingClose:
    """A ``close()`` that closes the application's response, then sends request_finished once."""

    __slots__ = ("_close", "_closed", "_sender")

    def __init__(self, close: Callable[[], object] | None, sender: object) -> None:
        self._close = close
        self._sender = sender
        self._closed = False

    def __call__(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._close is not None:
                self._close()
        finally:
            _send_finished(self._sender)


class _ClosingIterable:
    """The response body, passed through, whose ``close()`` sends request_finished."""

    __slots__ = ("_environ", "_finish", "_inner")

    def __init__(self, inner: Iterable[bytes], environ: WSGIEnviron, sender: object) -> None:
        self._inner = inner
        self._environ = environ
        self._finish = _FinishingClose(getattr(inner, "close", None), sender)

    def __iter__(self) -> Iterator[bytes]:
        # Not ``yield from``: when the server drops this generator unfinished (the client went
        # away), closing it would close the application's iterator too (PEP 380), and the
        # server's own close() would then close it a second time. PEP 3333 says once.
        chunks = iter(self._inner)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except Exception as exc:
                report_exception(exc, self._environ)
                raise
            yield chunk

    def close(self) -> None:
        """Close the application's iterable, then send request_finished (once)."""
        self._finish()


class _SizedClosingIterable(_ClosingIterable):
    """A :class:`_ClosingIterable` that keeps ``len()``, which servers use for Content-Length."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._inner)  # type: ignore[arg-type]


class SignalsMiddleware(SignalsMiddlewareBase[WSGIApp]):
    """Send the :mod:`tidings.http` signals around every request of a WSGI application.

    Args:
        app: The WSGI application to wrap.
        sender: The ``sender`` of ``request_started`` and ``request_finished``; defaults to the
            middleware's class, as Django sends its handler class.

    Example:
        >>> from tidings.wsgi import SignalsMiddleware
        >>> def app(environ, start_response): ...
        >>> app = SignalsMiddleware(app)
    """

    __slots__ = ()

    _other_kind = staticmethod(is_asgi_app)
    _other_kind_advice = (
        "is an ASGI application (it is called with scope, receive and send "
        "and must be awaited), but tidings.wsgi.SignalsMiddleware wraps WSGI "
        "applications; use tidings.asgi.SignalsMiddleware instead (in Starlette or "
        "FastAPI: app.add_middleware(tidings.asgi.SignalsMiddleware))"
    )

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        """Handle one request; see the module docstring for the signal timing."""
        sender = self.sender
        if not has_request_listeners(sender):
            return self.app(environ, start_response)
        request_started.send(sender, environ=environ)
        try:
            result = self.app(environ, start_response)
        except Exception as exc:
            try:
                report_exception(exc, environ)
            finally:
                _send_finished(sender)
            raise
        except BaseException:
            _send_finished(sender)
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # Wrapping the server's own file wrapper would lose its sendfile fast path; hook
            # its close() instead, as Django does.
            closer = _FinishingClose(getattr(result, "close", None), sender)
            with contextlib.suppress(AttributeError):  # a wrapper with __slots__: wrap it
                result.close = closer  # type: ignore[attr-defined]
                return result
        if hasattr(result, "__len__"):
            return _SizedClosingIterable(result, environ, sender)
        return _ClosingIterable(result, environ, sender)
