"""SQLModel twins of ``Book``/``Author`` in ``tests.oracle.m2m``, linked through a link model.

SQLModel resolves relationship annotations at class creation, so these live at module level,
instrumented once on import (app label ``m2m_sqlmodel``). No ``from __future__ import
annotations`` here: SQLModel needs real annotations, with quoted forward references.
"""

from types import SimpleNamespace

from sqlalchemy.orm import registry
from sqlmodel import Field, Relationship, SQLModel

from tidings.sqlalchemy import instrument


class Base(SQLModel, registry=registry()):
    __app_label__ = "m2m_sqlmodel"


instrument(Base)


class BookAuthorLink(Base, table=True):
    __tablename__ = "m2m_book_authors"
    book_id: int = Field(foreign_key="m2m_book.id", primary_key=True)
    author_id: int = Field(foreign_key="m2m_author.id", primary_key=True)


class Author(Base, table=True):
    __tablename__ = "m2m_author"
    id: int = Field(primary_key=True)
    books: list["Book"] = Relationship(back_populates="authors", link_model=BookAuthorLink)


class Book(Base, table=True):
    __tablename__ = "m2m_book"
    id: int = Field(primary_key=True)
    authors: list[Author] = Relationship(back_populates="books", link_model=BookAuthorLink)


MODELS = SimpleNamespace(Base=Base, Author=Author, Book=Book, BookAuthorLink=BookAuthorLink)
