"""Random transaction programs: tidings.sqlalchemy, Django's on_commit and the model agree.

The work of a program is registered at random by ``on_commit()``, by a plain signal's receiver
connected with ``delivery="on_commit"`` (an async one too, on the AsyncSession), and by the
``post_save`` of a flushed row.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integrations.sqlalchemy.programs import (
    Block,
    Flavor,
    Flush,
    Send,
    Step,
    expected,
    run_django_programs,
    run_programs,
)

EXAMPLES = int(os.environ.get("ON_COMMIT_EXAMPLES", "24"))

_outcomes = st.sampled_from(["commit", "rollback", "raise"])


def _shapes(leaves: list[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.sampled_from(leaves),
        lambda inner: st.tuples(st.lists(inner, max_size=4), _outcomes),
        max_leaves=14,
    )


def _label(shape: Any, counter: itertools.count[int]) -> Step:
    if shape == "send":
        return Send(f"s{next(counter)}")
    if shape in ("signal", "async", "model"):
        return Send(f"s{next(counter)}", shape)
    if shape == "flush":
        return Flush()
    steps, outcome = shape
    return Block(tuple(_label(step, counter) for step in steps), outcome)


def _program(shape: Any) -> Block:
    program = _label(shape, itertools.count())
    assert isinstance(program, Block)
    return program


def _programs(leaves: list[str]) -> st.SearchStrategy[Block]:
    return st.tuples(st.lists(_shapes(leaves), max_size=6), _outcomes).map(_program)


_SYNC_LEAVES = ["send", "signal", "model", "flush"]
_ASYNC_LEAVES = [*_SYNC_LEAVES, "async"]


def _check(flavor_name: str, programs: list[Block]) -> None:
    wanted = [expected(program) for program in programs]
    assert run_programs(Flavor(flavor_name), programs) == wanted
    assert run_django_programs(programs) == wanted


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs=st.lists(_programs(_SYNC_LEAVES), min_size=1, max_size=3))
def test_random_programs_on_a_sync_session(programs: list[Block]) -> None:
    """Random programs of begin / savepoint / on_commit / send / flush / commit / rollback /
    raise: a sync Session runs exactly the work (callables and on_commit receivers) the model
    and Django's on_commit run, in the same order."""
    _check("sqlite", programs)


@settings(max_examples=EXAMPLES // 4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs=st.lists(_programs(_ASYNC_LEAVES), min_size=1, max_size=3))
def test_random_programs_on_an_async_session(programs: list[Block]) -> None:
    """The same random programs on an AsyncSession, async on_commit receivers among the work,
    agree with the model and with Django."""
    _check("sqlite-async", programs)
