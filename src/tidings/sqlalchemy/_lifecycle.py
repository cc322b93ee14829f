"""``pre_init`` and ``post_init`` for construction and for loading rows.

Construction: SQLAlchemy has no event after the constructor, so the class's instrumented
``__init__`` is wrapped. For the outermost constructor call the wrapper sends
``pre_init(args, kwargs)`` before anything is assigned, then runs the constructor, then sends
``post_init``; when the constructor raises, ``post_init`` is not sent (as in Django). A subclass
constructor calling ``super().__init__()`` reaches the parent's wrapper with the instance
already initialised, which is how the wrapper knows it is not the outermost one. (SQLAlchemy's
own ``init`` event would also do for ``pre_init``, but its dispatch costs more per object.)
On the compiled path (:data:`tidings.compiled`) the wrapper is ``tidings._speedups.InitHook``,
which passes the arguments on without repacking them and calls the same two functions here.

Loading: when a row becomes a new instance (SQLAlchemy's ``loaded_as_persistent`` session
event, which follows the ``load`` instance event), ``pre_init`` is sent with ``args`` = the
column attribute values in mapper order (``DEFERRED`` for columns not loaded) and ``kwargs={}``,
then ``post_init``, back to back: Django sends ``pre_init`` before the values are assigned,
SQLAlchemy can only do it after. Refreshing an existing instance (expired attributes,
``Session.refresh``) sends nothing.

Cost: SQLAlchemy's per-row event dispatch alone would add over 5% to loading rows, so the
listener is installed on a session only while a receiver is connected to ``pre_init`` or
``post_init``. :func:`sync_load_listener` checks that before each ORM statement (from the
``do_orm_execute`` hook), in the session's own thread: class-level listeners could not be added
or removed while other threads load rows. A receiver connected while rows are being iterated
takes effect from the next statement.
"""

from __future__ import annotations

import enum
import functools
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.state import InstanceState

from tidings import AsyncReceiversInEventLoopError
from tidings._accel import init_hook
from tidings.models import post_init, pre_init
from tidings.sqlalchemy._compat import STATE_ATTR
from tidings.sqlalchemy._registry import is_instrumented
from tidings.sqlalchemy._send import quiet, resend, send

__all__ = ["DEFERRED", "Deferred", "instrument_class", "sync_load_listener"]


class Deferred(enum.Enum):
    """Placeholder for a column a loaded row did not include (Django's ``DEFERRED``)."""

    DEFERRED = "DEFERRED"

    def __repr__(self) -> str:
        return "<Deferred field>"


DEFERRED = Deferred.DEFERRED


_LOADING = "tidings.sqlalchemy.loading"  # Session.info key: the load listener is installed
_column_keys: weakref.WeakKeyDictionary[Mapper[Any], tuple[str, ...]] = weakref.WeakKeyDictionary()


def instrument_class(mapper: Mapper[Any]) -> None:
    """Install the construction hook on the class of ``mapper`` (only that class)."""
    cls = mapper.class_
    inner = cls.__dict__.get("__init__")
    if inner is not None:
        type.__setattr__(cls, "__init__", _wrap_init(inner))


def sync_load_listener(session: Session) -> None:
    """Install the load listener on ``session`` if init receivers exist, remove it if not.

    Called before each ORM statement, in the thread using the session, so that adding or
    removing the listener never races with another thread's loading.
    """
    wanted = not (quiet(pre_init) and quiet(post_init))
    if wanted is session.info.get(_LOADING, False):
        return
    if wanted:
        event.listen(session, "loaded_as_persistent", _on_loaded, raw=True)
    else:
        event.remove(session, "loaded_as_persistent", _on_loaded)
    session.info[_LOADING] = wanted


def _wrap_init(inner: Any) -> Any:
    if init_hook is not None:
        # The compiled wrapper passes the constructor its arguments as they came, where a
        # Python wrapper builds a tuple and a dict per object: most of its cost.
        hook = init_hook(inner, pre_init, post_init, _before_init, _after_init, STATE_ATTR)
        functools.update_wrapper(hook, inner)
        return hook

    @functools.wraps(inner)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if STATE_ATTR in self.__dict__:
            # A subclass constructor is running: its own wrapper sends the signals.
            inner(self, *args, **kwargs)
            return
        # Once per object built: has_connections() first, the cheapest test there is.
        if pre_init.has_connections():
            _before_init(self, args, kwargs)
        inner(self, *args, **kwargs)
        if post_init.has_connections():
            _after_init(self)

    return __init__


def _before_init(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    # Called by either wrapper when pre_init has connections, before the constructor runs.
    if pre_init.has_listeners(type(instance)):
        send(pre_init, type(instance), args=args, kwargs=kwargs)


def _after_init(instance: Any) -> None:
    # Called by either wrapper when post_init has connections, after the constructor returned.
    # signal.send() itself, not _send.send(): one call and one dict less per object.
    try:
        post_init.send(type(instance), instance=instance)
    except AsyncReceiversInEventLoopError as error:
        resend(post_init, type(instance), error, instance=instance)


def _on_loaded(session: Session, state: InstanceState[Any]) -> None:
    # Listened to with raw=True: SQLAlchemy passes the state, without a wrapper frame per row.
    instance = state.obj()
    if instance is None:
        return
    sender = type(instance)
    if not is_instrumented(sender):
        return
    if pre_init.has_listeners(sender):
        mapper = state.mapper
        keys = _column_keys.get(mapper)
        if keys is None:
            # Listed at the first load: at instrumentation time, listing them would configure
            # every mapper, while the classes they refer to may not exist yet.
            keys = _column_keys[mapper] = tuple(prop.key for prop in mapper.column_attrs)
        values = instance.__dict__
        args = tuple(values.get(key, DEFERRED) for key in keys)
        send(pre_init, sender, args=args, kwargs={})
    # No has_listeners() first: a send that matches nobody costs less than asking.
    try:
        post_init.send(sender, instance=instance)
    except AsyncReceiversInEventLoopError as error:
        resend(post_init, sender, error, instance=instance)
