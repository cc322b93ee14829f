"""What the m2m tests share: association tables, models under fresh bases, log entries."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import Column, ForeignKey, MetaData, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from tidings.sqlalchemy import instrument


def link_table(metadata: MetaData, name: str, *tables: str) -> Table:
    """An association table: a primary-key column ``<table>_id`` for each table's ``id``."""
    columns: list[Column[Any]] = [
        Column(f"{table}_id", ForeignKey(f"{table}.id"), primary_key=True) for table in tables
    ]
    return Table(name, metadata, *columns)


def post_tag_models(label: str, *, collection_class: Any) -> SimpleNamespace:
    """``Post.tags``, a ``collection_class`` of ``Tag`` (id, name), under instrumented ``label``.

    Returns:
        ``Base``, ``Post`` and ``Tag``.
    """

    class Base(DeclarativeBase):
        __app_label__ = label

    instrument(Base)
    links = link_table(Base.metadata, "post_tags", "post", "tag")

    class Tag(Base):
        __tablename__ = "tag"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    class Post(Base):
        __tablename__ = "post"
        id: Mapped[int] = mapped_column(primary_key=True)
        tags = relationship(Tag, secondary=links, collection_class=collection_class)

    return SimpleNamespace(Base=Base, Post=Post, Tag=Tag)


def m2m_entry(sender: Any, **kwargs: Any) -> tuple[Any, ...]:
    """An ``m2m_changed`` send as ``(action, model name, instance id, sorted pk_set or None)``."""
    pk_set = kwargs["pk_set"]
    return (
        kwargs["action"],
        type(kwargs["instance"]).__name__,
        kwargs["instance"].id,
        None if pk_set is None else sorted(pk_set),
    )
