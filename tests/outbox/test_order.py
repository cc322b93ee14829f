"""Order: an ``ordered=`` receiver runs the deliveries of one key one at a time, oldest first,
under several workers and retries; other receivers are promised no order."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

import tidings.models as tm
from tests.outbox import shop
from tests.outbox.steps import LOG, step, stepped
from tidings import TidingsValueError
from tidings.outbox import Outbox, Relay

KEYS = ["a", "b", "c", "d", "e"]
STEPS = 24


@pytest.fixture
def box(outbox: Outbox) -> Iterator[Outbox]:
    """The module's outbox, installed; the step receiver disconnected afterwards."""
    with outbox.installed():
        yield outbox
    stepped.receivers = []


def send_steps(box: Outbox) -> None:
    """Send every key's steps, interleaved, a few per transaction."""
    with Session(box.engine) as session:
        for seq in range(STEPS):
            with session.begin():
                for key in KEYS:
                    stepped.send(None, key=key, seq=seq)


def run_relays(box: Outbox, workers: int, claim: str) -> None:
    """Run ``workers`` relay threads until nothing is pending (at most 90 s)."""
    relays = [
        Relay(box, batch_size=4, poll_interval=0.01, claim=claim).start() for _ in range(workers)
    ]
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = box.status()
            if status.pending == 0 and status.in_flight == 0 and len(LOG.done) == len(KEYS) * STEPS:
                break
            time.sleep(0.05)
    finally:
        for relay in relays:
            relay.close()


@pytest.mark.parametrize(
    ("workers", "claim"),
    [
        pytest.param(1, "lease", id="1-lease"),
        pytest.param(3, "lease", id="3-lease"),
        pytest.param(3, "lock", id="3-lock"),
    ],
)
def test_each_keys_steps_run_one_at_a_time_in_order_despite_workers_and_retries(
    box: Outbox, engine: Engine, workers: int, claim: str
) -> None:
    """Five keys, 24 steps each, a third of the attempts failing, three relays on PostgreSQL:
    every key's steps succeed in send order, never two of one key at once."""
    if engine.dialect.name == "sqlite" and (workers > 1 or claim == "lock"):
        pytest.skip("SQLite runs one relay per database, leasing its rows")
    stepped.connect(
        step, delivery="durable", ordered="key", max_attempts=100, backoff=0, backoff_max=0
    )
    LOG.reset(fail_rate=0.33)
    send_steps(box)
    run_relays(box, workers, claim)
    per_key = {key: [seq for k, seq in LOG.done if k == key] for key in KEYS}
    print(
        f"\nordered, {workers} worker(s), claim={claim}: {len(LOG.done)} steps done, "
        f"{LOG.failures} failed attempts retried, overlaps {LOG.overlaps}"
    )
    assert per_key == {key: list(range(STEPS)) for key in KEYS}
    assert LOG.overlaps == 0
    assert LOG.failures > 0


@pytest.mark.parametrize("claim", ["lease", "lock"])
def test_a_draining_relay_runs_every_step_of_one_key(
    box: Outbox, engine: Engine, claim: str
) -> None:
    """One key: each claim finds one delivery due (the next step waits for the one before),
    and the claim that records a step done finds the next one, so ``run(once=True)`` drains
    them all, in order."""
    if engine.dialect.name == "sqlite" and claim == "lock":
        pytest.skip("claim='lock' is PostgreSQL's")
    stepped.connect(step, delivery="durable", ordered="key")
    LOG.reset(fail_rate=0.0)
    for seq in range(5):
        stepped.send(None, key="a", seq=seq)
    Relay(box, claim=claim).run(once=True)
    assert LOG.done == [("a", seq) for seq in range(5)]
    assert box.status().pending == 0


def test_a_dead_step_unblocks_its_key(box: Outbox) -> None:
    """A delivery that reaches the dead letters stops holding back the later ones of its key."""
    stepped.connect(step, delivery="durable", ordered="key", max_attempts=1)
    LOG.reset(fail_rate=0.0)
    stepped.send(None, key="a", seq=0)
    stepped.send(None, key="a", seq=1)
    table = box.tables.pending
    with box.engine.begin() as conn:
        first = conn.execute(select(table.c.id).order_by(table.c.id)).scalars().first()
        conn.execute(table.update().where(table.c.id == first).values(payload="[broken"))
    Relay(box).run(once=True)
    assert LOG.done == [("a", 1)]
    assert [letter.receiver for letter in box.dead_letters()] == ["tests.outbox.steps.step"]


def test_ordered_true_orders_a_model_signal_per_instance(box: Outbox, engine: Engine) -> None:
    """ordered=True keys post_save deliveries by the saved instance."""
    shop.Base.metadata.create_all(engine)
    try:
        tm.post_save.connect(shop.welcome, sender=shop.Customer, delivery="durable", ordered=True)
        with Session(engine) as session, session.begin():
            session.add_all([shop.Customer(id=1, email="a"), shop.Customer(id=2, email="b")])
        table = box.tables.pending
        with engine.connect() as conn:
            keys = conn.execute(select(table.c.order_key).order_by(table.c.id)).scalars().all()
        assert keys == ["tests.outbox.shop:Customer:[1]", "tests.outbox.shop:Customer:[2]"]
    finally:
        tm.post_save.receivers = []
        shop.Base.metadata.drop_all(engine)


def test_an_ordered_send_without_its_key_argument_fails(box: Outbox) -> None:
    """ordered='key' and a send without ``key``: an error naming the signal and receiver."""
    stepped.connect(step, delivery="durable", ordered="key")
    with pytest.raises(TidingsValueError, match=r"tests\.order\.stepped.*'key'.*ordered="):
        stepped.send(None, seq=1)
    assert box.status().pending == 0


@pytest.mark.parametrize("ordered", ["", 3, None])
def test_ordered_takes_a_bool_or_an_argument_name(box: Outbox, ordered: object) -> None:
    """Anything else is refused at connect."""
    with pytest.raises(TidingsValueError, match="ordered= takes True, False or the name"):
        stepped.connect(step, delivery="durable", ordered=ordered)
