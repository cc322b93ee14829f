"""Which mapped classes are instrumented, and what happens when one is.

``instrument(base)`` remembers the base's SQLAlchemy ``registry``. A single global
``after_mapper_constructed`` listener then instruments every class mapped in a remembered
registry, so classes defined later are covered too; classes mapped before the call are
instrumented by the call itself. Instrumenting a class, in this order:

1. resolves its app label (``__app_label__``, else the installed app holding its module) and
   raises :class:`AppLabelError` when there is none, at class definition time;
2. installs the init/load hooks (:mod:`tidings.sqlalchemy._lifecycle`) and the many-to-many
   hooks (``tidings.sqlalchemy._m2m.instrument_mapper``);
3. sends ``class_prepared(sender=cls)``;
4. registers the class in :data:`tidings.apps.apps`, which runs lazy ``"app.Model"``
   connections waiting for it (Django: ``class_prepared`` then ``register_model``).

The session-level hooks (:mod:`tidings.sqlalchemy._session`, :mod:`tidings.sqlalchemy._bulk`)
are installed once, on the ``Session`` class, and skip objects of classes not instrumented.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Mapper, registry

from tidings._errors import AppLabelError, InstrumentError
from tidings.apps import apps
from tidings.models import class_prepared
from tidings.sqlalchemy._compat import sqlmodel_registry

__all__ = ["AppLabelError", "instrument", "is_instrumented"]

_lock = threading.RLock()
_registries: weakref.WeakKeyDictionary[registry, str | None] = weakref.WeakKeyDictionary()
_installed = False
# Set on each instrumented class to the class itself: the session hooks ask once per row, and
# a class attribute lookup (served by the type attribute cache) costs a fraction of a weak set's
# membership test. Comparing it with the class keeps an unmapped subclass from inheriting it.
_MARK = "__tidings_instrumented__"


def is_instrumented(cls: type) -> bool:
    """Return whether ``cls`` is a mapped class that sends model signals."""
    return getattr(cls, _MARK, None) is cls


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
    reg, label = _registry_of(base)
    with _lock:
        _install_global_hooks()
        if reg not in _registries:
            _registries[reg] = label
        mappers = list(reg.mappers)
    # Parents before children, so each class_prepared follows its bases' (as in Django).
    for mapper in sorted(mappers, key=lambda m: len(m.class_.__mro__)):
        _instrument_mapper(mapper)


def _registry_of(base: Any) -> tuple[registry, str | None]:
    if isinstance(base, registry):
        return base, None
    if isinstance(base, type):
        mapper: object = inspect(base, raiseerr=False)
        if isinstance(mapper, Mapper):
            raise _mapped_class_error(base, mapper)
        found = base.__dict__.get("registry")
        if not isinstance(found, registry):
            # SQLModel keeps it as ``_sa_registry``; other declarative bases as ``registry``.
            found = sqlmodel_registry(base) or getattr(base, "registry", None)
        if isinstance(found, registry):
            return found, getattr(base, "__app_label__", None)
    raise InstrumentError(
        f"instrument() needs a DeclarativeBase subclass, an SQLModel base class or a "
        f"sqlalchemy.orm.registry, not {base!r}"
    )


def _mapped_class_error(cls: type, mapper: Mapper[Any]) -> InstrumentError:
    siblings = sorted(m.class_.__name__ for m in mapper.registry.mappers if m is not mapper)
    bases = [b for b in cls.__mro__[1:] if isinstance(b, type) and "registry" in b.__dict__]
    hint = f"instrument({bases[0].__name__})" if bases else "instrument(<its declarative base>)"
    also = f" ({', '.join(siblings)})" if siblings else ""
    return InstrumentError(
        f"instrument() takes the declarative base of the classes to instrument, not the mapped "
        f"class {cls.__module__}.{cls.__qualname__}: it would instrument every class of its "
        f"registry{also}. Call {hint}, or instrument({cls.__name__}.registry) to instrument "
        f"that whole registry on purpose."
    )


def _install_global_hooks() -> None:
    global _installed
    if _installed:
        return
    from tidings.sqlalchemy import _bulk, _session

    event.listen(Mapper, "after_mapper_constructed", _on_mapper_constructed)
    _session.install()
    _bulk.install()
    _installed = True


def _on_mapper_constructed(mapper: Mapper[Any], cls: type) -> None:
    if mapper.registry in _registries:
        _instrument_mapper(mapper)


def app_label_of(cls: type, default: str | None = None) -> str:
    """Return the app label of mapped class ``cls``.

    Args:
        cls: The mapped class.
        default: The label given by its base's ``__app_label__``, if any.

    Raises:
        AppLabelError: neither ``__app_label__`` nor an installed app gives one.
    """
    label = getattr(cls, "__app_label__", None) or default
    if isinstance(label, str) and label:
        return label
    config = apps.get_containing_app_config(cls.__module__)
    if config is not None:
        return config.label
    raise AppLabelError(
        f"Cannot find the app label of model {cls.__module__}.{cls.__qualname__}: set "
        f'`__app_label__ = "<label>"` on it or on its base class, or install the app '
        f"whose package holds {cls.__module__!r} (tidings.apps.apps.populate([...]))."
    )


def _instrument_mapper(mapper: Mapper[Any]) -> None:
    cls = mapper.class_
    with _lock:
        if is_instrumented(cls):
            return
        label = app_label_of(cls, _registries.get(mapper.registry))
        # type.__setattr__: a declarative class's own __setattr__ would map the attribute.
        type.__setattr__(cls, _MARK, cls)
    from tidings.sqlalchemy import _lifecycle

    _lifecycle.instrument_class(mapper)
    _instrument_m2m(mapper)
    class_prepared.send(sender=cls)
    apps.register_model(label, cls)


def _instrument_m2m(mapper: Mapper[Any]) -> None:
    # Imported here: the many-to-many module imports this one.
    from tidings.sqlalchemy._m2m import instrument_mapper

    instrument_mapper(mapper)
