"""Random sequences of saves and deletes send the same save/delete signals on Django and SQLAlchemy.

A Hypothesis state machine applies each step to both ORMs at once (SQLAlchemy: one flush per
step) and compares the new log entries after every step. Instances are named by creation order
on each side, so that primary keys that differ between the databases do not matter.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

import tidings.models as tm
from tests.integrations.sqlalchemy.conftest import SAVE_DELETE, DjangoSide, Recorder
from tests.integrations.sqlalchemy.twins import build, declarative_base
from tidings.apps import apps
from tidings.sqlalchemy import instrument, save

NAMES = st.sampled_from(["Ada", "Bob", "Cy", "Dee"])


class Side:
    """One ORM's objects, by creation index, and its normalized log."""

    def __init__(self, signals: dict[str, Any]) -> None:
        self.recorder = Recorder(signals, SAVE_DELETE)
        self.people: list[Any] = []
        self.books: list[Any] = []
        self.names: dict[tuple[str, Any], int] = {}
        self.seen = 0
        self.created = 0

    def name(self, model: str, pk: Any) -> Any:
        """The creation index of ``(model, pk)``, assigned at first sight."""
        if (model, pk) not in self.names:
            self.names[model, pk] = self.created = self.created + 1
        return self.names[model, pk]

    def new_entries(self) -> list[Any]:
        """Log entries since the last call, with pks replaced by creation indexes."""
        entries = []
        for name, sender, pk, kwargs in self.recorder.log[self.seen :]:
            kwargs = dict(kwargs)
            if "origin" in kwargs and isinstance(kwargs["origin"], tuple):
                kwargs["origin"] = self.name(*kwargs["origin"])
            entries.append((name, sender, None if pk is None else self.name(sender, pk), kwargs))
            if name == "post_delete":
                # SQLite without AUTOINCREMENT reuses the pk: the next object is a new one.
                self.names.pop((sender, pk), None)
        self.seen = len(self.recorder.log)
        return entries


class SaveDeleteMachine(RuleBasedStateMachine):
    """Applies the same operations to Django and to SQLAlchemy (sync, SQLite)."""

    @initialize()
    def start(self) -> None:
        """Fresh Django tables and a fresh SQLAlchemy database and models."""
        from tests.integrations.sqlalchemy.conftest import _reset_django
        from tests.oracle import setup_django

        setup_django()
        _reset_django()
        self.django = DjangoSide()
        self.registry = apps.isolated()
        self.registry.__enter__()
        base = declarative_base()
        instrument(base)
        self.m = build(base)
        self.engine = create_engine("sqlite://", poolclass=StaticPool)

        @event.listens_for(self.engine, "connect")
        def foreign_keys(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA foreign_keys=ON")

        self.m.Base.metadata.create_all(self.engine)
        self.session = Session(self.engine)
        self.dj = Side(self.django.signals)
        self.sa = Side({name: getattr(tm, name) for name in self.django.signals})

    def teardown(self) -> None:
        """Disconnect, close and restore the app registry."""
        if not hasattr(self, "session"):
            return
        self.dj.recorder.close()
        self.sa.recorder.close()
        self.session.close()
        self.engine.dispose()
        self.registry.__exit__(None, None, None)

    @rule(first_name=NAMES)
    def create_person(self, first_name: str) -> None:
        """Person(...).save() / add + flush."""
        self.dj.people.append(self.django.models.Person.objects.create(first_name=first_name))
        person = self.m.Person(first_name=first_name)
        self.session.add(person)
        self.session.flush()
        self.sa.people.append(person)

    @precondition(lambda self: self.dj.people)
    @rule(data=st.data(), last_name=NAMES)
    def rename(self, data: st.DataObject, last_name: str) -> None:
        """Change last_name (to a new value) and save / flush."""
        index = data.draw(st.integers(0, len(self.dj.people) - 1))
        new = last_name + str(len(self.dj.recorder.log))
        self.dj.people[index].last_name = new
        self.dj.people[index].save()
        self.sa.people[index].last_name = new
        self.session.flush()

    @precondition(lambda self: self.dj.people)
    @rule(
        data=st.data(), fields=st.sampled_from([None, ["first_name"], ["first_name", "last_name"]])
    )
    def explicit_save(self, data: st.DataObject, fields: list[str] | None) -> None:
        """save() without changes, optionally with update_fields."""
        index = data.draw(st.integers(0, len(self.dj.people) - 1))
        self.dj.people[index].save(update_fields=fields)
        save(self.session, self.sa.people[index], update_fields=fields)

    @precondition(lambda self: self.dj.people)
    @rule(data=st.data())
    def delete_person(self, data: st.DataObject) -> None:
        """delete() / session.delete + flush."""
        index = data.draw(st.integers(0, len(self.dj.people) - 1))
        self.dj.people.pop(index).delete()
        self.session.delete(self.sa.people.pop(index))
        self.session.flush()

    @rule(pages=st.integers(0, 3), reviews=st.integers(0, 2))
    def create_book(self, pages: int, reviews: int) -> None:
        """A book, then its pages and reviews one save at a time."""
        models = self.django.models
        book = models.Book.objects.create(title="t")
        for number in range(pages):
            models.Page.objects.create(book=book, number=number)
        for _ in range(reviews):
            models.Review.objects.create(book=book)
        self.dj.books.append(book)
        sa_book = self.m.Book(title="t", pages=[], reviews=[])
        self.session.add(sa_book)
        self.session.flush()
        for number in range(pages):
            self.session.add(self.m.Page(book=sa_book, number=number))
            self.session.flush()
        for _ in range(reviews):
            self.session.add(self.m.Review(book=sa_book))
            self.session.flush()
        self.sa.books.append(sa_book)

    @precondition(lambda self: self.dj.books)
    @rule(data=st.data())
    def delete_book(self, data: st.DataObject) -> None:
        """Delete a book: pages cascade, reviews are set to NULL."""
        index = data.draw(st.integers(0, len(self.dj.books) - 1))
        self.dj.books.pop(index).delete()
        self.session.delete(self.sa.books.pop(index))
        self.session.flush()

    @invariant()
    def same_signals(self) -> None:
        """Both logs grew by the same entries."""
        if hasattr(self, "session"):
            assert self.sa.new_entries() == self.dj.new_entries()


TestSaveDelete = SaveDeleteMachine.TestCase
TestSaveDelete.settings = settings(
    max_examples=15,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
