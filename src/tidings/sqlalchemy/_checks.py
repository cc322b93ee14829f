"""The app registry's checks for SQLAlchemy: receivers that no model signal will ever call.

A mapped class sends model signals only when its declarative base (or registry) was passed to
:func:`tidings.sqlalchemy.instrument`. Forgetting that call fails silently: receivers connected
to the class are never called, and lazy ``"app.Model"`` senders never resolve because the class
is never registered. :func:`check` reports both, through :meth:`tidings.apps.Apps.check` and
the warnings issued when ``populate()`` finishes:

``sqlalchemy.E001``
    A receiver of a model signal sent by this integration is connected with a mapped class as
    its sender, and that class is not instrumented.
``sqlalchemy.E002``
    A lazy reference still waits for ``"app_label.model"``, and a mapped class that is not
    instrumented has that name and app label: it would resolve the reference once instrumented.
``sqlalchemy.E003``
    A receiver of such a signal is connected with a declarative base (or an SQLModel base) as
    its sender. Model signals are sent with the mapped class as the sender, matched by
    identity, so the base itself never sends: the receiver is never called.

The core must not import SQLAlchemy, so :meth:`~tidings.apps.Apps.check` imports this module
itself once SQLAlchemy has been imported by someone: the checks run even in a project that
never imported :mod:`tidings.sqlalchemy`, which is exactly the mistake they look for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlalchemy import inspect
from sqlalchemy.orm import Mapper
from sqlalchemy.orm import registry as sa_registry

from tidings._refs import describe, peek
from tidings.apps import CheckMessage, register_check
from tidings.models import (
    m2m_changed,
    post_bulk_delete,
    post_bulk_update,
    post_delete,
    post_init,
    post_save,
    pre_delete,
    pre_init,
    pre_save,
)
from tidings.sqlalchemy._compat import mapped_registries
from tidings.sqlalchemy._registry import is_instrumented

if TYPE_CHECKING:
    from tidings.apps import Apps

__all__ = ["check"]

# The model signals this integration sends with a mapped class as the sender.
_SIGNALS = (
    pre_init,
    post_init,
    pre_save,
    post_save,
    pre_delete,
    post_delete,
    m2m_changed,
    post_bulk_update,
    post_bulk_delete,
)

_ADVICE = "its declarative base has not been passed to tidings.sqlalchemy.instrument()"


def _uninstrumented(cls: object) -> bool:
    if not isinstance(cls, type):
        return False
    mapper: object = inspect(cls, raiseerr=False)
    return isinstance(mapper, Mapper) and not is_instrumented(cls)


def _is_base(cls: object) -> bool:
    """Whether ``cls`` is a declarative or SQLModel base: it has a registry but no mapper."""
    if not isinstance(cls, type) or isinstance(inspect(cls, raiseerr=False), Mapper):
        return False
    found = cls.__dict__.get("registry") or cls.__dict__.get("_sa_registry")
    return isinstance(found, sa_registry)


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _mapped_classes() -> Iterator[type]:
    # SQLAlchemy has no public list of its registries; without one only the receivers' own
    # senders (sqlalchemy.E001) are checked.
    for registry in mapped_registries():
        for mapper in list(registry.mappers):
            yield mapper.class_


def _label_of(cls: type, registry: Apps) -> str | None:
    label = getattr(cls, "__app_label__", None)
    if isinstance(label, str) and label:
        return label
    config = registry.get_containing_app_config(cls.__module__)
    return None if config is None else config.label


def check(registry: Apps) -> list[CheckMessage]:
    """Report receivers that uninstrumented SQLAlchemy classes keep from ever being called.

    Args:
        registry: The app registry being checked.

    Returns:
        One ``sqlalchemy.E001`` message per connection to an uninstrumented mapped class,
        one ``sqlalchemy.E002`` per pending lazy reference such a class would resolve, one
        ``sqlalchemy.E003`` per connection to a declarative base.
    """
    messages = []
    for signal in _SIGNALS:
        for connection in signal.receivers:
            sender = None if connection.sender is None else connection.sender()
            receiver = peek(connection.receiver)
            if receiver is not None and isinstance(sender, type) and _is_base(sender):
                messages.append(
                    CheckMessage(
                        "sqlalchemy.E003",
                        f"The receiver {describe(receiver)!r} is connected to the "
                        f"{signal.name!r} signal with the sender {_name(sender)}, a declarative "
                        "base: model signals are sent with the mapped class as the sender, so "
                        "it is never called. Connect it with each model as the sender, or for "
                        "any sender and test issubclass(sender, Base) in it.",
                        describe(receiver),
                    )
                )
                continue
            if receiver is None or not _uninstrumented(sender):
                continue
            assert isinstance(sender, type)
            messages.append(
                CheckMessage(
                    "sqlalchemy.E001",
                    f"The receiver {describe(receiver)!r} is connected to the {signal.name!r} "
                    f"signal with the sender {_name(sender)}, a mapped class that sends no "
                    f"model signals: {_ADVICE}.",
                    describe(receiver),
                )
            )
    pending = set(registry.pending_model_keys())
    if pending:
        for cls in _mapped_classes():
            key = (_label_of(cls, registry), cls.__name__.lower())
            if key in pending and _uninstrumented(cls):
                messages.append(
                    CheckMessage(
                        "sqlalchemy.E002",
                        f"The lazy reference '{key[0]}.{key[1]}' waits for the mapped class "
                        f"{_name(cls)}, which is never registered: {_ADVICE}.",
                        cls,
                    )
                )
    return messages


register_check(check)
