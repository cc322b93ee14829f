"""What both middlewares share: the wrapped app, the sender, the repr, the app-kind check."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Iterable
from typing import Any

import fastapi
import flask
import pytest
from starlette.applications import Starlette

import tidings.flask
from tidings import AppKindError, TidingsError, asgi, wsgi


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


class SyncCallableASGIApp:
    """An ASGI app whose ``__call__`` is a plain method returning the coroutine."""

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        return asgi_app(scope, receive, send)


def anything(*args: Any) -> Any:
    """A callable whose signature says nothing about its protocol."""


ASGI_APPS = [
    pytest.param(asgi_app, id="async-function"),
    pytest.param(Starlette(), id="starlette"),
    pytest.param(fastapi.FastAPI(), id="fastapi"),
    pytest.param(asgi.SignalsMiddleware(asgi_app), id="asgi-middleware"),
    pytest.param(functools.partial(asgi_app), id="partial"),
    pytest.param(SyncCallableASGIApp(), id="sync-call-three-arguments"),
]
WSGI_APPS = [
    pytest.param(wsgi_app, id="function"),
    pytest.param(flask.Flask("tidings_test_kinds"), id="flask"),
    pytest.param(wsgi.SignalsMiddleware(wsgi_app), id="wsgi-middleware"),
]
UNDECIDABLE = [
    pytest.param(anything, id="star-args"),
    pytest.param(print, id="builtin-without-signature"),
]


@pytest.mark.parametrize("app", ASGI_APPS)
def test_the_wsgi_middleware_rejects_an_asgi_app(app: Any) -> None:
    """An ASGI app given to the WSGI middleware fails at construction, naming the ASGI one."""
    with pytest.raises(AppKindError, match=r"is an ASGI application") as info:
        wsgi.SignalsMiddleware(app)
    assert "use tidings.asgi.SignalsMiddleware" in str(info.value)
    assert repr(app) in str(info.value)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, TidingsError)


@pytest.mark.parametrize("app", WSGI_APPS)
def test_the_asgi_middleware_rejects_a_wsgi_app(app: Any) -> None:
    """A WSGI app given to the ASGI middleware fails at construction, naming the WSGI one."""
    with pytest.raises(AppKindError, match=r"is a WSGI application") as info:
        asgi.SignalsMiddleware(app)
    assert "wrap it with tidings.wsgi.SignalsMiddleware" in str(info.value)
    assert "tidings.flask.init_app(app)" in str(info.value)
    assert repr(app) in str(info.value)


@pytest.mark.parametrize("app", ASGI_APPS)
def test_each_asgi_app_is_accepted_by_the_asgi_middleware(app: Any) -> None:
    """Every ASGI app shape, a sync ``__call__`` returning a coroutine included, is accepted."""
    assert asgi.SignalsMiddleware(app).app is app


@pytest.mark.parametrize("app", WSGI_APPS)
def test_each_wsgi_app_is_accepted_by_the_wsgi_middleware(app: Any) -> None:
    """Every WSGI app shape is accepted by the WSGI middleware."""
    assert wsgi.SignalsMiddleware(app).app is app


@pytest.mark.parametrize("app", UNDECIDABLE)
def test_apps_of_undecidable_kind_are_accepted_by_both(app: Any) -> None:
    """A callable whose kind cannot be told from its signature is accepted by either."""
    for middleware in (asgi.SignalsMiddleware(app), wsgi.SignalsMiddleware(app)):
        assert middleware.app is app


def test_flask_init_app_rejects_an_asgi_app() -> None:
    """``init_app(FastAPI())`` fails, naming the ASGI middleware, and leaves the app alone."""
    app = fastapi.FastAPI()
    with pytest.raises(AppKindError, match=r"expects a flask\.Flask") as info:
        tidings.flask.init_app(app)  # type: ignore[arg-type]
    assert "use tidings.asgi.SignalsMiddleware" in str(info.value)
    assert not hasattr(app, "wsgi_app")


def test_flask_init_app_rejects_another_wsgi_app() -> None:
    """``init_app()`` on a WSGI app that is not Flask names the WSGI middleware."""
    with pytest.raises(AppKindError, match=r"use tidings\.wsgi\.SignalsMiddleware\(app\)"):
        tidings.flask.init_app(wsgi_app)  # type: ignore[arg-type]
