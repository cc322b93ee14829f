"""Plan the ``m2m_changed`` sends of one flush from what was recorded: pure, no SQLAlchemy.

The input is one :class:`Collection` per changed collection (one object, one relationship
side): the operations recorded on it since the last flush and its history at this flush. The
output is the list of :class:`Change` (one pre/post pair each) in the order the operations
were made, such that:

* replayed in that order on the links before the flush, the changes give exactly the links
  after it;
* none is a no-op (an object appended and removed again, or appended while already there,
  is in no change);
* each link is reported once, from the collection its last operation was made on.

A link is ``(forward, declaring object, other object)``, keyed on the declaring side of the
pair so both sides of a relationship agree on it. Objects and sides are compared by
identity, never by ``==``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = ["ADD", "CLEAR", "REMOVE", "Change", "Collection", "PlanSide", "plan"]

ADD, REMOVE, CLEAR = "add", "remove", "clear"


class PlanSide(Protocol):
    """What planning needs of one side of a relationship."""

    @property
    def prop(self) -> object:
        """This side's relationship."""

    @property
    def forward(self) -> object:
        """The declaring side's relationship (``prop`` itself on the declaring side)."""


S = TypeVar("S")
D = TypeVar("D", bound=PlanSide)


@dataclass(eq=False)
class Collection(Generic[S, D]):
    """One collection changed since the last flush: what was recorded, and its history.

    Attributes:
        owner: The object whose collection it is.
        side: The relationship side the collection belongs to.
        first: Sequence number of the first operation recorded on it.
        last: Target -> (sequence number, True for an append) of its last operation.
        first_clear: Sequence number of the first ``clear()`` that removed something.
        cleared: What ``clear()`` removed.
        unchanged: History: the targets linked before the flush and still linked.
        deleted: History: the targets linked before the flush and unlinked.
        added: History: the targets linked by the flush.
    """

    owner: S
    side: D
    first: int
    last: Mapping[S, tuple[int, bool]]
    first_clear: int | None
    cleared: Set[S]
    unchanged: Sequence[S]
    deleted: Sequence[S]
    added: Sequence[S]


@dataclass(eq=False)
class Change(Generic[S, D]):
    """One pre/post pair to send: ``action`` of ``targets`` on ``state``'s collection."""

    order: tuple[int, int]
    state: S
    side: D
    action: str
    targets: list[S]


Link = tuple[object, S, S]
Origin = tuple[int, S, D]


def plan(collections: Sequence[Collection[S, D]]) -> list[Change[S, D]]:
    """Return the changes of ``collections``, in the order they were made.

    Args:
        collections: Every collection changed since the last flush, in the order recorded.

    Returns:
        The changes to send, each with a non-empty effect (``clear`` has no targets).
    """
    # The last operation on a link decides which side it is reported from.
    origin: dict[Link[S], Origin[S, D]] = {}
    for collection in collections:
        side, state = collection.side, collection.owner
        for target, (seq, _) in list(collection.last.items()):
            link = _link(side, state, target)
            if link not in origin or origin[link][0] < seq:
                origin[link] = (seq, state, side)
    changes: list[Change[S, D]] = []
    before: set[Link[S]] = set()
    after: dict[Link[S], bool] = {}
    for collection in collections:
        changes.extend(_changes_of(collection, origin, before, after))
    return _replayed(changes, before, after, origin)


def _replayed(
    changes: list[Change[S, D]],
    before: set[Link[S]],
    after: dict[Link[S], bool],
    origin: dict[Link[S], Origin[S, D]],
) -> list[Change[S, D]]:
    """Make ``changes``, applied in order to the links ``before``, give exactly ``after``.

    Changes computed per collection can be redundant or incomplete when both sides of the same
    links change around a clear() (a second clear() of links already cleared, a link put back
    after a clear()): receivers must never see a no-op nor miss a link that stays. Redundant
    targets are dropped; a link that ends up wrong gets its own change, at its last operation.
    """
    replayed, linked = _simulate(changes, before)
    fixes = []
    for link, present in after.items():
        if (link in linked) is not present and link in origin:
            seq, state, side = origin[link]
            target = link[2] if side.prop is side.forward else link[1]
            action = ADD if present else REMOVE
            fixes.append(Change((seq, 1 if present else 0), state, side, action, [target]))
    if fixes:
        replayed, linked = _simulate(changes + fixes, before)
    merged: list[Change[S, D]] = []
    for change in replayed:
        same = merged and merged[-1].state is change.state and merged[-1].side is change.side
        if same and merged[-1].action == change.action:
            merged[-1].targets.extend(change.targets)
        else:
            merged.append(change)
    return merged


def _simulate(
    changes: list[Change[S, D]], before: set[Link[S]]
) -> tuple[list[Change[S, D]], set[Link[S]]]:
    """Apply ``changes`` in order to ``before``; return those that changed something."""
    linked = set(before)
    kept = []
    for change in sorted(changes, key=lambda change: change.order):
        side, state = change.side, change.state
        if change.action == CLEAR:
            end = 1 if side.prop is side.forward else 2
            gone = {link for link in linked if link[0] is side.forward and link[end] is state}
            if gone:
                linked -= gone
                kept.append(change)
            continue
        adding = change.action == ADD
        targets = [t for t in change.targets if (_link(side, state, t) in linked) is not adding]
        links = {_link(side, state, target) for target in targets}
        if adding:
            linked |= links
        else:
            linked -= links
        if targets:
            kept.append(Change(change.order, state, side, change.action, targets))
    return kept, linked


def _link(side: PlanSide, state: S, target: S) -> Link[S]:
    if side.prop is side.forward:
        return (side.forward, state, target)
    return (side.forward, target, state)


def _changes_of(
    collection: Collection[S, D],
    origin: dict[Link[S], Origin[S, D]],
    before: set[Link[S]],
    after: dict[Link[S], bool],
) -> list[Change[S, D]]:
    """Return the changes made from one collection; note its links before and after."""
    side, state, last = collection.side, collection.owner, collection.last
    for target in collection.unchanged:
        link = _link(side, state, target)
        before.add(link)
        after[link] = True
    for target in collection.deleted:
        link = _link(side, state, target)
        before.add(link)
        after[link] = False
    for target in collection.added:
        after[_link(side, state, target)] = True

    def mine(targets: Sequence[S]) -> list[S]:
        result = []
        for target in targets:
            link = _link(side, state, target)
            found = origin.get(link)
            if found is None:
                # Changed while nobody listened: report it once, from the first side seen.
                found = origin[link] = (-1, state, side)
            if found[1] is state and found[2] is side:
                result.append(target)
        return result

    def made_at(targets: list[S]) -> int:
        # When the last of these changes was made: after any clear() it depends on.
        made = [last[t][0] for t in targets if t in last]
        return max(made, default=collection.first)

    added, removed = mine(collection.added), mine(collection.deleted)
    changes = []
    linked = itertools.chain(collection.deleted, collection.unchanged)
    first_clear = collection.first_clear
    # A clear() is reported when it removed an object that was linked at the last flush.
    if first_clear is not None and any(target in collection.cleared for target in linked):
        changes.append(Change((first_clear, 0), state, side, CLEAR, []))
        # Only what was removed before the clear() is not covered by it.
        removed = [t for t in removed if last.get(t, (first_clear, False))[0] < first_clear]
    if removed:
        changes.append(Change((made_at(removed), 0), state, side, REMOVE, removed))
    if added:
        changes.append(Change((made_at(added), 1), state, side, ADD, added))
    return changes
