"""``pre_init`` and ``post_init`` for construction and for loading rows.

Construction: SQLAlchemy's ``init`` event (once per outermost constructor call, before the
constructor body) sends ``pre_init(args, kwargs)``. SQLAlchemy has no event after the
constructor, so the class's instrumented ``__init__`` is wrapped; the wrapper sends
``post_init`` when the outermost constructor returns, and not when it raises (Django sends no
``post_init`` either). A subclass constructor calling ``super().__init__()`` reaches the parent's
wrapper with the instance already initialised, which is how the wrapper knows it is not the
outermost one.

Loading: SQLAlchemy's ``load`` event (a row became a new instance) sends ``pre_init`` with
``args`` = the column attribute values in mapper order (``DEFERRED`` for columns not loaded) and
``kwargs={}``, then ``post_init``, back to back: Django sends ``pre_init`` before the values are
assigned, SQLAlchemy can only do it after. Refreshing an existing instance (expired attributes,
``Session.refresh``) sends nothing.
"""

from __future__ import annotations

import enum
import functools
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.state import InstanceState

from tidings.models import post_init, pre_init
from tidings.sqlalchemy._send import send

__all__ = ["DEFERRED", "Deferred", "instrument_class"]


class Deferred(enum.Enum):
    """Placeholder for a column a loaded row did not include (Django's ``DEFERRED``)."""

    DEFERRED = "DEFERRED"

    def __repr__(self) -> str:
        return "<Deferred field>"


DEFERRED = Deferred.DEFERRED

_STATE_ATTR = "_sa_instance_state"


def instrument_class(mapper: Mapper[Any]) -> None:
    """Install the init/load hooks on the class of ``mapper`` (only that class)."""
    cls = mapper.class_
    event.listen(cls, "init", _on_init)
    event.listen(cls, "load", _make_on_load(mapper))
    inner = cls.__dict__.get("__init__")
    if inner is not None:
        type.__setattr__(cls, "__init__", _wrap_init(inner))


def _on_init(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    sender = type(target)
    if pre_init.has_listeners(sender):
        send(pre_init, sender, args=args, kwargs=kwargs)


def _wrap_init(inner: Any) -> Any:
    @functools.wraps(inner)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if hasattr(self, _STATE_ATTR):
            # A subclass constructor is running: its own wrapper sends post_init.
            inner(self, *args, **kwargs)
            return
        inner(self, *args, **kwargs)
        sender = type(self)
        if post_init.has_listeners(sender):
            send(post_init, sender, instance=self)

    return __init__


def _make_on_load(mapper: Mapper[Any]) -> Any:
    # Read the attributes at the first load: listing them now would configure every mapper,
    # while the classes they refer to may not exist yet.
    keys: list[str] = []

    def on_load(target: Any, context: Any) -> None:
        sender = type(target)
        if pre_init.has_listeners(sender):
            if not keys:
                keys.extend(prop.key for prop in mapper.column_attrs)
            state: InstanceState[Any] = getattr(target, _STATE_ATTR)
            values = state.dict
            args = tuple(values.get(key, DEFERRED) for key in keys)
            send(pre_init, sender, args=args, kwargs={})
        if post_init.has_listeners(sender):
            send(post_init, sender, instance=target)

    return on_load
