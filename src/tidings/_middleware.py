"""What the ASGI and WSGI request-signal middlewares share; each keeps only its protocol's part.

* :class:`SignalsMiddlewareBase` holds the wrapped application and the sender of
  ``request_started``/``request_finished`` (the middleware's class unless ``sender=`` says
  otherwise, as Django sends its handler class).
* The base checks the application's kind at construction, where it can tell:
  :func:`is_asgi_app` and :func:`is_wsgi_app` are true only when the application certainly is
  of that kind (a coroutine function or coroutine ``__call__``; a signature that takes exactly
  the other protocol's positional arguments). Anything undecidable is accepted.
* :func:`claim_report` decides, once per exception and request, who sends
  ``got_request_exception``: the first of a framework bridge and the middleware to see the
  exception claims it by marking the request's scope or environ under :data:`REPORTED_KEY`.

Standard library only; the signals themselves live in :mod:`tidings.http`.
"""

from __future__ import annotations

import inspect
from collections.abc import MutableMapping
from typing import Any, ClassVar, Generic, TypeVar

from tidings._errors import AppKindError

__all__ = ["REPORTED_KEY", "SignalsMiddlewareBase", "claim_report", "is_asgi_app", "is_wsgi_app"]

REPORTED_KEY = "tidings.reported_exception"

AppT = TypeVar("AppT")


class SignalsMiddlewareBase(Generic[AppT]):
    """The wrapped application and the sender; subclasses add the protocol's ``__call__``.

    Args:
        app: The application to wrap.
        sender: The ``sender`` of ``request_started`` and ``request_finished``; defaults to the
            middleware's class.
    """

    __slots__ = ("app", "sender")

    # What each protocol says about an app of the other kind (see _other_kind).
    _other_kind_advice: ClassVar[str] = ""

    def __init__(self, app: AppT, *, sender: object = None) -> None:
        self._check_app(app)
        self.app = app
        self.sender: object = type(self) if sender is None else sender

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.app!r})"

    @staticmethod
    def _other_kind(app: object) -> bool:
        """Whether ``app`` is certainly of the other protocol; each protocol overrides it."""
        return False

    @classmethod
    def _check_app(cls, app: object) -> None:
        """Raise :class:`tidings.AppKindError` for an application of the other kind."""
        if cls._other_kind(app):
            raise AppKindError(f"{app!r} {cls._other_kind_advice}")


def is_asgi_app(app: object) -> bool:
    """Whether ``app`` certainly is an ASGI application (never a WSGI one).

    Args:
        app: The application given to a middleware.

    Returns:
        True for a coroutine function, an object whose ``__call__`` is one (Starlette,
        FastAPI, any ASGI middleware), or a callable taking exactly ``(scope, receive, send)``.
    """
    # The class's __call__, as the call itself would find it (a bound method of a class whose
    # __call__ is ``async def`` is a coroutine function too, but lookups on the type are what
    # calling the instance uses).
    call = inspect.getattr_static(type(app), "__call__", None)
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call):
        return True
    return _takes(app, 3) is True and _takes(app, 2) is False


def is_wsgi_app(app: object) -> bool:
    """Whether ``app`` certainly is a WSGI application (never an ASGI one).

    Args:
        app: The application given to a middleware.

    Returns:
        True for a callable that is not a coroutine function and takes exactly
        ``(environ, start_response)`` (Flask, any WSGI function or middleware).
    """
    if is_asgi_app(app):
        return False
    return _takes(app, 2) is True and _takes(app, 3) is False


def _takes(app: object, count: int) -> bool | None:
    """Whether ``app`` can be called with ``count`` positional arguments; None if unknown."""
    if not callable(app):
        return None
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):  # builtins and C callables without a signature
        return None
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def claim_report(exc: BaseException, request: MutableMapping[str, Any]) -> bool:
    """Mark ``exc`` as reported for this request; return whether it was not reported yet.

    Args:
        exc: The exception about to be reported.
        request: The request's ASGI scope or WSGI environ.

    Returns:
        True when the caller should send ``got_request_exception`` for ``exc``.
    """
    if request.get(REPORTED_KEY) is exc:
        return False
    request[REPORTED_KEY] = exc
    return True
