"""Which registries and mapped classes are instrumented: the leaf every hook asks.

``instrument(base)`` (:mod:`tidings.sqlalchemy._instrument`) remembers the base's SQLAlchemy
``registry`` here; each class mapped in a remembered registry is claimed here once, with its
app label (``__app_label__``, else the installed app holding its module; an
:class:`AppLabelError` when there is none, at class definition time). The hooks ask
:func:`is_instrumented` and skip objects of classes that are not. This module imports no
other part of the integration but :mod:`tidings.sqlalchemy._compat`.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import Table, inspect
from sqlalchemy.orm import Mapper, registry

from tidings._errors import AppLabelError, InstrumentError
from tidings.apps import apps
from tidings.sqlalchemy._compat import sqlmodel_registry

__all__ = [
    "AppLabelError",
    "app_label_of",
    "claim",
    "is_instrumented",
    "is_remembered",
    "registry_of",
    "remember",
    "tables_named",
]

_lock = threading.RLock()
_registries: weakref.WeakKeyDictionary[registry, str | None] = weakref.WeakKeyDictionary()
# Set on each instrumented class to the class itself: the session hooks ask once per row, and
# a class attribute lookup (served by the type attribute cache) costs a fraction of a weak set's
# membership test. Comparing it with the class keeps an unmapped subclass from inheriting it.
_MARK = "__tidings_instrumented__"


def is_instrumented(cls: type) -> bool:
    """Return whether ``cls`` is a mapped class that sends model signals."""
    return getattr(cls, _MARK, None) is cls


def remember(reg: registry, label: str | None) -> list[Mapper[Any]]:
    """Remember ``reg`` (first ``label`` wins) and return the mappers it holds now."""
    with _lock:
        if reg not in _registries:
            _registries[reg] = label
        return list(reg.mappers)


def is_remembered(reg: registry) -> bool:
    """Whether ``instrument()`` was called for ``reg``."""
    return reg in _registries


def tables_named(fullname: str) -> list[Table]:
    """The tables called ``fullname`` (``schema.name``) in the instrumented registries' MetaData.

    One per MetaData: registries sharing a MetaData share its tables.
    """
    with _lock:
        registries = list(_registries)
    found: dict[int, Table] = {}
    for reg in registries:
        table = reg.metadata.tables.get(fullname)
        if table is not None:
            found[id(table)] = table
    return list(found.values())


def claim(mapper: Mapper[Any]) -> str | None:
    """Mark ``mapper``'s class instrumented; return its app label, None if it already was.

    Raises:
        AppLabelError: the class has no app label (it is not marked then).
    """
    cls = mapper.class_
    with _lock:
        if is_instrumented(cls):
            return None
        label = app_label_of(cls, _registries.get(mapper.registry))
        # type.__setattr__: a declarative class's own __setattr__ would map the attribute.
        type.__setattr__(cls, _MARK, cls)
        return label


def registry_of(base: Any) -> tuple[registry, str | None]:
    """Return the registry ``instrument(base)`` means, and the label its base declares.

    Raises:
        InstrumentError: ``base`` is no base class nor registry, or is a mapped class.
    """
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
