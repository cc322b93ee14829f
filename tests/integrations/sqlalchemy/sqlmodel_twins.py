"""SQLModel twins of a subset of ``tests.oracle.lifecycle``, under their own registry.

SQLModel resolves relationship annotations at class creation, so these live at module level,
instrumented once on import (app label ``lifecycle_sqlmodel``). No ``from __future__ import
annotations`` here: SQLModel needs real annotations, with quoted forward references.
"""

from types import SimpleNamespace
from typing import Optional

from sqlalchemy.orm import registry
from sqlmodel import Field, Relationship, SQLModel

from tidings.sqlalchemy import instrument


class Base(SQLModel, registry=registry()):
    __app_label__ = "lifecycle_sqlmodel"


instrument(Base)


class Person(Base, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    first_name: str
    last_name: str = ""


class Book(Base, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    title: str = ""
    pages: list["Page"] = Relationship(
        back_populates="book",
        sa_relationship_kwargs={"cascade": "all, delete-orphan", "order_by": "Page.id"},
    )
    reviews: list["Review"] = Relationship(back_populates="book")


class Page(Base, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    book_id: int = Field(foreign_key="book.id")
    number: int = 0
    book: Optional["Book"] = Relationship(back_populates="pages")
    notes: list["Note"] = Relationship(
        back_populates="page",
        sa_relationship_kwargs={"cascade": "all, delete-orphan", "order_by": "Note.id"},
    )


class Note(Base, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    page_id: int = Field(foreign_key="page.id")
    text: str = ""
    page: Optional["Page"] = Relationship(back_populates="notes")


class Review(Base, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    book_id: Optional[int] = Field(default=None, foreign_key="book.id")  # noqa: UP045
    stars: int = 0
    book: Optional["Book"] = Relationship(back_populates="reviews")


class User(Base, table=True):
    __tablename__ = "user_account"
    id: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    name: str
    profile: Optional["Profile"] = Relationship(
        back_populates="user",
        sa_relationship_kwargs={"uselist": False, "cascade": "all, delete-orphan"},
    )


class Profile(Base, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045
    user_id: int = Field(foreign_key="user_account.id", unique=True)
    user: Optional["User"] = Relationship(back_populates="profile")


MODELS = SimpleNamespace(
    Base=Base,
    Person=Person,
    Book=Book,
    Page=Page,
    Note=Note,
    Review=Review,
    User=User,
    Profile=Profile,
)
