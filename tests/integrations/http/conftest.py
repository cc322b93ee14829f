"""Fixtures: a signal recorder, and the test apps served by real servers on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tidings import asgi, wsgi

from . import apps
from .recording import CURRENT, Recorder
from .servers import serve_asgi, serve_wsgi


@dataclass(frozen=True)
class Served:
    """An app under test, being served."""

    name: str
    url: str
    sender: type[Any]

    @property
    def wsgi(self) -> bool:
        """Whether the app is served over WSGI."""
        return self.sender is wsgi.SignalsMiddleware


APPS: dict[str, tuple[Callable[[Any], Any], Any, type[Any]]] = {
    "bare-asgi": (serve_asgi, apps.bare_asgi_with_signals, asgi.SignalsMiddleware),
    "starlette": (serve_asgi, apps.starlette_app, asgi.SignalsMiddleware),
    "fastapi": (serve_asgi, apps.fastapi_app, asgi.SignalsMiddleware),
    "bare-wsgi": (serve_wsgi, apps.bare_wsgi_with_signals, wsgi.SignalsMiddleware),
    "flask": (serve_wsgi, apps.flask_app, wsgi.SignalsMiddleware),
}


@pytest.fixture(scope="module", params=list(APPS))
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """Each test app in turn, on uvicorn (ASGI) or waitress (WSGI), on a free loopback port."""
    serve, app, sender = APPS[request.param]
    with serve(app) as url:
        yield Served(request.param, url, sender)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A recorder whose sync receivers are connected to the three request signals."""
    rec = Recorder()
    rec.connect()
    CURRENT.append(rec)
    try:
        yield rec
    finally:
        CURRENT.remove(rec)
        rec.disconnect()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """A real HTTP client, ignoring proxy settings from the environment."""
    with httpx.Client(trust_env=False, timeout=10.0) as c:
        yield c
