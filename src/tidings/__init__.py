"""tidings: Django's signals for every Python application.

The core is :class:`Signal` and the :func:`receiver` decorator, with the behaviour of
``django.dispatch``; see :mod:`tidings._dispatch` for the exact semantics. Model signals live in
:mod:`tidings.models`, request signals in :mod:`tidings.http`, test helpers in
:mod:`tidings.testing`.
"""

from __future__ import annotations

from tidings._dispatch import ALL_SENDERS, ReceiverInfo, Signal, receiver
from tidings._errors import (
    AsyncReceiversInEventLoopError,
    InvalidReceiverError,
    ReceiverSignatureError,
    TidingsError,
)

__all__ = [
    "ALL_SENDERS",
    "AsyncReceiversInEventLoopError",
    "InvalidReceiverError",
    "ReceiverInfo",
    "ReceiverSignatureError",
    "Signal",
    "TidingsError",
    "receiver",
]

__version__ = "0.1.0.dev0"
