"""The payload codec: a send's keyword arguments as JSON text, and back in the worker.

Values pass as follows (the encodings are part of the stored format, version 1):

==================================  ============================================================
``None``, ``bool``, ``int``,        as themselves (floats must be finite)
``float``, ``str``
``list``, ``dict`` with ``str``     as themselves, items encoded recursively (a ``dict`` holding
keys                                the key ``"$t"`` is stored tagged, so it comes back as is)
``tuple``, ``set``, ``frozenset``   ``{"$t": "tuple", "v": [...]}`` (same for the sets); the
                                    type comes back
``datetime.datetime``               ``{"$t": "datetime", "v": isoformat()}``: an aware value
                                    keeps its offset, a naive one stays naive
``datetime.date`` / ``.time``       ``{"$t": "date", "v": "2026-12-01"}`` / ``"time"``
``decimal.Decimal``                 ``{"$t": "decimal", "v": str(value)}`` (exact)
``uuid.UUID``                       ``{"$t": "uuid", "v": str(value)}``
``enum.Enum`` members               ``{"$t": "enum", "cls": "module:Qualname", "v": value}``
a class (e.g. the ``sender``)       ``{"$t": "class", "v": "module:Qualname"}``
a ``Table`` of an instrumented      ``{"$t": "table", "v": "schema.name"}``: found again among
registry's MetaData (the sender of  the MetaData of the registries the worker instrumented; a
``m2m_changed`` through a plain     table no such MetaData holds, or two of them hold under that
association table)                  name, is refused at send time
a mapped SQLAlchemy instance        ``{"$t": "model", "cls": "module:Qualname", "pk": [...]}``:
                                    reloaded in a session the worker opens; ``None`` if the row
                                    is gone. A deleted instance also carries ``"snapshot"`` (its
                                    column values at send time) and arrives as a detached
                                    object rebuilt from it.
==================================  ============================================================

Anything else raises :class:`PayloadTypeError` (a ``TypeError``) at send time.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import importlib
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import manager_of_class

from tidings._errors import PayloadTypeError, TidingsValueError
from tidings.sqlalchemy._registry import tables_named

__all__ = ["PayloadTypeError", "decode", "encode", "import_path", "instance_key", "stable_path"]

_TAG = "$t"
_PLAIN = frozenset({str, int, bool, type(None)})
# One encoder for every send: json.dumps() with any option builds a new one per call.
_to_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def stable_path(obj: Any) -> str | None:
    """``module:qualname`` of a class or function importable by that path, else None."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def import_path(path: str) -> Any:
    """Import ``module:qualname`` and return the object it names.

    Raises:
        ImportError: The module cannot be imported or has no such attribute.
    """
    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"{module_name!r} has no attribute {qualname!r}") from None
    return obj


class _Encoder:
    __slots__ = ("where",)

    def __init__(self, where: Callable[[], str]) -> None:
        self.where = where

    def fail(self, value: Any, why: str) -> PayloadTypeError:
        return PayloadTypeError(f"{self.where()}: {why} (got {type(value).__qualname__} {value!r})")

    def value(self, value: Any) -> Any:
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            return value
        if kind is float:
            if not math.isfinite(value):
                raise self.fail(value, "floats must be finite to be stored")
            return value
        if kind is list:
            return [self.value(item) for item in value]
        if kind is dict:
            return self.mapping(value)
        if kind is tuple or kind is set or kind is frozenset:
            items = sorted(value, key=repr) if kind is not tuple else value
            return {_TAG: kind.__name__, "v": [self.value(item) for item in items]}
        if isinstance(value, enum.Enum):
            path = stable_path(kind)
            if path is None:
                raise self.fail(value, "an enum must be importable by its module and name")
            return {_TAG: "enum", "cls": path, "v": self.value(value.value)}
        if isinstance(value, datetime.datetime):
            return {_TAG: "datetime", "v": value.isoformat()}
        if isinstance(value, datetime.date):
            return {_TAG: "date", "v": value.isoformat()}
        if isinstance(value, datetime.time):
            return {_TAG: "time", "v": value.isoformat()}
        if isinstance(value, decimal.Decimal):
            return {_TAG: "decimal", "v": str(value)}
        if isinstance(value, uuid.UUID):
            return {_TAG: "uuid", "v": str(value)}
        if isinstance(value, type):
            path = stable_path(value)
            if path is None:
                raise self.fail(value, "a class must be importable by its module and name")
            return {_TAG: "class", "v": path}
        if isinstance(value, Table):
            # Found again by name in the worker: only a name that means this table there too.
            if tables_named(value.fullname) != [value]:
                raise self.fail(
                    value,
                    "a Table is stored by its name and must be the only table of that name in "
                    "the MetaData of the instrumented registries (instrument() its models' base)",
                )
            return {_TAG: "table", "v": value.fullname}
        state = sa_inspect(value, raiseerr=False)
        if state is not None and hasattr(state, "mapper"):
            return self.instance(value, state)
        raise self.fail(
            value,
            "durable payloads take JSON values, datetime, date, time, Decimal, UUID, enums, "
            "tuples, sets, classes, mapped SQLAlchemy instances and the Tables of instrumented "
            "models; pass an id or a dict instead",
        )

    def mapping(self, value: dict[Any, Any]) -> Any:
        if not all(type(key) is str for key in value):
            return {_TAG: "dict", "v": [[self.value(k), self.value(v)] for k, v in value.items()]}
        if _TAG in value:
            return {_TAG: "dict", "v": [[k, self.value(v)] for k, v in value.items()]}
        return {key: self.value(item) for key, item in value.items()}

    def instance(self, value: Any, state: Any) -> Any:
        mapper = state.mapper
        path = stable_path(mapper.class_)
        if path is None:
            raise self.fail(value, "a model class must be importable by its module and name")
        going = _marked_for_deletion(state)
        if going or state.deleted or state.was_deleted:
            if going:
                # pre_delete: the row is still there, so what the worker's copy lacks (columns
                # expired by a commit, deferred) is loaded now, as a receiver here could.
                missing = [p.key for p in mapper.column_attrs if p.key in state.unloaded]
                if missing:
                    with state.session.no_autoflush:
                        state.session.refresh(value, attribute_names=missing)
            columns = {
                prop.key: self.value(state.dict.get(prop.key))
                for prop in mapper.column_attrs
                if prop.key in state.dict
            }
            return {_TAG: "model", "cls": path, "pk": None, "snapshot": columns}
        identity = state.identity
        if identity is None and state.pending:
            # Added to a Session, its INSERT to come (pre_save of a created one): stored by the
            # primary key it was given; one the database assigns does not exist yet.
            identity = mapper.primary_key_from_instance(value)
            if any(part is None for part in identity):
                raise self.fail(
                    value,
                    "a model instance is stored by its primary key, and this new one has none "
                    "before its INSERT (the database assigns it): flush it first, or connect "
                    "the receiver to post_save, which comes after the INSERT (a durable "
                    "receiver runs after the commit either way)",
                )
        if identity is None:
            raise self.fail(
                value, "a model instance must be in a Session and flushed (have a primary key)"
            )
        return {_TAG: "model", "cls": path, "pk": [self.value(part) for part in identity]}


def _marked_for_deletion(state: Any) -> bool:
    """Whether the instance is deleted in its Session, its flush not yet run (``pre_delete``).

    ``state.deleted`` is true only once the DELETE ran.
    """
    session = state.session
    return session is not None and state in session._deleted


def instance_key(value: Any) -> str | None:
    """``module:Class:[pk...]`` of a mapped SQLAlchemy instance (deleted ones too), else None."""
    state = sa_inspect(value, raiseerr=False)
    if state is None or not hasattr(state, "mapper"):
        return None
    mapper = state.mapper
    identity = state.identity
    if identity is None:
        identity = mapper.primary_key_from_instance(value)
    return f"{stable_path(mapper.class_)}:{json.dumps(list(identity), default=str)}"


def encode(kwargs: dict[str, Any], where: Callable[[str], str]) -> str:
    """Encode a send's keyword arguments as JSON text.

    Args:
        kwargs: ``sender`` and the named arguments (not ``signal``).
        where: Given an argument name, says where the failure happened (signal, receiver,
            argument), for the error message.

    Returns:
        The JSON text.

    Raises:
        PayloadTypeError: An argument holds a value that cannot be stored.
    """
    # Most sends pass ids, strings and flags only: they are stored as they are.
    if _PLAIN.issuperset(map(type, kwargs.values())):
        return _dump(kwargs, where)
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        out[name] = _Encoder(lambda name=name: where(name)).value(value)  # type: ignore[misc]
    return _dump(out, where)


def _dump(out: dict[str, Any], where: Callable[[str], str]) -> str:
    try:
        return _to_json(out)
    except ValueError as exc:  # an int longer than str() converts (sys.set_int_max_str_digits)
        for name, value in out.items():
            try:
                _to_json(value)
            except ValueError:
                raise PayloadTypeError(
                    f"{where(name)}: an int too long to write as text cannot be stored ({exc}); "
                    "pass it as a str"
                ) from None
        raise


class _Decoder:
    __slots__ = ("open_session", "session")

    def __init__(self, open_session: Callable[[], Session]) -> None:
        self.open_session = open_session
        self.session: Session | None = None

    def value(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if not isinstance(value, dict):
            return value
        tag = value.get(_TAG)
        if tag is None:
            return {key: self.value(item) for key, item in value.items()}
        raw: Any = value.get("v")
        if tag == "datetime":
            return datetime.datetime.fromisoformat(raw)
        if tag == "date":
            return datetime.date.fromisoformat(raw)
        if tag == "time":
            return datetime.time.fromisoformat(raw)
        if tag == "decimal":
            return decimal.Decimal(raw)
        if tag == "uuid":
            return uuid.UUID(raw)
        if tag == "tuple":
            return tuple(self.value(item) for item in raw)
        if tag == "set":
            return {self.value(item) for item in raw}
        if tag == "frozenset":
            return frozenset(self.value(item) for item in raw)
        if tag == "dict":
            return {self.value(k): self.value(v) for k, v in raw}
        if tag == "enum":
            return import_path(value["cls"])(self.value(raw))
        if tag == "class":
            return import_path(raw)
        if tag == "model":
            return self.instance(value)
        if tag == "table":
            tables = tables_named(raw)
            if len(tables) != 1:
                raise TidingsValueError(
                    f"table {raw!r} is in the MetaData of {len(tables)} instrumented registries "
                    "here, not one: import (and instrument) the models that define it"
                )
            return tables[0]
        raise TidingsValueError(f"unknown value tag {tag!r}")

    def instance(self, value: dict[str, Any]) -> Any:
        cls = import_path(value["cls"])
        snapshot = value.get("snapshot")
        if snapshot is not None:
            obj = manager_of_class(cls).new_instance()
            for key, item in snapshot.items():
                setattr(obj, key, self.value(item))
            make_transient_to_detached(obj)
            return obj
        if self.session is None:
            self.session = self.open_session()
        pk = tuple(self.value(part) for part in value["pk"])
        return self.session.get(cls, pk if len(pk) > 1 else pk[0])


def decode(text: str, open_session: Callable[[], Session]) -> tuple[dict[str, Any], Session | None]:
    """Rebuild the keyword arguments that :func:`encode` stored.

    Args:
        text: The stored JSON text.
        open_session: Opens the session model references are loaded in (called at most once,
            only when the payload holds a model reference).

    Returns:
        The arguments, and the session opened for them (None if none was needed); the caller
        closes it after the receiver returned.

    Raises:
        ValueError: The text is not a payload this release can read.
        ImportError: A class named by the payload cannot be imported.
    """
    if _TAG not in text:  # plain JSON values only: nothing to rebuild
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TidingsValueError("the payload is not a JSON object")
        return data, None
    decoder = _Decoder(open_session)
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TidingsValueError("the payload is not a JSON object")
        return {key: decoder.value(item) for key, item in data.items()}, decoder.session
    except BaseException:
        if decoder.session is not None:
            decoder.session.close()
        raise
