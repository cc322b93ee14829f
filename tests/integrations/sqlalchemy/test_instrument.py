"""instrument(): which classes send signals, class_prepared, app labels and registration."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from sqlalchemy import Column, Integer, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry

import tidings
from tests.integrations.sqlalchemy.twins import declarative_base
from tidings import TidingsError
from tidings.apps import apps
from tidings.models import class_prepared, post_init, pre_init
from tidings.sqlalchemy import AppLabelError, InstrumentError, instrument, is_instrumented


class Events:
    """Collects (signal name, sender name) pairs."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, signal: Any, sender: Any, **kwargs: Any) -> None:
        name = getattr(signal, "name", None) or "class_prepared"
        self.seen.append((name, sender.__name__))


def test_class_prepared_then_registration_for_existing_and_later_classes() -> None:
    """Classes mapped before and after instrument() get class_prepared, then registration."""
    events: list[tuple[str, bool]] = []

    def on_prepared(sender: type, **kwargs: Any) -> None:
        registered = apps.get_registered_model("shop", sender.__name__) is sender
        events.append((sender.__name__, registered))

    base = declarative_base("shop")

    class Early(base):  # type: ignore[misc,valid-type]
        __tablename__ = "early"
        id: Mapped[int] = mapped_column(primary_key=True)

    class_prepared.connect(on_prepared)
    try:
        instrument(base)

        class Late(base):  # type: ignore[misc,valid-type]
            __tablename__ = "late"
            id: Mapped[int] = mapped_column(primary_key=True)

    finally:
        class_prepared.disconnect(on_prepared)
    assert events == [("Early", False), ("Late", False)]
    assert apps.get_model("shop.Early") is Early
    assert apps.get_model("shop", "late") is Late
    assert is_instrumented(Early)
    assert is_instrumented(Late)


def test_instrument_twice_is_a_no_op() -> None:
    """Calling instrument() again for the same base sends nothing new."""
    base = declarative_base("shop")

    class Thing(base):  # type: ignore[misc,valid-type]
        __tablename__ = "thing"
        id: Mapped[int] = mapped_column(primary_key=True)

    events = Events()
    class_prepared.connect(events)
    try:
        instrument(base)
        instrument(base)
    finally:
        class_prepared.disconnect(events)
    assert events.seen == [("class_prepared", "Thing")]


def test_classes_of_other_bases_send_nothing() -> None:
    """A base that was never instrumented keeps plain SQLAlchemy behaviour."""

    class Plain(DeclarativeBase):
        pass

    class Quiet(Plain):
        __tablename__ = "quiet"
        id: Mapped[int] = mapped_column(primary_key=True)

    events = Events()
    pre_init.connect(events)
    try:
        Quiet(id=1)
    finally:
        pre_init.disconnect(events)
    assert events.seen == []
    assert not is_instrumented(Quiet)


def test_a_registry_instruments_imperative_and_decorated_classes() -> None:
    """instrument(registry) covers classes mapped with registry.mapped and map_imperatively."""
    reg = registry()
    instrument(reg)

    @reg.mapped
    class Gadget:
        __tablename__ = "gadget"
        __app_label__ = "lab"
        id = Column(Integer, primary_key=True)
        name = Column(String(20))

    class Widget:
        __app_label__ = "lab"

        def __init__(self, name: str) -> None:
            self.name = name

    table = Table(
        "widget", reg.metadata, Column("id", Integer, primary_key=True), Column("name", String)
    )
    reg.map_imperatively(Widget, table)
    events = Events()
    pre_init.connect(events)
    post_init.connect(events)
    try:
        Gadget(name="g")  # type: ignore[call-arg]
        Widget("w")
    finally:
        pre_init.disconnect(events)
        post_init.disconnect(events)
    assert events.seen == [
        ("pre_init", "Gadget"),
        ("post_init", "Gadget"),
        ("pre_init", "Widget"),
        ("post_init", "Widget"),
    ]
    assert apps.get_model("lab.widget") is Widget


def test_app_label_from_the_installed_app_holding_the_module() -> None:
    """Without __app_label__, the label is that of the installed app whose package holds it."""
    with apps.isolated(["tests.integrations.sqlalchemy"]):
        base = declarative_base(None)
        instrument(base)

        class Gizmo(base):  # type: ignore[misc,valid-type]
            __tablename__ = "gizmo"
            id: Mapped[int] = mapped_column(primary_key=True)

        assert apps.get_model("sqlalchemy.Gizmo") is Gizmo


def test_a_class_without_app_label_is_an_error_naming_it() -> None:
    """No __app_label__ and no installed app: AppLabelError says what to set, at definition."""
    base = declarative_base(None)
    instrument(base)
    with pytest.raises(AppLabelError, match=r"Orphan.*__app_label__") as caught:

        class Orphan(base):  # type: ignore[misc,valid-type]
            __tablename__ = "orphan"
            id: Mapped[int] = mapped_column(primary_key=True)

    assert isinstance(caught.value, TidingsError)


def test_instrument_rejects_what_is_not_a_base() -> None:
    """instrument() of a plain class raises InstrumentError (a TypeError) naming it."""
    with pytest.raises(InstrumentError, match="NotABase"):
        instrument(type("NotABase", (), {}))


def test_instrument_refuses_a_mapped_class_naming_its_base_and_siblings() -> None:
    """instrument(Model) would instrument Model's whole registry: refused, nothing instrumented;
    instrument(Model.registry) is how to ask for that whole registry on purpose."""

    class Shop(DeclarativeBase):
        __app_label__ = "shop"

    class Item(Shop):
        __tablename__ = "item"
        id: Mapped[int] = mapped_column(primary_key=True)

    class Order(Shop):
        __tablename__ = "orders"
        id: Mapped[int] = mapped_column(primary_key=True)

    with pytest.raises(InstrumentError) as caught:
        instrument(Item)
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, TidingsError)
    message = str(caught.value)
    assert "mapped class" in message
    assert "Item" in message
    assert "(Order)" in message
    assert "instrument(Shop)" in message
    assert "instrument(Item.registry)" in message
    assert not is_instrumented(Item)
    assert not is_instrumented(Order)
    instrument(Item.registry)
    assert is_instrumented(Item)
    assert is_instrumented(Order)


def test_abstract_classes_are_not_prepared() -> None:
    """An __abstract__ class has no mapper: no class_prepared, only for concrete subclasses."""
    base = declarative_base("shop")
    instrument(base)
    events = Events()
    class_prepared.connect(events)
    try:

        class Stamped(base):  # type: ignore[misc,valid-type]
            __abstract__ = True
            id: Mapped[int] = mapped_column(primary_key=True)

        class Concrete(Stamped):
            __tablename__ = "concrete"

    finally:
        class_prepared.disconnect(events)
    assert events.seen == [("class_prepared", "Concrete")]


def test_subclass_constructor_chain_sends_post_init_once() -> None:
    """A subclass __init__ calling super().__init__ sends one pre_init and one post_init."""
    base = declarative_base("shop")
    instrument(base)

    class Animal(base):  # type: ignore[misc,valid-type]
        __tablename__ = "animal"
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(String(10))
        __mapper_args__: ClassVar[dict[str, Any]] = {
            "polymorphic_on": "kind",
            "polymorphic_identity": "animal",
        }

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)

    class Dog(Animal):
        __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "dog"}

        def __init__(self, name: str) -> None:
            self.name = name
            super().__init__(kind="dog")

    events = Events()
    pre_init.connect(events)
    post_init.connect(events)
    try:
        dog = Dog("rex")
    finally:
        pre_init.disconnect(events)
        post_init.disconnect(events)
    assert events.seen == [("pre_init", "Dog"), ("post_init", "Dog")]
    assert dog.kind == "dog"
    # Each run exercises the wrapper of its path: compiled, or the pure-Python function.
    wrapper = Dog.__dict__["__init__"]
    assert (type(wrapper).__name__ == "InitHook") is tidings.compiled
    assert wrapper.__name__ == "__init__"


def test_instrumenting_sqlmodel_itself_covers_its_table_models() -> None:
    """instrument(SQLModel) covers SQLModel's default registry (run in a fresh interpreter)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        from typing import Optional
        from sqlmodel import Field, Session, SQLModel, create_engine
        from tidings.apps import apps
        from tidings.models import post_save
        from tidings.sqlalchemy import instrument

        instrument(SQLModel)

        class Hero(SQLModel, table=True):
            __app_label__ = "heroes"
            id: Optional[int] = Field(default=None, primary_key=True)
            name: str

        seen = []
        post_save.connect(lambda sender, created, **kw: seen.append((sender, created)), weak=False)
        engine = create_engine("sqlite://")
        SQLModel.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Hero(name="Ada"))
            session.commit()
        assert seen == [(Hero, True)], seen
        assert apps.get_model("heroes.Hero") is Hero
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr
