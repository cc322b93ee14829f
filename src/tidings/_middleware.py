"""What the ASGI and WSGI request-signal middlewares share; each keeps only its protocol's part.

* :class:`SignalsMiddlewareBase` holds the wrapped application and the sender of
  ``request_started``/``request_finished`` (the middleware's class unless ``sender=`` says
  otherwise, as Django sends its handler class).
* :func:`claim_report` decides, once per exception and request, who sends
  ``got_request_exception``: the first of a framework bridge and the middleware to see the
  exception claims it by marking the request's scope or environ under :data:`REPORTED_KEY`.

Standard library only; the signals themselves live in :mod:`tidings.http`.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Generic, TypeVar

__all__ = ["REPORTED_KEY", "SignalsMiddlewareBase", "claim_report"]

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

    def __init__(self, app: AppT, *, sender: object = None) -> None:
        self.app = app
        self.sender: object = type(self) if sender is None else sender

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.app!r})"


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
