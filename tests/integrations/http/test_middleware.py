"""What both middlewares share: the wrapped app, the sender, the repr."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from tidings import asgi, wsgi


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    """A do-nothing ASGI application."""


def wsgi_app(environ: Any, start_response: Any) -> Iterable[bytes]:
    """A do-nothing WSGI application."""
    return []


MIDDLEWARES = [
    pytest.param(asgi.SignalsMiddleware, asgi_app, id="asgi"),
    pytest.param(wsgi.SignalsMiddleware, wsgi_app, id="wsgi"),
]


@pytest.mark.parametrize(("middleware", "app"), MIDDLEWARES)
def test_sender_defaults_to_the_middleware_class(middleware: Any, app: Any) -> None:
    """Without ``sender=`` the sender is the middleware's class; with it, the given object."""
    site = object()
    assert middleware(app).sender is middleware
    assert middleware(app, sender=site).sender is site
    assert middleware(app).app is app


@pytest.mark.parametrize(("middleware", "app"), MIDDLEWARES)
def test_repr_names_the_middleware_and_the_app(middleware: Any, app: Any) -> None:
    """The repr shows the middleware's class name and the wrapped app's repr."""
    assert repr(middleware(app)) == f"SignalsMiddleware({app!r})"


@pytest.mark.parametrize(("middleware", "app"), MIDDLEWARES)
def test_middlewares_have_no_instance_dict(middleware: Any, app: Any) -> None:
    """Both middlewares keep ``__slots__`` through their shared base: no per-instance dict."""
    with pytest.raises(AttributeError):
        middleware(app).other = 1
