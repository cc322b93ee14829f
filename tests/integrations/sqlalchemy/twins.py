"""SQLAlchemy twins of the Django models in ``tests.oracle.lifecycle``, built per test.

Each test gets fresh classes under a fresh base, so instrumentation, ``class_prepared`` and app
registration start from scratch inside the test's isolated app registry.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar, Optional

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def declarative_base(label: str | None = "lifecycle") -> type[DeclarativeBase]:
    """Return a new declarative base, with ``__app_label__`` set when ``label`` is given."""
    namespace: dict[str, Any] = {}
    if label is not None:
        namespace["__app_label__"] = label
    return type("Base", (DeclarativeBase,), namespace)


def build(base: Any) -> SimpleNamespace:
    """Define the twin models under ``base`` and return them by name."""

    class Person(base):  # type: ignore[misc]
        __tablename__ = "person"
        id: Mapped[int] = mapped_column(primary_key=True)
        first_name: Mapped[str] = mapped_column(String(50))
        last_name: Mapped[str] = mapped_column(String(50), default="")
        kind: Mapped[str] = mapped_column(String(20), default="person")
        __mapper_args__: ClassVar[dict[str, Any]] = {
            "polymorphic_on": "kind",
            "polymorphic_identity": "person",
        }

    class ProxyPerson(Person):
        __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "proxy"}

    class Book(base):  # type: ignore[misc]
        __tablename__ = "book"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(50), default="")
        pages: Mapped[list[Page]] = relationship(
            back_populates="book", cascade="all, delete-orphan", order_by="Page.id"
        )
        reviews: Mapped[list[Review]] = relationship(back_populates="book")

    class Page(base):  # type: ignore[misc]
        __tablename__ = "page"
        id: Mapped[int] = mapped_column(primary_key=True)
        book_id: Mapped[int] = mapped_column(ForeignKey("book.id"))
        number: Mapped[int] = mapped_column(default=0)
        book: Mapped[Book] = relationship(back_populates="pages")
        notes: Mapped[list[Note]] = relationship(
            back_populates="page", cascade="all, delete-orphan", order_by="Note.id"
        )

    class Note(base):  # type: ignore[misc]
        __tablename__ = "note"
        id: Mapped[int] = mapped_column(primary_key=True)
        page_id: Mapped[int] = mapped_column(ForeignKey("page.id"))
        text: Mapped[str] = mapped_column(String(50), default="")
        page: Mapped[Page] = relationship(back_populates="notes")

    class Review(base):  # type: ignore[misc]
        __tablename__ = "review"
        id: Mapped[int] = mapped_column(primary_key=True)
        book_id: Mapped[Optional[int]] = mapped_column(ForeignKey("book.id"))  # noqa: UP045
        stars: Mapped[int] = mapped_column(default=0)
        book: Mapped[Optional[Book]] = relationship(back_populates="reviews")  # noqa: UP045

    class Place(base):  # type: ignore[misc]
        __tablename__ = "place"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        type: Mapped[str] = mapped_column(String(20), default="place")
        __mapper_args__: ClassVar[dict[str, Any]] = {
            "polymorphic_on": "type",
            "polymorphic_identity": "place",
        }

    class Restaurant(Place):
        __tablename__ = "restaurant"
        id: Mapped[int] = mapped_column(ForeignKey("place.id"), primary_key=True)
        serves: Mapped[str] = mapped_column(String(50), default="")
        __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "restaurant"}

    class User(base):  # type: ignore[misc]
        __tablename__ = "user_account"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        # The reverse side of the one-to-one; "delete-orphan" also deletes a replaced profile.
        profile: Mapped[Optional[Profile]] = relationship(  # noqa: UP045
            back_populates="user", cascade="all, delete-orphan"
        )

    class Profile(base):  # type: ignore[misc]
        __tablename__ = "profile"
        id: Mapped[int] = mapped_column(primary_key=True)
        user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), unique=True)
        user: Mapped[User] = relationship(back_populates="profile")

    return SimpleNamespace(
        Base=base,
        Person=Person,
        ProxyPerson=ProxyPerson,
        Book=Book,
        Page=Page,
        Note=Note,
        Review=Review,
        Place=Place,
        Restaurant=Restaurant,
        User=User,
        Profile=Profile,
    )
