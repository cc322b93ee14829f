"""The payload codec: what a durable send can carry and how it comes back."""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tidings.outbox import PayloadTypeError
from tidings.outbox._codec import decode, encode


class Colour(enum.Enum):
    """An enum a payload can carry."""

    RED = "red"
    BLUE = 2


class Base(DeclarativeBase):
    """Models of the codec tests."""


class Customer(Base):
    """A model a payload refers to."""

    __tablename__ = "customer"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100))


def where(argument: str) -> str:
    """The error prefix of these tests."""
    return f"signal S, receiver R, argument {argument!r}"


def no_session() -> Session:
    """Fail: the payload was not expected to hold a model reference."""
    raise AssertionError("no session should be opened")


def roundtrip(value: Any) -> Any:
    """Encode and decode ``value`` as the argument ``x``."""
    kwargs, session = decode(encode({"x": value}, where), no_session)
    assert session is None
    return kwargs["x"]


VALUES = {
    "none": None,
    "bool": True,
    "int": -(2**70),
    "float": 1.5,
    "str": "é\u2603",
    "list": [1, "a", [None]],
    "dict": {"a": {"b": [1, 2]}},
    "dict-with-tag-key": {"$t": "not a tag", "v": 1},
    "dict-int-keys": {1: "one", 2: "two"},
    "tuple": (1, (2, 3)),
    "set": {3, 1, 2},
    "frozenset": frozenset({"a"}),
    "datetime-aware": datetime.datetime(2026, 12, 1, 9, 30, tzinfo=datetime.timezone.utc),
    "datetime-naive": datetime.datetime(2026, 12, 1, 9, 30, 1, 5),
    "date": datetime.date(2026, 12, 1),
    "time": datetime.time(9, 30, 15),
    "decimal": decimal.Decimal("12.3400"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "enum": Colour.BLUE,
    "class": Customer,
}


@pytest.mark.parametrize("value", list(VALUES.values()), ids=list(VALUES))
def test_supported_values_come_back_equal_and_of_the_same_type(value: Any) -> None:
    """Every supported value decodes to an equal value of the same type."""
    back = roundtrip(value)
    assert back == value
    assert type(back) is type(value)


def test_json_values_are_stored_as_themselves() -> None:
    """JSON-safe arguments are stored unchanged: the payload reads as plain JSON."""
    text = encode({"sender": None, "n": 1, "tags": ["a"], "meta": {"k": False}}, where)
    assert json.loads(text) == {"sender": None, "n": 1, "tags": ["a"], "meta": {"k": False}}


def test_documented_encodings() -> None:
    """datetime, Decimal, UUID and enums are stored in their documented tagged forms."""
    text = encode(
        {
            "at": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
            "amount": decimal.Decimal("1.10"),
            "key": uuid.UUID(int=1),
            "colour": Colour.RED,
        },
        where,
    )
    assert json.loads(text) == {
        "at": {"$t": "datetime", "v": "2026-01-02T03:04:05+00:00"},
        "amount": {"$t": "decimal", "v": "1.10"},
        "key": {"$t": "uuid", "v": "00000000-0000-0000-0000-000000000001"},
        "colour": {"$t": "enum", "cls": "tests.outbox.test_codec:Colour", "v": "red"},
    }


class Opaque:
    """A type the codec does not know."""


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (Opaque(), "durable payloads take JSON values"),
        (float("nan"), "floats must be finite"),
        (b"bytes", "durable payloads take JSON values"),
        ([1, {"deep": object()}], "durable payloads take JSON values"),
        (type("Local", (), {"__qualname__": "f.<locals>.Local"}), "importable"),
    ],
    ids=["object", "nan", "bytes", "nested", "local-class"],
)
def test_other_values_are_a_type_error_naming_where(value: Any, why: str) -> None:
    """An unsupported value is a PayloadTypeError (a TypeError) naming the argument."""
    with pytest.raises(TypeError, match=why) as info:
        encode({"ok": 1, "bad": value}, where)
    assert isinstance(info.value, PayloadTypeError)
    assert str(info.value).startswith("signal S, receiver R, argument 'bad': ")


@pytest.fixture
def db() -> Iterator[Engine]:
    """An in-memory SQLite database with the customer table."""
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def saved(session: Session, id: int, email: str) -> Customer:
    """A customer committed in ``session``."""
    customer = Customer(id=id, email=email)
    session.add(customer)
    session.commit()
    return customer


def test_a_model_instance_is_stored_as_a_reference_and_reloaded(db: Engine) -> None:
    """An instance travels as class and primary key and comes back freshly loaded."""
    with Session(db) as session:
        customer = saved(session, 5, "old@example.com")
        text = encode({"customer": customer}, where)
        customer.email = "new@example.com"
        session.commit()
    assert json.loads(text)["customer"] == {
        "$t": "model",
        "cls": "tests.outbox.test_codec:Customer",
        "pk": [5],
    }
    kwargs, opened = decode(text, lambda: Session(db))
    assert opened is not None
    loaded = kwargs["customer"]
    assert isinstance(loaded, Customer)
    assert loaded.email == "new@example.com"
    assert loaded in opened
    opened.close()


def test_a_reference_to_a_row_gone_since_arrives_as_none(db: Engine) -> None:
    """A reloaded reference whose row was deleted meanwhile is None."""
    with Session(db) as session:
        customer = saved(session, 6, "x@example.com")
        text = encode({"customer": customer}, where)
        session.delete(customer)
        session.commit()
    kwargs, opened = decode(text, lambda: Session(db))
    assert kwargs["customer"] is None
    assert opened is not None
    opened.close()


def test_a_deleted_instance_arrives_detached_from_its_snapshot(db: Engine) -> None:
    """A deleted instance travels with its column values and arrives as a detached object."""
    with Session(db) as session:
        customer = saved(session, 7, "gone@example.com")
        session.delete(customer)
        session.flush()
        text = encode({"instance": customer}, where)
        session.commit()
    kwargs, opened = decode(text, no_session)
    assert opened is None
    rebuilt = kwargs["instance"]
    assert isinstance(rebuilt, Customer)
    assert (rebuilt.id, rebuilt.email) == (7, "gone@example.com")
    from sqlalchemy import inspect

    assert inspect(rebuilt).detached


def test_an_unflushed_instance_is_refused(db: Engine) -> None:
    """An instance in no Session (even with a primary key set), or added to one with a
    primary key the database is to assign, cannot be referenced."""
    with pytest.raises(PayloadTypeError, match="must be in a Session and flushed"):
        encode({"customer": Customer(email="new@example.com")}, where)
    with pytest.raises(PayloadTypeError, match="must be in a Session and flushed"):
        encode({"customer": Customer(id=3, email="new@example.com")}, where)
    with Session(db) as session:
        session.add(pending := Customer(email="new@example.com"))
        with pytest.raises(PayloadTypeError, match="connect the receiver to post_save"):
            encode({"customer": pending}, where)


def test_an_int_too_long_to_write_as_text_is_refused_naming_its_argument() -> None:
    """An int past the interpreter's limit on digits converted to text (4300 by default) is a
    PayloadTypeError naming the argument, also inside a list; a long str passes."""
    huge = 10**5000
    for kwargs in ({"n": huge}, {"n": [1, huge]}, {"ok": 1, "n": {"deep": (huge,)}}):
        with pytest.raises(
            PayloadTypeError, match=r"argument 'n'.*an int too long.*pass it as a str"
        ):
            encode(kwargs, where)
    digits = "9" * 5000
    assert encode({"n": digits}, where) == f'{{"n":"{digits}"}}'
