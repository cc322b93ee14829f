"""Transports for the contract tests: each case runs on every implementation.

``make_transport(**options)`` builds a transport of the parametrized kind with the options the
test needs (``maxlen``, ``dedupe_ttl``, ...). The Redis kind gets a key prefix of its own and
deletes every key under it afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tidings.transport import AsyncTransport, InMemoryTransport, Transport

MakeTransport = Callable[..., Transport]
MakeAsyncTransport = Callable[..., AsyncTransport]

KINDS = ["memory"]


@pytest.fixture(params=KINDS)
def make_transport(request: pytest.FixtureRequest) -> Iterator[MakeTransport]:
    """A factory of transports of one kind, all closed (and their keys removed) afterwards."""
    made: list[Transport] = []

    def make(**options: Any) -> Transport:
        transport: Transport = InMemoryTransport(**options)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def transport(make_transport: MakeTransport) -> Transport:
    """A transport with the default options."""
    return make_transport()


@pytest.fixture(params=KINDS)
def make_async_transport(request: pytest.FixtureRequest) -> MakeAsyncTransport:
    """A factory of asyncio transports of one kind (closed inside the test's own loop)."""

    def make(**options: Any) -> AsyncTransport:
        return InMemoryTransport(**options).as_async()

    return make
