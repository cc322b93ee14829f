"""The registry's SQLAlchemy checks: receivers that an uninstrumented class never calls."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from sqlalchemy.orm import Mapped, Session, mapped_column

from tests.integrations.sqlalchemy.twins import declarative_base
from tidings.apps import CheckMessage, CheckWarning, apps
from tidings.models import post_save, pre_delete
from tidings.sqlalchemy import instrument

ADVICE = "its declarative base has not been passed to tidings.sqlalchemy.instrument()."


def on_save(sender: Any, **kwargs: Any) -> None:
    """A receiver for the checks to name."""


def _models(label: str = "shop") -> tuple[type, type]:
    """A fresh base labelled ``label`` and one class mapped under it."""
    base = declarative_base(label)

    class Item(base):  # type: ignore[misc,valid-type]
        __tablename__ = "item"
        id: Mapped[int] = mapped_column(primary_key=True)

    return base, Item


def test_receiver_of_an_uninstrumented_class_is_reported() -> None:
    """A receiver whose sender is a mapped class never instrumented is sqlalchemy.E001."""
    _, item = _models()
    post_save.connect(on_save, sender=item)
    try:
        assert apps.check() == [
            CheckMessage(
                "sqlalchemy.E001",
                f"The receiver '{__name__}.on_save' is connected to the 'post_save' signal "
                f"with the sender {__name__}._models.<locals>.Item, a mapped class that sends "
                f"no model signals: {ADVICE}",
                f"{__name__}.on_save",
            )
        ]
    finally:
        post_save.disconnect(on_save, sender=item)


def test_instrumenting_the_base_clears_the_report() -> None:
    """Once the base is instrumented, the same connection is not reported any more."""
    base, item = _models()
    pre_delete.connect(on_save, sender=item)
    try:
        assert [m.id for m in apps.check()] == ["sqlalchemy.E001"]
        instrument(base)
        assert apps.check() == []
    finally:
        pre_delete.disconnect(on_save, sender=item)


def test_plain_classes_and_other_senders_are_not_reported() -> None:
    """Senders that are not mapped classes (or no sender at all) are none of this check's."""
    plain = type("Plain", (), {})
    post_save.connect(on_save, sender=plain)
    post_save.connect(on_save)
    try:
        assert apps.check() == []
    finally:
        post_save.disconnect(on_save, sender=plain)
        post_save.disconnect(on_save)


def test_lazy_reference_to_an_uninstrumented_class_says_why_it_waits() -> None:
    """A pending 'shop.Item' that an uninstrumented class would resolve is sqlalchemy.E002."""
    # A label of its own: classes mapped by other tests may still be alive, and would match.
    _, item = _models("waiting_shop")
    post_save.connect(on_save, sender="waiting_shop.Item")
    messages = apps.check()
    assert [m.id for m in messages] == ["sqlalchemy.E002", "signals.E001"]  # sorted by text
    assert messages[0] == CheckMessage(
        "sqlalchemy.E002",
        f"The lazy reference 'waiting_shop.item' waits for the mapped class {__name__}._models."
        f"<locals>.Item, which is never registered: {ADVICE}",
        item,
    )


def test_populate_warns_about_an_uninstrumented_sender() -> None:
    """The ready-time report includes the SQLAlchemy check, at the caller of populate()."""
    _, item = _models()
    post_save.connect(on_save, sender=item)
    try:
        with pytest.warns(CheckWarning, match=r"^\(sqlalchemy\.E001\) The receiver") as record:
            apps.populate(["tests.apps_fixtures.plain"])
        assert record[0].filename == __file__
    finally:
        post_save.disconnect(on_save, sender=item)


def test_receiver_is_indeed_never_called_without_instrument() -> None:
    """What the check reports is real: the uninstrumented class's save sends nothing."""
    from sqlalchemy import create_engine

    base, item = _models()
    calls: list[Any] = []

    def record(sender: Any, **kwargs: Any) -> None:
        calls.append(sender)

    post_save.connect(record, sender=item)
    engine = create_engine("sqlite://")
    try:
        base.metadata.create_all(engine)  # type: ignore[attr-defined]
        with Session(engine) as session:
            session.add(item())
            session.commit()
        assert calls == []
        assert [m.id for m in apps.check()] == ["sqlalchemy.E001"]
    finally:
        post_save.disconnect(record, sender=item)
        engine.dispose()


def test_check_runs_without_tidings_sqlalchemy_being_imported() -> None:
    """A project importing only SQLAlchemy and tidings.models still gets the check."""
    script = textwrap.dedent(
        """
        import sys
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
        from tidings.apps import apps
        from tidings.models import post_save

        class Base(DeclarativeBase):
            pass

        class User(Base):
            __tablename__ = "user"
            id: Mapped[int] = mapped_column(primary_key=True)

        def welcome(sender, **kwargs):
            pass

        post_save.connect(welcome, sender=User)
        assert "tidings.sqlalchemy" not in sys.modules
        print([m.id for m in apps.check()])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "['sqlalchemy.E001']"


@pytest.mark.parametrize("instrumented", [False, True], ids=["plain", "instrumented"])
def test_receiver_with_the_declarative_base_as_sender_is_reported(instrumented: bool) -> None:
    """A base as the sender never matches a send (the mapped class is the sender): E003."""
    base, _ = _models("base_shop")
    if instrumented:
        instrument(base)
    post_save.connect(on_save, sender=base)
    try:
        (message,) = apps.check()
        assert message.id == "sqlalchemy.E003"
        assert message.msg.startswith(
            f"The receiver '{__name__}.on_save' is connected to the 'post_save' signal with the "
            "sender tests.integrations.sqlalchemy.twins.Base, a declarative base: model signals"
        )
        assert "issubclass(sender, Base)" in message.msg
    finally:
        post_save.disconnect(on_save, sender=base)


def test_sqlmodel_base_as_sender_is_reported() -> None:
    """SQLModel itself, as a sender, is a base too."""
    from sqlmodel import SQLModel

    post_save.connect(on_save, sender=SQLModel)
    try:
        assert [m.id for m in apps.check()] == ["sqlalchemy.E003"]
    finally:
        post_save.disconnect(on_save, sender=SQLModel)
