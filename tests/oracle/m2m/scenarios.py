"""The many-to-many scenarios on which tidings and Django must send the same ``m2m_changed``.

Each scenario writes the Django call and the SQLAlchemy operation that a user would write for
the same intent: ``add()`` is ``append``/``extend`` (lists) or ``add``/``update`` (sets),
``set()`` is assignment, ``remove()`` and ``clear()`` keep their names. Scenarios where the two
ORMs differ on purpose are not here: ``test_m2m.py`` pins them one by one.
"""

from __future__ import annotations

from tests.oracle.m2m.harness import Scenario

SCENARIOS = [
    Scenario(
        "add-forward",
        django=[lambda w: w.b1.authors.add(w.a1, w.a2)],
        sqla=[lambda w: w.b1.authors.extend([w.a1, w.a2])],
    ),
    Scenario(
        "add-one-at-a-time",
        django=[lambda w: w.b1.authors.add(w.a1), lambda w: w.b1.authors.add(w.a3)],
        sqla=[lambda w: w.b1.authors.append(w.a1), lambda w: w.b1.authors.append(w.a3)],
    ),
    Scenario(
        "add-partly-linked-skips-linked",
        setup=[("art1", "topics", ("t1",))],
        django=[lambda w: w.art1.topics.add(w.t1, w.t2)],
        sqla=[lambda w: w.art1.topics.update({w.t1, w.t2})],
    ),
    Scenario(
        "add-reverse",
        setup=[("b1", "authors", ("a1",))],
        django=[lambda w: w.a3.books.add(w.b1, w.b2)],
        sqla=[lambda w: w.a3.books.extend([w.b1, w.b2])],
    ),
    Scenario(
        "add-reverse-backref-set",
        django=[lambda w: w.t2.articles.add(w.art1)],
        sqla=[lambda w: w.t2.articles.add(w.art1)],
    ),
    Scenario(
        "remove-forward",
        setup=[("b1", "authors", ("a1", "a2"))],
        django=[lambda w: w.b1.authors.remove(w.a2)],
        sqla=[lambda w: w.b1.authors.remove(w.a2)],
    ),
    Scenario(
        "remove-reverse",
        setup=[("b1", "authors", ("a1",)), ("b2", "authors", ("a1",))],
        django=[lambda w: w.a1.books.remove(w.b2)],
        sqla=[lambda w: w.a1.books.remove(w.b2)],
    ),
    Scenario(
        "discard-from-set",
        setup=[("art1", "topics", ("t1", "t2"))],
        django=[lambda w: w.art1.topics.remove(w.t1)],
        sqla=[lambda w: w.art1.topics.discard(w.t1)],
    ),
    Scenario(
        "set-forward",
        setup=[("b1", "authors", ("a1", "a2"))],
        django=[lambda w: w.b1.authors.set([w.a1, w.a3])],
        sqla=[lambda w: setattr(w.b1, "authors", [w.a1, w.a3])],
    ),
    Scenario(
        "set-same-members-sends-nothing",
        setup=[("b1", "authors", ("a1", "a2"))],
        django=[lambda w: w.b1.authors.set([w.a2, w.a1])],
        sqla=[lambda w: setattr(w.b1, "authors", [w.a2, w.a1])],
    ),
    Scenario(
        "set-empty-removes",
        setup=[("b1", "authors", ("a1", "a2"))],
        django=[lambda w: w.b1.authors.set([])],
        sqla=[lambda w: setattr(w.b1, "authors", [])],
    ),
    Scenario(
        "set-reverse",
        setup=[("b1", "authors", ("a1",))],
        django=[lambda w: w.a1.books.set([w.b2])],
        sqla=[lambda w: setattr(w.a1, "books", [w.b2])],
    ),
    Scenario(
        "set-of-set-collection",
        setup=[("art1", "topics", ("t1", "t2"))],
        django=[lambda w: w.art1.topics.set([w.t2, w.t3])],
        sqla=[lambda w: setattr(w.art1, "topics", {w.t2, w.t3})],
    ),
    Scenario(
        "clear-forward",
        setup=[("b1", "authors", ("a1", "a2"))],
        django=[lambda w: w.b1.authors.clear()],
        sqla=[lambda w: w.b1.authors.clear()],
    ),
    Scenario(
        "clear-reverse",
        setup=[("b1", "authors", ("a1",)), ("b2", "authors", ("a1", "a2"))],
        django=[lambda w: w.a1.books.clear()],
        sqla=[lambda w: w.a1.books.clear()],
    ),
    Scenario(
        "clear-set-collection",
        setup=[("art1", "topics", ("t1", "t3"))],
        django=[lambda w: w.art1.topics.clear()],
        sqla=[lambda w: w.art1.topics.clear()],
    ),
    Scenario(
        "clear-then-add-back",
        setup=[("b1", "authors", ("a1", "a2"))],
        django=[lambda w: (w.b1.authors.clear(), w.b1.authors.add(w.a1, w.a3))],
        sqla=[lambda w: (w.b1.authors.clear(), w.b1.authors.extend([w.a1, w.a3]))],
    ),
    Scenario(
        "clear-then-add-everything-back",
        setup=[("b1", "authors", ("a1", "a2"))],
        django=[lambda w: (w.b1.authors.clear(), w.b1.authors.add(w.a2, w.a1))],
        sqla=[lambda w: (w.b1.authors.clear(), w.b1.authors.extend([w.a2, w.a1]))],
    ),
    Scenario(
        "remove-then-clear",
        setup=[("b1", "authors", ("a1", "a2", "a3"))],
        django=[lambda w: (w.b1.authors.remove(w.a1), w.b1.authors.clear())],
        sqla=[lambda w: (w.b1.authors.remove(w.a1), w.b1.authors.clear())],
    ),
    Scenario(
        "set-with-clear",
        setup=[("b1", "authors", ("a1", "a2"))],
        django=[lambda w: w.b1.authors.set([w.a1, w.a3], clear=True)],
        sqla=[lambda w: (w.b1.authors.clear(), w.b1.authors.extend([w.a1, w.a3]))],
    ),
    Scenario(
        "clear-then-other-side-adds-back",
        setup=[("b1", "authors", ("a1", "a2"))],
        django=[lambda w: (w.b1.authors.clear(), w.a1.books.add(w.b1))],
        sqla=[lambda w: (w.b1.authors.clear(), w.a1.books.append(w.b1))],
    ),
    Scenario(
        "several-instances-keep-call-order",
        setup=[("b2", "authors", ("a3",))],
        django=[
            lambda w: (
                w.b2.authors.add(w.a1),
                w.a2.books.add(w.b1),
                w.b2.authors.remove(w.a3),
            )
        ],
        sqla=[
            lambda w: (
                w.b2.authors.append(w.a1),
                w.a2.books.append(w.b1),
                w.b2.authors.remove(w.a3),
            )
        ],
    ),
    Scenario(
        "self-referential-both-sides",
        django=[
            lambda w: w.p1.following.add(w.p2, w.p3),
            lambda w: w.p3.followers.add(w.p2),
            lambda w: w.p3.followers.remove(w.p1),
            lambda w: w.p2.following.clear(),
        ],
        sqla=[
            lambda w: w.p1.following.extend([w.p2, w.p3]),
            lambda w: w.p3.followers.append(w.p2),
            lambda w: w.p3.followers.remove(w.p1),
            lambda w: w.p2.following.clear(),
        ],
    ),
    Scenario(
        "association-class",
        django=[
            lambda w: w.g1.members.add(w.m1, w.m2),
            lambda w: w.g1.members.remove(w.m1),
            lambda w: w.m2.groups.clear(),
        ],
        sqla=[
            lambda w: w.g1.members.extend([w.m1, w.m2]),
            lambda w: w.g1.members.remove(w.m1),
            lambda w: w.m2.groups.clear(),
        ],
    ),
    Scenario(
        "delete-owner-sends-no-m2m",
        setup=[("b1", "authors", ("a1", "a2"))],
        django=[lambda w: w.b1.delete()],
        sqla=[lambda w: w.delete(w.b1)],
    ),
    Scenario(
        "add-to-new-object",
        django=[lambda w: w.models.Book.objects.create(id=3).authors.add(w.a2)],
        sqla=[lambda w: w.session.add(w.models.Book(id=3, authors=[w.a2]))],
    ),
]
