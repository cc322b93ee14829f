"""Random operation sequences give the same results on InMemoryTransport and on Redis.

A Hypothesis state machine applies each operation to both transports and compares what they
return; entry ids differ between the two (they are times), so they are compared through the
pairs learned when the same entry was handed out by both. Claims use ``min_idle=0`` so that
timing plays no part.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.transport.conftest import REDIS_URL, redis_or_skip, unique_prefix
from tidings.transport import InMemoryTransport, Message, NoSuchGroupError

pytestmark = pytest.mark.redis

pytest.importorskip("redis", reason='needs redis-py: pip install "tidings[redis]"')

from tidings.transport.redis import RedisTransport  # noqa: E402

TOPICS = st.sampled_from(["t1", "t2"])
GROUPS = st.sampled_from(["g1", "g2"])
CONSUMERS = st.sampled_from(["c1", "c2"])
MAXLEN = 6


def _seen(messages: list[Message]) -> list[tuple[str, bytes, int]]:
    return [(m.event_id, m.body, m.deliveries) for m in messages]


class SameAsRedis(RuleBasedStateMachine):
    """Memory and Redis transports driven by the same operations."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = InMemoryTransport(maxlen=MAXLEN, approximate=False)
        self.redis = RedisTransport(
            REDIS_URL, prefix=unique_prefix(), maxlen=MAXLEN, approximate=False
        )
        self.ids: dict[str, str] = {}
        self.handed: dict[tuple[str, str], list[tuple[Message, Message]]] = {}
        self.groups: set[tuple[str, str]] = set()
        self.events = 0
        self.added: dict[str, int] = {}

    def teardown(self) -> None:
        self.redis.delete_all()
        self.redis.close()

    def _both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        results = []
        for transport in (self.memory, self.redis):
            try:
                results.append(getattr(transport, method)(*args, **kwargs))
            except NoSuchGroupError:
                results.append(NoSuchGroupError)
        return results[0], results[1]

    def _learn(self, topic: str, group: str, mine: Any, theirs: Any) -> None:
        if isinstance(mine, list):
            for a, b in zip(mine, theirs, strict=True):
                self.ids[a.id] = b.id
                self.handed.setdefault((topic, group), []).append((a, b))

    @rule(topic=TOPICS, body=st.binary(max_size=8))
    def publish(self, topic: str, body: bytes) -> None:
        """Both accept a publish."""
        self.events += 1
        self._both("publish", topic, f"e{self.events}", body)
        self.added[topic] = self.added.get(topic, 0) + 1

    @rule(topic=TOPICS, group=GROUPS, start=st.sampled_from(["first", "new"]))
    def ensure_group(self, topic: str, group: str, start: Any) -> None:
        """Both create (or leave alone) a group."""
        self._both("ensure_group", topic, group, start=start)
        self.groups.add((topic, group))

    @rule(topic=TOPICS, group=GROUPS, consumer=CONSUMERS, count=st.integers(1, 3))
    def consume(self, topic: str, group: str, consumer: str, count: int) -> None:
        """Both hand out the same new entries (or both lack the group)."""
        mine, theirs = self._both("consume", topic, group, consumer, count=count, block=0)
        if mine is NoSuchGroupError or theirs is NoSuchGroupError:
            assert mine is theirs
            return
        assert _seen(mine) == _seen(theirs)
        self._learn(topic, group, mine, theirs)

    @rule(topic=TOPICS, group=GROUPS, consumer=CONSUMERS, count=st.integers(1, 3))
    def claim(self, topic: str, group: str, consumer: str, count: int) -> None:
        """Both claim the same pending entries with the same delivery counts."""
        mine, theirs = self._both("claim", topic, group, consumer, min_idle=0, count=count)
        if mine is NoSuchGroupError or theirs is NoSuchGroupError:
            assert mine is theirs
            return
        assert _seen(mine) == _seen(theirs)
        assert [self.ids.get(m.id) for m in mine] == [m.id for m in theirs]
        self._learn(topic, group, mine, theirs)

    @precondition(lambda self: bool(self.handed))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        """Both acknowledge the same entries and count the same."""
        topic, group = data.draw(st.sampled_from(sorted(self.handed)))
        pairs = data.draw(st.lists(st.sampled_from(self.handed[topic, group]), max_size=3))
        mine = self.memory.ack(topic, group, [a.id for a, _ in pairs])
        theirs = self.redis.ack(topic, group, [b.id for _, b in pairs])
        assert mine == theirs

    @precondition(lambda self: bool(self.handed))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        """Both mark and acknowledge the same entries and count the same."""
        topic, group = data.draw(st.sampled_from(sorted(self.handed)))
        pairs = data.draw(st.lists(st.sampled_from(self.handed[topic, group]), max_size=3))
        mine = self.memory.complete(topic, group, [a for a, _ in pairs])
        theirs = self.redis.complete(topic, group, [b for _, b in pairs])
        assert mine == theirs

    @rule(group=GROUPS, events=st.lists(st.integers(1, 6), max_size=4))
    def done_events(self, group: str, events: list[int]) -> None:
        """Both know the same events as done."""
        names = [f"e{n}" for n in events]
        assert self.memory.done_events(group, names) == self.redis.done_events(group, names)

    @precondition(lambda self: bool(self.handed))
    @rule(data=st.data(), consumer=CONSUMERS)
    def keep_alive(self, data: st.DataObject, consumer: str) -> None:
        """Both keep alive the same entries: those the consumer still holds."""
        topic, group = data.draw(st.sampled_from(sorted(self.handed)))
        pairs = data.draw(st.lists(st.sampled_from(self.handed[topic, group]), max_size=3))
        mine = self.memory.keep_alive(topic, group, consumer, [a.id for a, _ in pairs])
        theirs = self.redis.keep_alive(topic, group, consumer, [b.id for _, b in pairs])
        assert [self.ids[i] for i in mine] == theirs

    @precondition(lambda self: bool(self.handed))
    @rule(data=st.data())
    def dead_letter(self, data: st.DataObject) -> None:
        """Both move an entry to the group's dead letters."""
        topic, group = data.draw(st.sampled_from(sorted(self.handed)))
        a, b = data.draw(st.sampled_from(self.handed[topic, group]))
        self.memory.dead_letter(topic, group, a, "failed")
        self.redis.dead_letter(topic, group, b, "failed")

    @rule(topic=TOPICS, group=GROUPS)
    def retry(self, topic: str, group: str) -> None:
        """Both put the same number of dead letters back."""
        mine, theirs = self._both("retry", topic, group)
        assert mine == theirs
        self.added[topic] = self.added.get(topic, 0) + mine

    @rule(topic=TOPICS, group=GROUPS)
    def remove_group(self, topic: str, group: str) -> None:
        """Both remove the same groups."""
        mine, theirs = self._both("remove_group", topic, group)
        assert mine == theirs
        self.handed.pop((topic, group), None)
        self.groups.discard((topic, group))

    @rule(group=GROUPS, event=st.integers(1, 5))
    def mark_done(self, group: str, event: int) -> None:
        """Both dedupe alike."""
        assert self.memory.mark_done(group, f"e{event}") == self.redis.mark_done(group, f"e{event}")

    @invariant()
    def same_status(self) -> None:
        """Lengths, pending, consumers and dead letters agree; lag agrees until trimming.

        Redis 7.0's lag is entries added minus entries read, so once entries a group never
        read were trimmed it stays that many over (the transport caps it at the length).
        """
        for mine, theirs in zip(self.memory.status(), self.redis.status(), strict=True):
            assert (mine.topic, mine.group, mine.length, mine.pending, mine.dead) == (
                theirs.topic,
                theirs.group,
                theirs.length,
                theirs.pending,
                theirs.dead,
            )
            assert [(c.name, c.pending) for c in mine.consumers] == [
                (c.name, c.pending) for c in theirs.consumers
            ]
            if theirs.lag is not None and self.added.get(mine.topic, 0) <= MAXLEN:
                assert mine.lag == theirs.lag

    @invariant()
    def same_dead_letters(self) -> None:
        """The dead letters hold the same events in the same order."""
        for topic, group in sorted(self.groups):
            mine = [(d.event_id, d.deliveries) for d in self.memory.dead_letters(topic, group)]
            theirs = [(d.event_id, d.deliveries) for d in self.redis.dead_letters(topic, group)]
            assert mine == theirs


def test_memory_behaves_like_redis() -> None:
    """Random sequences of operations give the same results on both transports."""
    redis_or_skip()
    state_machine = SameAsRedis.TestCase
    state_machine.settings = settings(
        max_examples=40,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    state_machine().runTest()
