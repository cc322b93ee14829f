"""Request signals, Django's three, for any ASGI or WSGI application.

The signals are sent by the middleware in :mod:`tidings.asgi` and :mod:`tidings.wsgi` (and by
the Flask bridge in :mod:`tidings.flask`); this module only defines them and the small request
object that :data:`got_request_exception` carries.

Semantics, per HTTP request that reaches the middleware:

* :data:`request_started` is sent with ``sender=<middleware class>`` and ``environ=`` (WSGI) or
  ``scope=`` (ASGI) before the application is called. When one of its receivers raises, the
  error propagates to the server and no other signal is sent for that request, as in Django.
* :data:`got_request_exception` is sent with ``sender=None``, ``request=`` (a :class:`Request`)
  and ``exception=`` when an exception escapes the application; the exception then propagates
  unchanged. Errors the application turns into responses itself (a 404, a framework's error
  page) are not exceptions the middleware can see.
* :data:`request_finished` is sent with ``sender=<middleware class>`` and no other argument,
  exactly once: after the last body chunk has been handed to the server, or when the request
  ends any other way (the application raised, the client went away, the task was cancelled).

Connecting a receiver is the usual ``signal.connect(receiver)``; receivers accept ``**kwargs``.
With no receiver connected the middleware does next to nothing, so it can stay installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tidings import Signal
from tidings._middleware import REPORTED_KEY as _REPORTED_KEY

__all__ = [
    "REPORTED_KEY",
    "Request",
    "got_request_exception",
    "has_request_listeners",
    "request_finished",
    "request_started",
]

request_started = Signal(name="request_started")
"""Sent before the application handles a request (``environ=`` or ``scope=``)."""

request_finished = Signal(name="request_finished")
"""Sent once per request, after the response has been delivered or the request was aborted."""

got_request_exception = Signal(name="got_request_exception")
"""Sent with ``sender=None``, ``request=`` and ``exception=`` when the application raises."""

REPORTED_KEY = _REPORTED_KEY
"""The scope or environ key under which the exception already reported for a request is kept.

Set by ``report_exception`` in :mod:`tidings.asgi` and :mod:`tidings.wsgi` (which framework
bridges call), so the middleware does not send got_request_exception twice for one exception.
"""


def has_request_listeners(sender: object) -> bool:
    """Whether any request signal would reach a receiver for a request handled by ``sender``.

    Middleware calls this once per request and skips all signal work when it is false.
    """
    return (
        request_started.has_listeners(sender)
        or request_finished.has_listeners(sender)
        or got_request_exception.has_listeners(None)
    )


def _latin1(value: bytes) -> str:
    # HTTP header bytes are ISO-8859-1 on the wire (RFC 9110); decoding that way never fails
    # and round-trips, which is also how PEP 3333 hands them to WSGI applications.
    return value.decode("latin-1")


@dataclass(frozen=True)
class Request:
    """What :data:`got_request_exception` receivers learn about the failing request.

    A small, immutable, framework-free view of an ASGI scope or a WSGI environ; it holds no
    reference to either, so receivers may keep it (for a report queue, say) without keeping the
    request alive.

    Attributes:
        method: The HTTP method, upper case (``"GET"``).
        path: The full request path, decoded to text (``/shop/café``), including the mount
            prefix (ASGI ``root_path`` / WSGI ``SCRIPT_NAME``) and without the query string.
        query_string: The raw query string, without ``?`` and still percent-encoded (``a=1&b=2``).
        headers: The request headers as ``(name, value)`` pairs in the order received, names in
            lower case; repeated headers stay repeated.
        client: The client's ``(host, port)``, or ``None`` when the server does not say. WSGI
            servers that set ``REMOTE_ADDR`` but not ``REMOTE_PORT`` give port ``0``.
        scheme: ``"http"`` or ``"https"`` as the server saw it.
    """

    method: str
    path: str
    query_string: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    client: tuple[str, int] | None = None
    scheme: str = "http"

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of a header, matched case-insensitively.

        Args:
            name: The header name, in any case (``"User-Agent"``).
            default: What to return when the request has no such header.

        Returns:
            The header's first value, or ``default``.
        """
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return default

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any]) -> Request:
        """Build a request from an ASGI ``http`` (or ``websocket``) connection scope.

        Args:
            scope: The ASGI connection scope.

        Returns:
            The request it describes.
        """
        raw_headers: Iterable[tuple[bytes, bytes]] = scope.get("headers") or ()
        client = scope.get("client")
        path: str = scope.get("path", "/")
        root_path: str = scope.get("root_path", "")
        # Servers disagree on whether ``path`` already starts with ``root_path`` (the ASGI spec
        # says it should); add the prefix only where it is missing.
        if root_path and not path.startswith(root_path):
            path = root_path + path
        return cls(
            method=scope.get("method", "GET"),
            path=path,
            query_string=_latin1(scope.get("query_string", b"")),
            headers=tuple((_latin1(k).lower(), _latin1(v)) for k, v in raw_headers),
            client=(str(client[0]), int(client[1])) if client else None,
            scheme=scope.get("scheme", "http"),
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> Request:
        """Build a request from a WSGI (PEP 3333) environ.

        Args:
            environ: The WSGI environ.

        Returns:
            The request it describes.
        """
        headers: list[tuple[str, str]] = []
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                headers.append((key[5:].replace("_", "-").lower(), value))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                headers.append((key.replace("_", "-").lower(), value))
        raw_path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        # PEP 3333 hands the path over as bytes-as-latin-1; browsers send UTF-8, so undo the
        # server's decoding to get the text the client meant.
        path = raw_path.encode("latin-1", "replace").decode("utf-8", "replace")
        addr = environ.get("REMOTE_ADDR")
        port = environ.get("REMOTE_PORT")
        client = (str(addr), int(port) if port and str(port).isdigit() else 0) if addr else None
        return cls(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=path or "/",
            query_string=environ.get("QUERY_STRING", ""),
            headers=tuple(headers),
            client=client,
            scheme=environ.get("wsgi.url_scheme", "http"),
        )
