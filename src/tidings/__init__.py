"""tidings: Django's signals for every Python application.

The core is :class:`Signal` and the :func:`receiver` decorator, with the behaviour of
``django.dispatch``; see :mod:`tidings._dispatch` for the exact semantics. Model signals live in
:mod:`tidings.models`, request signals in :mod:`tidings.http`, test helpers in
:mod:`tidings.testing`.
"""

from __future__ import annotations

from tidings._accel import compiled
from tidings._delivery import Delivery
from tidings._dispatch import ALL_SENDERS, ReceiverInfo, Signal, receiver
from tidings._errors import (
    AppKindError,
    AsyncReceiversInEventLoopError,
    DeliveryOptionsError,
    InvalidDeliveryError,
    InvalidReceiverError,
    InvalidSenderError,
    ReceiverSignatureError,
    TidingsError,
    TidingsLookupError,
    TidingsRuntimeError,
    TidingsTypeError,
    TidingsValueError,
)
from tidings._warnings import TidingsWarning, UncalledReceiverWarning

__all__ = [
    "ALL_SENDERS",
    "AppKindError",
    "AsyncReceiversInEventLoopError",
    "Delivery",
    "DeliveryOptionsError",
    "InvalidDeliveryError",
    "InvalidReceiverError",
    "InvalidSenderError",
    "ReceiverInfo",
    "ReceiverSignatureError",
    "Signal",
    "TidingsError",
    "TidingsLookupError",
    "TidingsRuntimeError",
    "TidingsTypeError",
    "TidingsValueError",
    "TidingsWarning",
    "UncalledReceiverWarning",
    "compiled",
    "receiver",
]


def __getattr__(name: str) -> str:
    """``tidings.__version__``, read from the installed metadata on first use.

    ``pyproject.toml`` is the only place the version is written; reading it lazily keeps
    ``import tidings`` from loading ``importlib.metadata``.
    """
    if name != "__version__":
        raise AttributeError(f"module 'tidings' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("tidings")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
