"""How relationships are declared: reverse sides, inheritance, collection kinds, late setup."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

from sqlalchemy import create_engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    WriteOnlyMapped,
    attribute_keyed_dict,
    mapped_column,
    relationship,
)
from sqlalchemy.orm.attributes import set_committed_value

from tests.integrations.sqlalchemy.m2m_models import link_table, m2m_entry, post_tag_models
from tidings.models import m2m_changed
from tidings.sqlalchemy import _m2m, instrument

Log = list[tuple[Any, ...]]


def _pair_models(
    *, book_info: dict[str, Any], author_info: dict[str, Any], label: str = "pairs"
) -> Any:
    class Base(DeclarativeBase):
        __app_label__ = label

    instrument(Base)
    table = link_table(Base.metadata, "written_by", "book", "author")

    class Author(Base):
        __tablename__ = "author"
        id: Mapped[int] = mapped_column(primary_key=True)
        books: Mapped[list[Book]] = relationship(
            secondary=table, back_populates="authors", info=author_info
        )

    class Book(Base):
        __tablename__ = "book"
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(default="book")
        authors: Mapped[list[Author]] = relationship(
            secondary=table, back_populates="books", info=book_info
        )
        __mapper_args__: ClassVar[dict[str, Any]] = {  # type: ignore[misc]
            "polymorphic_on": "kind",
            "polymorphic_identity": "book",
        }

    class Novel(Book):
        __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "novel"}  # type: ignore[misc]

    class Shelf(Base):
        __tablename__ = "shelf"
        id: Mapped[int] = mapped_column(primary_key=True)
        books: WriteOnlyMapped[Book] = relationship(
            secondary=link_table(Base.metadata, "shelved", "shelf", "book")
        )

    return SimpleNamespace(Base=Base, Author=Author, Book=Book, Novel=Novel, Shelf=Shelf)


def _reverses(models: Any, *operations: Any) -> Log:
    engine = create_engine("sqlite://")
    models.Base.metadata.create_all(engine)
    log: Log = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        log.append((*m2m_entry(sender, **kwargs), kwargs["reverse"], kwargs["model"].__name__))

    m2m_changed.connect(receiver)
    try:
        with Session(engine) as session:
            for operation in operations:
                operation(session)
                session.flush()
    finally:
        m2m_changed.disconnect(receiver)
    engine.dispose()
    return log


def _link_both_ways(models: Any) -> list[Any]:
    book, author, other = models.Novel(id=1), models.Author(id=1), models.Author(id=2)
    for obj, key in ((book, "authors"), (author, "books"), (other, "books")):
        set_committed_value(obj, key, [])
    return [
        lambda session: session.add_all([book, author, other]),
        lambda session: book.authors.append(author),
        lambda session: other.books.append(book),
    ]


def test_info_entry_overrides_the_declaring_side() -> None:
    """``info={"tidings.m2m.reverse": True}`` on one side makes it the reverse side."""
    plain = _pair_models(book_info={}, author_info={})
    assert [entry[4] for entry in _reverses(plain, *_link_both_ways(plain))] == [
        False,
        False,
        True,
        True,
    ]
    flipped = _pair_models(book_info={_m2m.REVERSE_INFO_KEY: True}, author_info={}, label="flipped")
    assert [entry[4] for entry in _reverses(flipped, *_link_both_ways(flipped))] == [
        True,
        True,
        False,
        False,
    ]


def test_subclass_instances_and_write_only_collections() -> None:
    """A subclass inherits the signal (model stays the declared class); write-only works too."""
    models = _pair_models(book_info={}, author_info={})
    shelf = models.Shelf(id=1)
    novel = models.Novel(id=5)
    log = _reverses(
        models,
        *_link_both_ways(models),
        lambda session: session.add_all([shelf, novel]),
        lambda session: shelf.books.add(novel),
        lambda session: shelf.books.remove(novel),
    )
    assert log == [
        ("pre_add", "Novel", 1, [1], False, "Author"),
        ("post_add", "Novel", 1, [1], False, "Author"),
        ("pre_add", "Author", 2, [1], True, "Book"),
        ("post_add", "Author", 2, [1], True, "Book"),
        ("pre_add", "Shelf", 1, [5], False, "Book"),
        ("post_add", "Shelf", 1, [5], False, "Book"),
        ("pre_remove", "Shelf", 1, [5], False, "Book"),
        ("post_remove", "Shelf", 1, [5], False, "Book"),
    ]


def test_dict_collections() -> None:
    """A dict collection (attribute_keyed_dict) sends add, remove and clear like a list."""

    models = post_tag_models("keyed", collection_class=attribute_keyed_dict("name"))
    Post, Tag = models.Post, models.Tag

    post, red, blue = Post(id=1), Tag(id=1, name="red"), Tag(id=2, name="blue")
    log = _reverses(
        models,
        lambda session: session.add_all([post, red, blue]),
        lambda session: post.tags.update({"red": red, "blue": blue}),
        lambda session: post.tags.pop("red"),
        lambda session: post.tags.clear(),
    )
    assert [entry[:4] for entry in log] == [
        ("pre_add", "Post", 1, [1, 2]),
        ("post_add", "Post", 1, [1, 2]),
        ("pre_remove", "Post", 1, [1]),
        ("post_remove", "Post", 1, [1]),
        ("pre_clear", "Post", 1, None),
        ("post_clear", "Post", 1, None),
    ]


def test_instrumenting_configured_classes() -> None:
    """instrument() on classes already configured (and used) covers their collections too."""
    from sqlalchemy.orm import configure_mappers

    from tests.oracle.m2m import twins

    base = twins.declarative_base("late")
    models = twins.build(base)
    configure_mappers()
    models.Book(id=1).authors.append(models.Author(id=1))
    instrument(base)
    book, author = models.Book(id=2), models.Author(id=2)
    log = _reverses(
        models,
        lambda session: session.add_all([book, author]),
        lambda session: author.books.append(book),
    )
    assert log == [
        ("pre_add", "Author", 2, [2], True, "Book"),
        ("post_add", "Author", 2, [2], True, "Book"),
    ]
