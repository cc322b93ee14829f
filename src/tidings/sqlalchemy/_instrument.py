"""``instrument()``: what happens when a registry, then each of its classes, is instrumented.

``instrument(base)`` remembers the base's SQLAlchemy ``registry``. A single global
``after_mapper_constructed`` listener then instruments every class mapped in a remembered
registry, so classes defined later are covered too; classes mapped before the call are
instrumented by the call itself. Instrumenting a class, in this order:

1. claims it in :mod:`tidings.sqlalchemy._registry`, resolving its app label (raising
   :class:`~tidings.sqlalchemy.AppLabelError` when there is none, at class definition time);
2. installs the init/load hooks (:mod:`tidings.sqlalchemy._lifecycle`) and the many-to-many
   hooks (:mod:`tidings.sqlalchemy._m2m`);
3. sends ``class_prepared(sender=cls)``;
4. registers the class in :data:`tidings.apps.apps`, which runs lazy ``"app.Model"``
   connections waiting for it (Django: ``class_prepared`` then ``register_model``).

The Session-level hooks are installed once, on the ``Session`` class, by
:mod:`tidings.sqlalchemy._events`, and skip objects of classes not instrumented.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Mapper

from tidings.apps import apps
from tidings.models import class_prepared
from tidings.sqlalchemy import _events, _lifecycle, _m2m, _registry

__all__ = ["instrument"]

_lock = threading.Lock()
_installed = False


def instrument(base: Any) -> None:
    """Make every class mapped under ``base``, now and later, send Django's model signals.

    Calling it again for the same registry does nothing.

    Args:
        base: A ``DeclarativeBase`` subclass (or a legacy ``declarative_base()`` class), an
            SQLModel base class such as ``SQLModel``, or a ``registry``. An ``__app_label__``
            attribute on a base class becomes the default label of the classes under it.

    Raises:
        InstrumentError: ``base`` is none of those (a ``TypeError``). A mapped class is refused
            too: its whole registry would be instrumented, its siblings included; pass the
            base class, or the registry (``Model.registry``) to mean exactly that.
        AppLabelError: a class mapped under it already has no app label.
    """
    reg, label = _registry.registry_of(base)
    _install_global_hooks()
    mappers = _registry.remember(reg, label)
    # Parents before children, so each class_prepared follows its bases' (as in Django).
    for mapper in sorted(mappers, key=lambda m: len(m.class_.__mro__)):
        _instrument_mapper(mapper)


def _install_global_hooks() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        event.listen(Mapper, "after_mapper_constructed", _on_mapper_constructed)
        _events.install(_events.FLUSH)
        _installed = True


def _on_mapper_constructed(mapper: Mapper[Any], cls: type) -> None:
    if _registry.is_remembered(mapper.registry):
        _instrument_mapper(mapper)


def _instrument_mapper(mapper: Mapper[Any]) -> None:
    label = _registry.claim(mapper)
    if label is None:
        return
    _lifecycle.instrument_class(mapper)
    _events.install(_events.MANY_TO_MANY)
    _m2m.instrument_mapper(mapper)
    class_prepared.send(sender=mapper.class_)
    apps.register_model(label, mapper.class_)
