"""``m2m_changed`` from SQLAlchemy collections, compared with Django's ORM as the oracle."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.oracle.m2m.harness import Scenario, by_phase, fresh_models, run_django, run_sqla
from tests.oracle.m2m.scenarios import SCENARIOS


@pytest.fixture
def models() -> SimpleNamespace:
    """The SQLAlchemy twins under a fresh, instrumented base."""
    return fresh_models()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_same_signals_as_django(scenario: Scenario, models: SimpleNamespace) -> None:
    """Each scenario sends the same m2m_changed sequence as Django, step by step."""
    expected = by_phase(run_django(scenario))
    assert by_phase(run_sqla(scenario, models, "sqlite://")) == expected


def test_scenarios_are_not_vacuous() -> None:
    """Django sends something in all but the scenarios that exist to show silence."""
    silent = {s.name for s in SCENARIOS if not any(run_django(s))}
    assert silent == {"set-same-members-sends-nothing", "delete-owner-sends-no-m2m"}


def _only(*steps: Any) -> Any:
    return Scenario("ad hoc", django=[], sqla=list(steps))


def test_raw_order_is_all_pre_then_all_post(models: SimpleNamespace) -> None:
    """An assignment sends pre_remove, pre_add, then post_remove, post_add (Django interleaves)."""
    scenario = Scenario(
        "set",
        setup=[("b1", "authors", ("a1", "a2"))],
        django=[lambda w: w.b1.authors.set([w.a1, w.a3])],
        sqla=[lambda w: setattr(w.b1, "authors", [w.a1, w.a3])],
    )
    [ours] = run_sqla(scenario, models, "sqlite://")
    [theirs] = run_django(scenario)
    assert [entry[0] for entry in ours] == ["pre_remove", "pre_add", "post_remove", "post_add"]
    assert [entry[0] for entry in theirs] == ["pre_remove", "post_remove", "pre_add", "post_add"]
