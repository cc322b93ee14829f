"""SQLAlchemy twins of the Django models in ``tests.oracle.m2m.models``, built per test.

The association tables carry Django's through-table names (``m2m_book_authors``…), so the two
logs of ``m2m_changed`` name the same sender. The pairs cover each way of declaring a
many-to-many relationship in SQLAlchemy:

* ``Book.authors`` / ``Author.books``: lists, ``back_populates`` on both sides;
* ``Article.topics`` / ``Topic.articles``: sets, ``backref=`` on the declaring side;
* ``Person.following`` / ``Person.followers``: self-referential, ``back_populates``;
* ``Group.members`` / ``Member.groups``: through ``Membership``, a mapped association class.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import Column, ForeignKey, Integer, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, backref, mapped_column, relationship


def declarative_base(label: str = "m2m") -> type[DeclarativeBase]:
    """Return a new declarative base whose classes belong to the app ``label``."""
    return type("Base", (DeclarativeBase,), {"__app_label__": label})


def build(base: Any) -> SimpleNamespace:
    """Define the twin models under ``base`` and return them (and ``Base``) by name."""
    metadata = base.metadata
    book_authors = Table(
        "m2m_book_authors",
        metadata,
        Column("book_id", ForeignKey("m2m_book.id"), primary_key=True),
        Column("author_id", ForeignKey("m2m_author.id"), primary_key=True),
    )
    article_topics = Table(
        "m2m_article_topics",
        metadata,
        Column("article_id", ForeignKey("m2m_article.id"), primary_key=True),
        Column("topic_id", ForeignKey("m2m_topic.id"), primary_key=True),
    )
    person_following = Table(
        "m2m_person_following",
        metadata,
        Column("from_person_id", ForeignKey("m2m_person.id"), primary_key=True),
        Column("to_person_id", ForeignKey("m2m_person.id"), primary_key=True),
    )

    class Author(base):
        __tablename__ = "m2m_author"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50), default="")
        books: Mapped[list[Book]] = relationship(
            secondary=book_authors, back_populates="authors", order_by="Book.id"
        )

    class Book(base):
        __tablename__ = "m2m_book"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(50), default="")
        authors: Mapped[list[Author]] = relationship(
            secondary=book_authors, back_populates="books", order_by=Author.id
        )

    class Topic(base):
        __tablename__ = "m2m_topic"
        id: Mapped[int] = mapped_column(primary_key=True)

    class Article(base):
        __tablename__ = "m2m_article"
        id: Mapped[int] = mapped_column(primary_key=True)
        topics: Mapped[set[Topic]] = relationship(
            secondary=article_topics,
            collection_class=set,
            backref=backref("articles", collection_class=set),
        )

    class Person(base):
        __tablename__ = "m2m_person"
        id: Mapped[int] = mapped_column(primary_key=True)
        following: Mapped[list[Person]] = relationship(
            secondary=person_following,
            primaryjoin=lambda: Person.id == person_following.c.from_person_id,
            secondaryjoin=lambda: Person.id == person_following.c.to_person_id,
            back_populates="followers",
        )
        followers: Mapped[list[Person]] = relationship(
            secondary=person_following,
            primaryjoin=lambda: Person.id == person_following.c.to_person_id,
            secondaryjoin=lambda: Person.id == person_following.c.from_person_id,
            back_populates="following",
        )

    class Membership(base):
        __tablename__ = "m2m_membership"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        group_id: Mapped[int] = mapped_column(ForeignKey("m2m_group.id"))
        member_id: Mapped[int] = mapped_column(ForeignKey("m2m_member.id"))
        role: Mapped[str] = mapped_column(String(20), default="member")

    class Member(base):
        __tablename__ = "m2m_member"
        id: Mapped[int] = mapped_column(primary_key=True)
        groups: Mapped[list[Group]] = relationship(
            secondary="m2m_membership", back_populates="members"
        )

    class Group(base):
        __tablename__ = "m2m_group"
        id: Mapped[int] = mapped_column(primary_key=True)
        members: Mapped[list[Member]] = relationship(
            secondary="m2m_membership", back_populates="groups"
        )

    return SimpleNamespace(
        Base=base,
        Author=Author,
        Book=Book,
        Topic=Topic,
        Article=Article,
        Person=Person,
        Membership=Membership,
        Member=Member,
        Group=Group,
        book_authors=book_authors,
        article_topics=article_topics,
        person_following=person_following,
    )
