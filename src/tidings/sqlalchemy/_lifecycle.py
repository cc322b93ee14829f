"""``pre_init`` and ``post_init`` for construction and for loading rows.

Construction: SQLAlchemy has no event after the constructor, so the class's instrumented
``__init__`` is wrapped. For the outermost constructor call the wrapper sends
``pre_init(args, kwargs)`` before anything is assigned, then runs the constructor, then sends
``post_init``; when the constructor raises, ``post_init`` is not sent (as in Django). A subclass
constructor calling ``super().__init__()`` reaches the parent's wrapper with the instance
already initialised, which is how the wrapper knows it is not the outermost one. (SQLAlchemy's
own ``init`` event would also do for ``pre_init``, but its dispatch costs more per object.)

Loading: SQLAlchemy's ``load`` event (a row became a new instance) sends ``pre_init`` with
``args`` = the column attribute values in mapper order (``DEFERRED`` for columns not loaded) and
``kwargs={}``, then ``post_init``, back to back: Django sends ``pre_init`` before the values are
assigned, SQLAlchemy can only do it after. Refreshing an existing instance (expired attributes,
``Session.refresh``) sends nothing.

Cost: SQLAlchemy's per-row ``load`` dispatch alone would add over 5% to loading rows, so the
``load`` listeners are installed only while a receiver is connected to ``pre_init`` or
``post_init``. :func:`sync_load_listeners` checks that before each ORM statement (from the
``do_orm_execute`` hook): a receiver connected while rows are being iterated takes effect
from the next statement.
"""

from __future__ import annotations

import enum
import functools
import threading
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.state import InstanceState

from tidings.models import post_init, pre_init
from tidings.sqlalchemy._send import quiet, send

__all__ = ["DEFERRED", "Deferred", "instrument_class", "sync_load_listeners"]


class Deferred(enum.Enum):
    """Placeholder for a column a loaded row did not include (Django's ``DEFERRED``)."""

    DEFERRED = "DEFERRED"

    def __repr__(self) -> str:
        return "<Deferred field>"


DEFERRED = Deferred.DEFERRED

_STATE_ATTR = "_sa_instance_state"

_lock = threading.Lock()
# Weak: a class that goes away takes its listeners with it.
_load_classes: weakref.WeakSet[type] = weakref.WeakSet()
_loading = False  # whether _on_load is installed on the classes in _load_classes
_column_keys: weakref.WeakKeyDictionary[Mapper[Any], tuple[str, ...]] = weakref.WeakKeyDictionary()


def instrument_class(mapper: Mapper[Any]) -> None:
    """Install the init/load hooks on the class of ``mapper`` (only that class)."""
    cls = mapper.class_
    with _lock:
        _load_classes.add(cls)
        if _loading:
            event.listen(cls, "load", _on_load, raw=True)  # raw: no per-row wrapper call
    inner = cls.__dict__.get("__init__")
    if inner is not None:
        type.__setattr__(cls, "__init__", _wrap_init(inner))


def sync_load_listeners() -> None:
    """Install the ``load`` listeners if init receivers exist, remove them if none do."""
    global _loading
    wanted = not (quiet(pre_init) and quiet(post_init))
    if wanted is _loading:
        return
    with _lock:
        if wanted is _loading:
            return
        for cls in list(_load_classes):
            if wanted:
                event.listen(cls, "load", _on_load, raw=True)
            else:
                event.remove(cls, "load", _on_load)
        _loading = wanted


def _wrap_init(inner: Any) -> Any:
    @functools.wraps(inner)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if _STATE_ATTR in self.__dict__:
            # A subclass constructor is running: its own wrapper sends the signals.
            inner(self, *args, **kwargs)
            return
        if not quiet(pre_init) and pre_init.has_listeners(type(self)):
            send(pre_init, type(self), args=args, kwargs=kwargs)
        inner(self, *args, **kwargs)
        if not quiet(post_init) and post_init.has_listeners(type(self)):
            send(post_init, type(self), instance=self)

    return __init__


def _on_load(state: InstanceState[Any], context: Any) -> None:
    sender = state.class_
    if pre_init.has_listeners(sender):
        mapper = state.mapper
        keys = _column_keys.get(mapper)
        if keys is None:
            # Listed at the first load: at instrumentation time, listing them would configure
            # every mapper, while the classes they refer to may not exist yet.
            keys = _column_keys[mapper] = tuple(prop.key for prop in mapper.column_attrs)
        values = state.dict
        args = tuple(values.get(key, DEFERRED) for key in keys)
        send(pre_init, sender, args=args, kwargs={})
    if post_init.has_listeners(sender):
        send(post_init, sender, instance=state.obj())
