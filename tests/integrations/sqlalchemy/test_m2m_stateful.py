"""Random sequences of many-to-many operations, run on Django and SQLAlchemy in lockstep.

Each operation is one Django manager call and the SQLAlchemy collection operation a user would
write for it, followed by a flush; after each one the two ``m2m_changed`` logs must agree (pre
entries, then post entries, as in :func:`tests.oracle.m2m.harness.by_phase`). Operations whose
outcome differs on purpose (adding only linked objects, removing unlinked ones, clearing an empty
collection; see ``docs/sqlalchemy-m2m.md``) are not generated.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from tests.oracle.m2m.harness import Recorder, build_world, by_phase, django_world, fresh_models
from tidings.models import m2m_changed

# (owner names, relationship, target names, forward relationship or None when it is forward)
RELATIONS = [
    (("b1", "b2"), "authors", ("a1", "a2", "a3"), None),
    (("a1", "a2", "a3"), "books", ("b1", "b2"), "authors"),
    (("art1",), "topics", ("t1", "t2", "t3"), None),
    (("t1", "t2", "t3"), "articles", ("art1",), "topics"),
    (("p1", "p2", "p3"), "following", ("p1", "p2", "p3"), None),
    (("p1", "p2", "p3"), "followers", ("p1", "p2", "p3"), "following"),
]

relation_and_owner = st.sampled_from(RELATIONS).flatmap(
    lambda r: st.tuples(st.just(r), st.sampled_from(r[0]))
)


class M2MMachine(RuleBasedStateMachine):
    """Both ORMs over the same objects; the model is the set of links per forward relation."""

    models: SimpleNamespace

    def __init__(self) -> None:
        super().__init__()
        from django.db.models.signals import m2m_changed as django_m2m_changed

        self.django = django_world()
        self.engine = create_engine("sqlite://", poolclass=StaticPool)
        self.models.Base.metadata.create_all(self.engine)
        self.session = Session(self.engine)
        self.sqla = build_world(self.models, self.session)
        self.session.flush()
        self.links: set[tuple[str, str, str]] = set()
        self.theirs = Recorder(django_m2m_changed)
        self.ours = Recorder(m2m_changed)

    def teardown(self) -> None:
        """Disconnect and drop the SQLAlchemy database."""
        self.theirs.close()
        self.ours.close()
        self.session.close()
        self.engine.dispose()

    def _linked(self, relation: Any, owner: str) -> set[str]:
        _, name, _, forward = relation
        if forward is None:
            return {t for rel, o, t in self.links if rel == name and o == owner}
        return {o for rel, o, t in self.links if rel == forward and t == owner}

    def _set_links(self, relation: Any, owner: str, targets: set[str]) -> None:
        _, name, _, forward = relation
        if forward is None:
            self.links = {link for link in self.links if link[:2] != (name, owner)}
            self.links |= {(name, owner, t) for t in targets}
        else:
            self.links = {link for link in self.links if (link[0], link[2]) != (forward, owner)}
            self.links |= {(forward, t, owner) for t in targets}

    def _step(self, django_call: Any, sqla_call: Any) -> None:
        self.theirs.next_step()
        self.ours.next_step()
        django_call(self.django)
        sqla_call(self.sqla)
        self.session.flush()
        assert by_phase(self.ours.steps[-1:]) == by_phase(self.theirs.steps[-1:])

    @rule(where=relation_and_owner, data=st.data())
    def add(self, where: Any, data: st.DataObject) -> None:
        """add(*targets) with at least one target not linked yet."""
        relation, owner = where
        linked = self._linked(relation, owner)
        new = [t for t in relation[2] if t not in linked]
        if not new:
            return
        targets = data.draw(st.lists(st.sampled_from(relation[2]), min_size=1, unique=True))
        if not set(targets) - linked:
            targets = [*targets, new[0]]
        name = relation[1]

        def on_sqla(w: Any) -> None:
            collection = getattr(getattr(w, owner), name)
            for target in targets:
                if target not in linked:
                    if isinstance(collection, set):
                        collection.add(getattr(w, target))
                    else:
                        collection.append(getattr(w, target))

        self._step(
            lambda w: getattr(getattr(w, owner), name).add(*(getattr(w, t) for t in targets)),
            on_sqla,
        )
        self._set_links(relation, owner, linked | set(targets))

    @rule(where=relation_and_owner, data=st.data())
    def remove(self, where: Any, data: st.DataObject) -> None:
        """remove(*targets) of linked targets only."""
        relation, owner = where
        linked = sorted(self._linked(relation, owner))
        if not linked:
            return
        targets = data.draw(st.lists(st.sampled_from(linked), min_size=1, unique=True))
        name = relation[1]

        def on_sqla(w: Any) -> None:
            collection = getattr(getattr(w, owner), name)
            for target in targets:
                collection.remove(getattr(w, target))

        self._step(
            lambda w: getattr(getattr(w, owner), name).remove(*(getattr(w, t) for t in targets)),
            on_sqla,
        )
        self._set_links(relation, owner, set(linked) - set(targets))

    @rule(where=relation_and_owner, data=st.data())
    def assign(self, where: Any, data: st.DataObject) -> None:
        """set(targets) in Django, assignment in SQLAlchemy."""
        relation, owner = where
        targets = data.draw(st.lists(st.sampled_from(relation[2]), unique=True))
        name = relation[1]

        def on_sqla(w: Any) -> None:
            objs = [getattr(w, t) for t in targets]
            current = getattr(getattr(w, owner), name)
            setattr(getattr(w, owner), name, set(objs) if isinstance(current, set) else objs)

        self._step(
            lambda w: getattr(getattr(w, owner), name).set([getattr(w, t) for t in targets]),
            on_sqla,
        )
        self._set_links(relation, owner, set(targets))

    @precondition(lambda self: bool(self.links))
    @rule(where=relation_and_owner)
    def clear(self, where: Any) -> None:
        """clear() of a non-empty collection."""
        relation, owner = where
        if not self._linked(relation, owner):
            return
        name = relation[1]
        self._step(
            lambda w: getattr(getattr(w, owner), name).clear(),
            lambda w: getattr(getattr(w, owner), name).clear(),
        )
        self._set_links(relation, owner, set())

    @rule(where=relation_and_owner, data=st.data())
    def clear_and_add(self, where: Any, data: st.DataObject) -> None:
        """clear() then add(*targets) on a non-empty collection, in one flush."""
        relation, owner = where
        if not self._linked(relation, owner):
            return
        targets = data.draw(st.lists(st.sampled_from(relation[2]), min_size=1, unique=True))
        name = relation[1]

        def on_django(w: Any) -> None:
            collection = getattr(getattr(w, owner), name)
            collection.clear()
            collection.add(*(getattr(w, t) for t in targets))

        def on_sqla(w: Any) -> None:
            collection = getattr(getattr(w, owner), name)
            collection.clear()
            for target in targets:
                if isinstance(collection, set):
                    collection.add(getattr(w, target))
                else:
                    collection.append(getattr(w, target))

        self._step(on_django, on_sqla)
        self._set_links(relation, owner, set(targets))


def test_random_operation_sequences_match_django() -> None:
    """Any sequence of add/remove/set/clear from either side signals as Django does."""
    M2MMachine.models = fresh_models()
    M2MMachine.TestCase.settings = settings(
        max_examples=int(os.environ.get("M2M_EXAMPLES", "40")),
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    M2MMachine.TestCase().runTest()


# -- Several operations per flush: the signals must describe exactly what the flush wrote --------

#: Per pair of relationships: (owner, collection, targets) for each way to change the links.
PAIRS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "books": [(b, "authors", ("a1", "a2", "a3")) for b in ("b1", "b2")]
    + [(a, "books", ("b1", "b2")) for a in ("a1", "a2", "a3")],
    "persons": [
        (p, key, ("p1", "p2", "p3"))
        for p in ("p1", "p2", "p3")
        for key in ("following", "followers")
    ],
}
operation = st.tuples(
    st.sampled_from(["append", "remove", "clear", "assign"]),
    st.integers(0, 11),
    st.lists(st.integers(0, 2), max_size=3),
)


def _apply(world: Any, pair: str, op: tuple[str, int, list[int]]) -> None:
    kind, which, picks = op
    owner_name, key, others = PAIRS[pair][which % len(PAIRS[pair])]
    owner = getattr(world, owner_name)
    collection = getattr(owner, key)
    chosen = [
        getattr(world, name) for name in dict.fromkeys(others[i % len(others)] for i in picks)
    ]
    if kind == "clear":
        collection.clear()
    elif kind == "assign":
        setattr(owner, key, chosen)
    else:
        for target in chosen:
            if kind == "append" and target not in collection:
                collection.append(target)
            elif kind == "remove" and target in collection:
                collection.remove(target)


def _replay(links: set[tuple[int, int]], sends: list[dict[str, Any]]) -> set[tuple[int, int]]:
    """Apply the post_* signals to ``links``; no signal may be a no-op."""
    links = set(links)
    for send in sends:
        action, instance, reverse = send["action"], send["instance"], send["reverse"]
        if not action.startswith("post_"):
            continue
        if action == "post_clear":
            mine = {link for link in links if link[1 if reverse else 0] == instance.id}
            assert mine, f"clear of {instance.id} removed nothing"
            links -= mine
            continue
        pairs = {(pk, instance.id) if reverse else (instance.id, pk) for pk in send["pk_set"]}
        if action == "post_add":
            assert not pairs & links, f"add of linked {pairs & links}"
            links |= pairs
        else:
            assert pairs <= links, f"remove of unlinked {pairs - links}"
            links -= pairs
    return links


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_signals_of_one_flush_replay_to_the_written_rows(pair: str) -> None:
    """Replaying one flush's post_* signals on the rows before gives the rows after, no no-ops."""
    models = fresh_models()
    table = models.book_authors if pair == "books" else models.person_following
    owners = (1, 2) if pair == "books" else (1, 2, 3)

    @settings(
        max_examples=int(os.environ.get("M2M_EXAMPLES", "100")),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        initial=st.sets(st.tuples(st.sampled_from(owners), st.integers(1, 3))),
        operations=st.lists(operation, min_size=1, max_size=8),
    )
    def check(initial: set[tuple[int, int]], operations: list[Any]) -> None:
        engine = create_engine("sqlite://", poolclass=StaticPool)
        models.Base.metadata.create_all(engine)
        sends: list[dict[str, Any]] = []

        def receiver(sender: Any, **kwargs: Any) -> None:
            sends.append(kwargs)

        with Session(engine) as session:
            world = build_world(models, session)
            for left, right in sorted(initial):
                if pair == "books":
                    world.__dict__[f"b{left}"].authors.append(world.__dict__[f"a{right}"])
                else:
                    world.__dict__[f"p{left}"].following.append(world.__dict__[f"p{right}"])
            session.flush()
            m2m_changed.connect(receiver, sender=table)
            try:
                for op in operations:
                    _apply(world, pair, op)
                session.flush()
            finally:
                m2m_changed.disconnect(receiver, sender=table)
            after = {(left, right) for left, right in session.connection().execute(select(table))}
        engine.dispose()
        assert _replay(initial, sends) == after
        pres = [s["action"][4:] for s in sends if s["action"].startswith("pre_")]
        posts = [s["action"][5:] for s in sends if s["action"].startswith("post_")]
        assert pres == posts

    check()
