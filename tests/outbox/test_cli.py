"""The ``tidings`` command line in real processes: the worker and the outbox operations."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, create_engine, select

from tests.outbox.processes import ROOT, TARGET, calls, environment, start_worker, tidings
from tests.outbox.worker_app import refused, welcomed
from tidings import Signal
from tidings.outbox import Outbox
from tidings.outbox._cli import main


@pytest.fixture
def sqlite_box(tmp_path: Path) -> Iterator[Outbox]:
    """The worker app's outbox on a new SQLite file, tables created."""
    engine: Engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    box = Outbox(engine)
    box.create_all()
    yield box
    engine.dispose()


def env_for(box: Outbox, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker of ``box``."""
    return environment(str(box.engine.url), tmp_path / "calls.txt", **extra)


def push(
    box: Outbox, count: int, receivers: tuple[str, ...] = ("accounts.send_welcome",)
) -> list[str]:
    """Store ``count`` sends; return their event ids."""
    signal = refused if "accounts.always_fails" in receivers else welcomed
    return [str(box.write(signal, list(receivers), None, {"user_id": n})) for n in range(count)]


def cli(args: list[str], env: dict[str, str]) -> Result:
    """Run the command line in this process."""
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_worker_once_drains_the_outbox_and_prints_a_progress_line(
    sqlite_box: Outbox, tmp_path: Path
) -> None:
    """``tidings worker TARGET --once`` runs every due delivery, prints its line, exits 0."""
    pushed = push(sqlite_box, 5)
    done = tidings(["worker", TARGET, "--once"], env_for(sqlite_box, tmp_path))
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path / "calls.txt") == pushed
    assert "tidings worker: 5 done" in done.stderr
    assert "pending 0, in flight 0, dead 0" in done.stderr


def test_the_installed_tidings_script_is_the_same_command(
    sqlite_box: Outbox, tmp_path: Path
) -> None:
    """The ``tidings`` script the package installs runs the worker as ``python -m tidings`` does."""
    script = Path(sys.executable).with_name("tidings")
    assert script.is_file(), f"{script} is not installed"
    pushed = push(sqlite_box, 3)
    done = subprocess.run(
        [str(script), "worker", TARGET, "--once"],
        env=env_for(sqlite_box, tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path / "calls.txt") == pushed
    assert "tidings worker: 3 done" in done.stderr


def test_the_worker_populates_the_outboxs_apps_before_it_relays(
    sqlite_box: Outbox, tmp_path: Path
) -> None:
    """``Outbox(apps=[...])``: the worker populates the app registry first, so a receiver an
    app's ready() connects runs, though the target module never imports that app."""
    ids = [
        str(sqlite_box.write(Signal(name="mailing.newsletter_due"), [name], None, {}))
        for name in ("mailing.send_newsletter", "mailing.send_newsletter")
    ]
    env = env_for(sqlite_box, tmp_path)
    done = tidings(["worker", "tests.outbox.apps_worker:outbox", "--once"], env)
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path / "calls.txt", "mailing.send_newsletter") == ids
    assert "2 done" in done.stderr


def test_worker_quiet_prints_nothing(sqlite_box: Outbox, tmp_path: Path) -> None:
    """``--quiet`` turns the progress line off."""
    push(sqlite_box, 1)
    done = cli(["worker", TARGET, "--once", "--quiet"], env_for(sqlite_box, tmp_path))
    assert (done.exit_code, done.stdout, done.stderr) == (0, "", "")
    assert len(calls(tmp_path / "calls.txt")) == 1


def test_the_progress_line_comes_at_a_steady_interval(sqlite_box: Outbox, tmp_path: Path) -> None:
    """With ``--interval``, a worker prints a line every interval while it runs, and on exit."""
    push(sqlite_box, 12)
    env = env_for(sqlite_box, tmp_path, TIDINGS_TEST_SLEEP="0.1")
    done = tidings(["worker", TARGET, "--once", "--interval", "0.3"], env)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("tidings worker:")]
    # 12 receivers of 0.1 s each run for 1.2 s at least: 0.3 s apart, three lines come before
    # the last one, whatever the machine's load (a slower run only prints more).
    assert len(lines) >= 4, done.stderr
    assert "tidings worker: 12 done" in lines[-1]
    assert len(calls(tmp_path / "calls.txt")) == 12
    # The line on exit: the rate of the whole run (12 in 1.2 s or more), not the last batch
    # counted over the moment since the line before.
    rate = float(lines[-1].split("(")[1].split("/s")[0])
    assert 0 < rate <= 10, lines[-1]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_finishes_the_current_delivery_releases_the_rest_and_exits_0(
    sqlite_box: Outbox, tmp_path: Path, stop: signal.Signals
) -> None:
    """A worker told SIGTERM or SIGINT stops after its running receiver; the unrun rows are free."""
    pushed = push(sqlite_box, 20)
    worker = start_worker(["--quiet"], env_for(sqlite_box, tmp_path, TIDINGS_TEST_SLEEP="0.1"))
    try:
        while len(calls(tmp_path / "calls.txt")) < 2:
            assert worker.poll() is None, worker.communicate()
        worker.send_signal(stop)
        assert worker.wait(60) == 0
    finally:
        worker.kill()
        worker.communicate()
    seen = calls(tmp_path / "calls.txt")
    table = sqlite_box.tables.pending
    with sqlite_box.engine.connect() as conn:
        rows = conn.execute(select(table.c.locked_by, table.c.attempts)).all()
    assert len(seen) + len(rows) == len(pushed)
    assert set(rows) == {(None, 0)}
    with sqlite_box.engine.connect() as conn:
        assert conn.execute(select(sqlite_box.tables.relay)).all() == []


def test_outbox_operations_on_the_command_line(sqlite_box: Outbox, tmp_path: Path) -> None:
    """status, dead, retry and purge report and change the outbox."""
    env = env_for(sqlite_box, tmp_path, TIDINGS_OUTBOX=TARGET)
    push(sqlite_box, 2, ("accounts.always_fails",))
    assert cli(["worker", TARGET, "--once", "-q"], env).exit_code == 0
    status = cli(["outbox", "status", "--json"], env)
    assert json.loads(status.stdout) == {
        "pending": 0,
        "in_flight": 0,
        "dead": 2,
        "oldest_pending_age": None,
    }
    listing = cli(["outbox", "dead"], env)
    assert listing.exit_code == 0
    header, *lines = listing.stdout.splitlines()
    assert header.split() == ["ID", "FAILED", "(UTC)", "ATTEMPTS", "SIGNAL", "RECEIVER", "ERROR"]
    assert len(lines) == 2
    assert "accounts.always_fails  RuntimeError: the mail server said no" in lines[0]
    first = lines[0].split()[0]
    retried = cli(["outbox", "retry", first], env)
    assert (retried.exit_code, retried.stdout) == (0, "1 dead letter put back\n")
    assert cli(["outbox", "retry"], env).exit_code == 2
    assert "pending    1" in cli(["outbox", "status"], env).stdout
    again = json.loads(cli(["outbox", "status", "--json"], env).stdout)
    assert (again["pending"], again["dead"]) == (1, 1)
    assert 0 <= again["oldest_pending_age"] < 600
    kept = cli(["outbox", "purge", "--dead", "--older-than", "1h"], env)
    assert kept.stdout == "0 dead letters deleted\n"
    assert cli(["outbox", "purge", "--dead", "--older-than", "soon"], env).exit_code == 2
    purged = cli(["outbox", "purge", "--dead", "--older-than", "0s"], env)
    assert purged.stdout == "1 dead letter deleted\n"
    assert cli(["outbox", "retry", "--all"], env).stdout == "0 dead letters put back\n"


def test_dead_letter_options_on_the_command_line(sqlite_box: Outbox, tmp_path: Path) -> None:
    """``--app`` names the outbox; ``dead`` takes ``--limit``, ``--json`` and ``--traceback``;
    ``retry`` takes several ids."""
    env = env_for(sqlite_box, tmp_path)
    push(sqlite_box, 3, ("accounts.always_fails",))
    assert cli(["worker", TARGET, "--once", "-q"], env).exit_code == 0
    app = ["outbox", "--app", TARGET]
    lines = cli([*app, "dead", "--limit", "2", "--json"], env).stdout.splitlines()
    letters = [json.loads(line) for line in lines]
    assert [letter["receiver"] for letter in letters] == ["accounts.always_fails"] * 2
    assert all(letter["error"] == "RuntimeError: the mail server said no" for letter in letters)
    assert all(
        letter["traceback"].startswith("Traceback (most recent call last)") for letter in letters
    )
    shown = cli([*app, "dead", "--limit", "1", "--traceback"], env).stdout
    assert shown.count("Traceback (most recent call last)") == 1
    assert f"-- {letters[0]['id']} ({letters[0]['event_id']})" in shown
    ids = [str(letter["id"]) for letter in letters]
    assert cli([*app, "retry", *ids], env).stdout == "2 dead letters put back\n"
    status = json.loads(cli([*app, "status", "--json"], env).stdout)
    assert (status["pending"], status["dead"]) == (2, 1)


def test_a_bad_target_is_a_usage_error(tmp_path: Path) -> None:
    """A target that is not module:attribute of an Outbox exits 2 saying why."""
    env = environment("sqlite://", tmp_path / "calls.txt")
    for target, why in [
        ("tests.outbox.worker_app", "expected module:attribute"),
        ("tests.outbox.nothing_here:outbox", "cannot import"),
        ("tests.outbox.worker_app:welcomed", "is Signal, not a tidings.outbox.Outbox"),
    ]:
        done = CliRunner().invoke(main, ["worker", target, "--once"], env=env)
        assert done.exit_code == 2
        assert why in done.stderr


def test_receivers_lists_signals_and_receivers(tmp_path: Path) -> None:
    """``tidings receivers MODULE`` lists imported signals' receivers, as a table or JSON."""
    env = environment("sqlite://", tmp_path / "calls.txt")
    done = cli(["receivers", "tests.outbox.cli_signals", "--json"], env)
    entries = [e for e in json.loads(done.stdout) if e["signal"] == "shop.order_shipped"]
    assert entries[0] == {
        "signal": "shop.order_shipped",
        "signal_path": "tests.outbox.cli_signals.order_shipped",
        "receiver": "tests.outbox.cli_signals.notify",
        "function": "tests.outbox.cli_signals.notify",
        "sender": "(any)",
        "delivery": "immediate",
        "async": False,
    }
    table = cli(["receivers", "tests.outbox.cli_signals"], env).stdout.splitlines()
    assert table[0].split() == ["SIGNAL", "RECEIVER", "SENDER", "DELIVERY"]
    row = ["shop.order_shipped", "tests.outbox.cli_signals.notify", "(any)", "immediate"]
    assert row in [line.split() for line in table]
    assert "shop.order_lost" not in "".join(table)


def test_receivers_all_lists_the_signals_without_receivers_too(tmp_path: Path) -> None:
    """``--all`` adds each signal no receiver is connected to, once, its receiver "(none)"."""
    env = environment("sqlite://", tmp_path / "calls.txt")
    done = cli(["receivers", "tests.outbox.cli_signals", "--all", "--json"], env)
    entries = [e for e in json.loads(done.stdout) if e["signal"] == "shop.order_lost"]
    assert entries == [
        {
            "signal": "shop.order_lost",
            "signal_path": "tests.outbox.cli_signals.order_lost",
            "receiver": None,
            "function": None,
            "sender": None,
            "delivery": None,
            "async": None,
        }
    ]
    table = cli(["receivers", "tests.outbox.cli_signals", "--all"], env).stdout.splitlines()
    rows = [line.split() for line in table]
    assert ["shop.order_lost", "(none)", "-", "-"] in rows
    assert ["shop.order_shipped", "tests.outbox.cli_signals.notify", "(any)", "immediate"] in rows


def test_receivers_names_outbox_receivers_as_the_outbox_does(tmp_path: Path) -> None:
    """A durable or queue receiver is listed by the stable name its stored deliveries and dead
    letters carry (its ``name=``, else its module.qualname); JSON adds the function."""
    env = environment("sqlite://", tmp_path / "calls.txt")
    done = cli(["receivers", "tests.outbox.cli_signals", "--json"], env)
    entries = [e for e in json.loads(done.stdout) if e["signal"] == "shop.order_shipped"]
    module = "tests.outbox.cli_signals"
    assert [(e["receiver"], e["function"], e["delivery"]) for e in entries] == [
        (f"{module}.notify", f"{module}.notify", "immediate"),
        ("shop.billing", f"{module}.bill", "durable"),
        ("warehouse.packing", f"{module}.pack", "queue"),
        (f"{module}.archive", f"{module}.archive", "durable"),
    ]
    table = cli(["receivers", module], env).stdout.splitlines()
    rows = [line.split() for line in table]
    assert ["shop.order_shipped", "shop.billing", "(any)", "durable"] in rows
    assert ["shop.order_shipped", "warehouse.packing", "(any)", "queue"] in rows


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--batch-size", "0"),
        ("--lease", "0"),
        ("--lease", "-1"),
        ("--poll", "0"),
        ("--interval", "0"),
        ("--interval", "-1"),
        ("--concurrency", "0"),
        ("--prefetch", "0"),
        ("--claim-idle", "0"),
    ],
)
def test_a_worker_option_out_of_range_is_a_usage_error(
    tmp_path: Path, option: str, value: str
) -> None:
    """A worker option whose value the worker cannot run with exits 2 naming the option, before
    anything is imported or run."""
    env = environment("sqlite://", tmp_path / "calls.txt")
    done = CliRunner().invoke(main, ["worker", TARGET, "--once", option, value], env=env)
    assert done.exit_code == 2, done.output
    assert f"Invalid value for '{option}'" in done.stderr
    assert value in done.stderr
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert not calls(tmp_path / "calls.txt")


def test_purge_needs_older_than_and_refuses_a_duration_out_of_range(
    sqlite_box: Outbox, tmp_path: Path
) -> None:
    """``purge --dead`` says how old: without ``--older-than`` it exits 2 deleting nothing; a
    duration that reaches back past the calendar exits 2 naming it; ``0s`` deletes them all."""
    env = env_for(sqlite_box, tmp_path, TIDINGS_OUTBOX=TARGET)
    push(sqlite_box, 1, ("accounts.always_fails",))
    assert cli(["worker", TARGET, "--once", "-q"], env).exit_code == 0
    bare = CliRunner().invoke(main, ["outbox", "purge", "--dead"], env=env)
    assert bare.exit_code == 2
    assert "Missing option '--older-than'" in bare.stderr
    for value in ("99999999d", "1" + "0" * 400):
        far = CliRunner().invoke(
            main, ["outbox", "purge", "--dead", "--older-than", value], env=env
        )
        assert far.exit_code == 2, far.output
        assert f"Invalid value for '--older-than': {value!r}" in far.stderr
        assert far.exception is None or isinstance(far.exception, SystemExit)
    assert sqlite_box.status().dead == 1
    done = cli(["outbox", "purge", "--dead", "--older-than", "0s"], env)
    assert done.stdout == "1 dead letter deleted\n"


def test_dead_limit_is_at_least_one(sqlite_box: Outbox, tmp_path: Path) -> None:
    """``dead --limit`` takes 1 or more; 0 and negative numbers exit 2 naming the option."""
    env = env_for(sqlite_box, tmp_path, TIDINGS_OUTBOX=TARGET)
    for value in ("0", "-1"):
        done = CliRunner().invoke(main, ["outbox", "dead", "--limit", value], env=env)
        assert done.exit_code == 2, done.output
        assert "Invalid value for '--limit'" in done.stderr
