"""The ``m2m_changed`` planner, on its own: random collection programs against a model of links.

:mod:`tidings.sqlalchemy._m2m_plan` is pure: it takes what was recorded on each changed
collection since the last flush, with the collection's history, and returns the changes to
send. These tests feed it the records and histories that SQLAlchemy and
:mod:`tidings.sqlalchemy._m2m_record` produce for random programs of ``append``, ``remove``,
``clear()`` and assignment on both sides of one relationship (two models, or one model linked
to itself), with flushes in between, and check what the module promises of every flush: the
changes replayed in order give exactly the links after the flush, none is a no-op, and each
link is reported from the collection its last operation was made on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.sqlalchemy._m2m_plan import ADD, CLEAR, REMOVE, Change, Collection, plan


class Obj:
    """A model instance: compared by identity, as SQLAlchemy's instance states are."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


@dataclass(eq=False)
class FakeSide:
    """One side of the relationship: ``prop`` is ``forward`` on the declaring side."""

    prop: object
    forward: object
    name: str


@dataclass(eq=False)
class Track:
    """What the recorder keeps of one collection between flushes."""

    first: int
    last: dict[Obj, tuple[int, bool]] = field(default_factory=dict)
    first_clear: int | None = None
    cleared: set[Obj] = field(default_factory=set)
    replaced_at: int | None = None


class World:
    """Links between ``left`` and ``right`` objects, and the recorder's view of their changes."""

    def __init__(self, *, self_referential: bool) -> None:
        self.forward = FakeSide(prop="forward", forward="forward", name="F")
        self.reverse = FakeSide(prop="reverse", forward="forward", name="R")
        self.left = [Obj(f"p{i}") for i in range(2)]
        self.right = self.left if self_referential else [Obj(f"q{i}") for i in range(2)]
        self.links: set[tuple[Obj, Obj]] = set()  # (left, right): forward's owner first
        self.flushed: set[tuple[Obj, Obj]] = set()
        self.tracks: dict[tuple[Obj, FakeSide], Track] = {}
        self.sequence = itertools.count()
        # (seq, owner, side, target) of every recorded operation since the last flush.
        self.ops: list[tuple[int, Obj, FakeSide, Obj]] = []

    def link(self, side: FakeSide, owner: Obj, target: Obj) -> tuple[Obj, Obj]:
        """Return the (left, right) link between ``owner`` on ``side`` and ``target``."""
        return (owner, target) if side is self.forward else (target, owner)

    def members(self, side: FakeSide, owner: Obj, links: set[tuple[Obj, Obj]]) -> list[Obj]:
        """Return the collection of ``owner`` on ``side`` under ``links``, in a stable order."""
        targets = self.right if side is self.forward else self.left
        return [t for t in targets if self.link(side, owner, t) in links]

    def track(self, side: FakeSide, owner: Obj) -> Track:
        """The recorder's ``_track``: a track numbered at its first operation."""
        key = (owner, side)
        if key not in self.tracks:
            self.tracks[key] = Track(first=next(self.sequence))
        return self.tracks[key]

    def record(self, side: FakeSide, owner: Obj, target: Obj, *, appended: bool, how: str) -> None:
        """The recorder's ``_record`` for one append or remove event made on ``owner``."""
        track = self.track(side, owner)
        seq = next(self.sequence)
        if how == "replace" and not appended and track.replaced_at is not None:
            seq = track.replaced_at
        track.last[target] = (seq, appended)
        if how == "clear":
            if track.first_clear is None:
                track.first_clear = seq
            track.cleared.add(target)
        self.ops.append((seq, owner, side, target))
        link = self.link(side, owner, target)
        if appended:
            self.links.add(link)
        else:
            self.links.discard(link)

    def run(self, side: FakeSide, owner: Obj, kind: str, targets: list[Obj]) -> None:
        """One collection operation, with the events SQLAlchemy fires for it (set semantics)."""
        current = self.members(side, owner, self.links)
        if kind == "append":
            for target in targets:
                if target not in self.members(side, owner, self.links):
                    self.record(side, owner, target, appended=True, how="single")
        elif kind == "remove":
            for target in targets:
                if target in self.members(side, owner, self.links):
                    self.record(side, owner, target, appended=False, how="single")
        elif kind == "clear":
            for target in current:
                self.record(side, owner, target, appended=False, how="clear")
        else:
            # Assignment: the bulk_replace event (its number is drawn before the track's),
            # then appends of the new members, then removes of the old ones.
            replaced_at = next(self.sequence)
            self.track(side, owner).replaced_at = replaced_at
            for target in targets:
                if target not in current:
                    self.record(side, owner, target, appended=True, how="replace")
            for target in current:
                if target not in targets:
                    self.record(side, owner, target, appended=False, how="replace")

    def collections(self, order: list[int]) -> list[Collection[Obj, FakeSide]]:
        """What the recorder's ``take()`` hands the planner, in the order ``order`` gives."""
        keys = list(self.tracks)
        found = []
        for index in order:
            owner, side = keys[index]
            track = self.tracks[owner, side]
            before = self.members(side, owner, self.flushed)
            now = self.members(side, owner, self.links)
            found.append(
                Collection(
                    owner=owner,
                    side=side,
                    first=track.first,
                    last=track.last,
                    first_clear=track.first_clear,
                    cleared=track.cleared,
                    unchanged=[t for t in before if t in now],
                    deleted=[t for t in before if t not in now],
                    added=[t for t in now if t not in before],
                )
            )
        return found

    def flushed_now(self) -> None:
        """The flush wrote the links: the records are dropped."""
        self.flushed = set(self.links)
        self.tracks.clear()
        self.ops.clear()


def replay(world: World, changes: list[Change[Obj, FakeSide]]) -> set[tuple[Obj, Obj]]:
    """Apply ``changes`` in order to the flushed links, failing on any change that does nothing."""
    links = set(world.flushed)
    for change in changes:
        side, owner = change.side, change.state
        if change.action == CLEAR:
            assert change.targets == [], f"clear() names targets: {change}"
            gone = {world.link(side, owner, t) for t in world.members(side, owner, links)}
            assert gone, f"clear() of an empty collection is sent: {change}"
            links -= gone
            continue
        assert change.action in (ADD, REMOVE), f"unknown action {change.action!r}"
        assert change.targets, f"a change without targets is sent: {change}"
        for target in change.targets:
            link = world.link(side, owner, target)
            if change.action == ADD:
                assert link not in links, f"{owner!r} adds {target!r}, already linked"
                links.add(link)
            else:
                assert link in links, f"{owner!r} removes {target!r}, not linked"
                links.discard(link)
    return links


def check_origins(world: World, changes: list[Change[Obj, FakeSide]]) -> None:
    """Each added or removed link is reported from the collection of its last operation."""
    last: dict[tuple[Obj, Obj], tuple[int, Obj, FakeSide]] = {}
    for seq, owner, side, target in world.ops:
        link = world.link(side, owner, target)
        if link not in last or last[link][0] < seq:
            last[link] = (seq, owner, side)
    for change in changes:
        for target in change.targets:
            _, owner, side = last[world.link(change.side, change.state, target)]
            reported = (change.state.name, change.side.name)
            assert (owner, side) == (change.state, change.side), (
                f"{target!r} reported from {reported}, last changed from {owner!r} on {side.name}"
            )


operation = st.tuples(
    st.booleans(),  # on the declaring side
    st.integers(0, 1),  # owner
    st.sampled_from(["append", "remove", "clear", "assign"]),
    st.lists(st.integers(0, 1), max_size=2, unique=True),  # targets
)
program = st.lists(st.one_of(operation, st.just("flush")), max_size=25)


@settings(max_examples=1000, deadline=None)
@given(self_referential=st.booleans(), steps=program, data=st.data())
def test_every_flush_plan_replays_to_the_links_after_it(
    self_referential: bool, steps: list[Any], data: st.DataObject
) -> None:
    """Each flush's changes, replayed in order, give its links, with no no-op and right origins."""
    world = World(self_referential=self_referential)
    for step in [*steps, "flush"]:
        if step != "flush":
            forward, owner, kind, targets = step
            side = world.forward if forward else world.reverse
            owners = world.left if forward else world.right
            pool = world.right if forward else world.left
            world.run(side, owners[owner], kind, [pool[t] for t in targets])
            continue
        order = data.draw(st.permutations(range(len(world.tracks))), label="collection order")
        changes = plan(world.collections(order))
        assert replay(world, changes) == world.links
        check_origins(world, changes)
        world.flushed_now()


def test_a_link_added_and_removed_again_is_not_planned() -> None:
    """An object appended and removed before the flush is in no change."""
    world = World(self_referential=False)
    owner, target = world.left[0], world.right[0]
    world.run(world.forward, owner, "append", [target])
    world.run(world.forward, owner, "remove", [target])
    assert plan(world.collections([0])) == []


def test_clear_then_add_plans_a_clear_before_the_add() -> None:
    """clear() of a flushed link followed by an append is planned as clear, then add."""
    world = World(self_referential=False)
    owner, kept, new = world.left[0], world.right[0], world.right[1]
    world.run(world.forward, owner, "append", [kept])
    world.flushed_now()
    world.run(world.forward, owner, "clear", [])
    world.run(world.forward, owner, "append", [new])
    changes = plan(world.collections([0]))
    assert [(c.action, c.targets) for c in changes] == [(CLEAR, []), (ADD, [new])]
