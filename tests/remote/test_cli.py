"""``tidings worker`` with a transport and ``tidings transport``, in this process (in memory)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.remote import remote_app
from tidings.outbox import Outbox
from tidings.outbox._cli import main
from tidings.transport import InMemoryTransport

TARGET = "tests.remote.remote_app:outbox"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The worker app's environment: a new SQLite file, a fresh in-memory transport."""
    values = {
        "TIDINGS_TEST_OUTBOX_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "TIDINGS_TEST_CALLS": str(tmp_path / "calls.txt"),
        "TIDINGS_TEST_REDIS_URL": "memory://",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(remote_app, "_memory", InMemoryTransport())
    return values


@pytest.fixture
def box(env: dict[str, str]) -> Iterator[Outbox]:
    """The app's outbox, tables created, installed."""
    outbox = remote_app.outbox()
    outbox.create_all()
    with outbox.installed():
        yield outbox
    outbox.engine.dispose()


def cli(*args: str) -> Result:
    """Run the command line in this process."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def calls(env: dict[str, str], receiver: str) -> list[list[str]]:
    """The recorded calls of ``receiver``: ``[event id, receiver, attempt, pid]`` each."""
    path = Path(env["TIDINGS_TEST_CALLS"])
    lines = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [line for line in lines if line[1] == receiver]


@pytest.mark.parametrize("pool", ["threads", "asyncio"])
def test_worker_once_publishes_and_runs_queue_and_broadcast_receivers(
    box: Outbox, env: dict[str, str], pool: str
) -> None:
    """``worker --once`` relays the rows to the transport, then runs both kinds of receivers."""
    for n in range(4):
        remote_app.joined.send(None, user_id=n * 2)
    done = cli("worker", TARGET, "--once", "--node", "web-1", "--pool", pool)
    assert done.exit_code == 0, done.output
    assert len(calls(env, "accounts.send_welcome")) == 4
    assert len(calls(env, "accounts.refresh_cache")) == 4
    assert len(calls(env, "accounts.always_fails")) == 4
    assert "consuming accounts.always_fails (queue), accounts.refresh_cache@web-1 (broadcast)" in (
        done.output
    )
    assert box.status().pending == 0


def test_worker_refuses_an_unknown_pool(box: Outbox, env: dict[str, str]) -> None:
    """``--pool`` takes threads or asyncio only, and says so."""
    refused = CliRunner().invoke(main, ["worker", TARGET, "--once", "--pool", "processes"])
    assert refused.exit_code == 2
    assert "'processes' is not one of 'threads', 'asyncio'" in refused.output


def test_worker_picks_receivers_and_groups(box: Outbox, env: dict[str, str]) -> None:
    """``--receiver`` and ``--group`` limit what the worker consumes; unknown names are refused."""
    remote_app.joined.send(None, user_id=2)
    done = cli("worker", TARGET, "--once", "--receiver", "accounts.send_welcome", "-q")
    assert done.exit_code == 0, done.output
    assert len(calls(env, "accounts.send_welcome")) == 1
    assert calls(env, "accounts.always_fails") == []
    wrong = CliRunner().invoke(main, ["worker", TARGET, "--once", "--group", "nope"])
    assert wrong.exit_code == 2
    assert "no queue or broadcast receiver or group 'nope' here" in wrong.output


def test_transport_status_lists_each_group(box: Outbox, env: dict[str, str]) -> None:
    """``transport status`` prints one line per stream and group with its counts."""
    for n in range(3):
        remote_app.joined.send(None, user_id=n * 2)
    assert cli("worker", TARGET, "--once", "-q", "--node", "web-1").exit_code == 0
    shown = cli("transport", "--app", TARGET, "status")
    assert shown.exit_code == 0, shown.output
    lines = [line.split() for line in shown.output.splitlines()]
    assert lines[0] == ["STREAM", "GROUP", "LENGTH", "PENDING", "LAG", "CONSUMERS", "DEAD"]
    assert ["accounts.refresh_cache", "accounts.refresh_cache@web-1", "3", "0", "0", "1", "0"] in (
        lines
    )
    as_json = [
        json.loads(line)
        for line in cli("transport", "--app", TARGET, "status", "--json").output.splitlines()
    ]
    assert {state["group"] for state in as_json if state["group"].startswith("accounts.")} == {
        "accounts.always_fails",
        "accounts.refresh_cache@web-1",
        "accounts.send_welcome",
    }


def drain(times: int, *args: str) -> None:
    """Run ``worker --once`` ``times`` times, waiting out the claim idle time in between."""
    for _ in range(times):
        done = cli("worker", TARGET, "--once", "-q", "--claim-idle", "0.2", *args)
        assert done.exit_code == 0, done.output
        time.sleep(0.25)


def test_a_poison_event_is_listed_dead_and_retry_runs_it_again(
    box: Outbox, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``max_attempts`` the event is in ``transport dead``; ``retry --all`` re-delivers."""
    remote_app.joined.send(None, user_id=1)
    drain(3, "--receiver", "accounts.always_fails")
    assert [line[2] for line in calls(env, "accounts.always_fails")] == ["1", "2"]
    listed = cli("transport", "--app", TARGET, "dead", "--json")
    (letter,) = [json.loads(line) for line in listed.output.splitlines()]
    assert letter["group"] == "accounts.always_fails"
    assert letter["deliveries"] == 2
    assert letter["reason"].startswith("RuntimeError: cannot welcome user 1")
    table = cli("transport", "--app", TARGET, "dead").output
    assert "RuntimeError: cannot welcome user 1" in table
    monkeypatch.setenv("TIDINGS_TEST_HEALED", "1")
    put_back = cli("transport", "--app", TARGET, "retry", "--all")
    assert put_back.output.strip() == "1 dead letter put back"
    drain(1, "--receiver", "accounts.always_fails")
    assert [line[2] for line in calls(env, "accounts.always_fails")] == ["1", "2", "1"]
    assert cli("transport", "--app", TARGET, "dead", "--json").output == ""


def test_retry_by_id_needs_the_group(box: Outbox, env: dict[str, str]) -> None:
    """``retry ID`` needs ``--group``; an id that is no dead letter of the group is reported."""
    missing_group = CliRunner().invoke(main, ["transport", "--app", TARGET, "retry", "1-0"])
    assert missing_group.exit_code == 2
    assert "give --group" in missing_group.output
    retry = ["transport", "--app", TARGET, "retry", "--group", "accounts.send_welcome", "9-9"]
    assert cli("worker", TARGET, "--once", "-q").exit_code == 0
    wrong = CliRunner().invoke(main, retry)
    assert wrong.exit_code == 1
    assert "1 of the ids are not dead letters of 'accounts.send_welcome'" in wrong.output


def test_an_outbox_without_transport_is_refused_by_transport_commands(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tidings transport`` on an outbox without a transport says how to configure one."""
    monkeypatch.setattr(remote_app, "transport", lambda: None)
    done = CliRunner().invoke(main, ["transport", "--app", TARGET, "status"])
    assert done.exit_code == 1
    assert "has no transport: configure one with Outbox(..., transport=...)" in done.output
