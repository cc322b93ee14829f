"""The ``tidings`` command line (``python -m tidings`` too): workers, the outbox, receivers.

::

    tidings worker package.module:outbox [--once] [--quiet]
    tidings outbox --app package.module:outbox status | dead | retry ID... | retry --all
                   | purge --dead --older-than 7d
    tidings receivers [package.module ...] [--json]

``package.module:outbox`` names an :class:`~tidings.outbox.Outbox` (or a function returning
one), the convention of ``uvicorn`` and ``celery -A``; the current directory is importable.
"""

from __future__ import annotations

import datetime
import enum
import json
import os
import signal as signals
import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from tidings._connections import ReceiverInfo
from tidings._delivery import Delivery
from tidings._dispatch import Signal
from tidings.outbox._cli_common import app_option, duration, load_outbox, table
from tidings.outbox._cli_transport import make_consumer, run_worker, transport
from tidings.outbox._outbox import Outbox, installed_outbox
from tidings.outbox._receivers import receiver_name
from tidings.outbox._relay import Relay, RelayBusyError, RelayStats

__all__ = ["main"]

_Decorated = TypeVar("_Decorated", bound=Callable[..., Any])


# A worker's counts are 1 or more and its seconds more than 0: a relay or a consumer cannot run
# with less, and click's ranges refuse it naming the option and the value, before anything runs.
def _count(flag: str, default: int, text: str) -> Callable[[_Decorated], _Decorated]:
    """A worker option that is a count: an int of at least 1."""
    return click.option(
        flag, type=click.IntRange(min=1), default=default, show_default=True, help=text
    )


def _seconds(flag: str, default: float, text: str) -> Callable[[_Decorated], _Decorated]:
    """A worker option that is a number of seconds: a float above 0."""
    return click.option(
        flag,
        type=click.FloatRange(min=0, min_open=True),
        default=default,
        show_default=True,
        help=text,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """tidings: durable-delivery workers and operations."""


# -- the worker ---------------------------------------------------------------------------


@main.command()
@click.argument("target")
@click.option("--once", is_flag=True, help="Drain what is due, then exit.")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@_count("--batch-size", 50, "Deliveries claimed at once.")
@_seconds("--lease", 60.0, "Seconds a claim holds a row.")
@_seconds("--poll", 0.5, "Seconds between idle claims.")
@_seconds("--interval", 5.0, "Seconds between progress lines.")
@click.option("--no-wait", is_flag=True, help="SQLite: exit at once if another relay runs.")
@click.option(
    "--claim",
    type=click.Choice(["lease", "lock"]),
    default="lease",
    show_default=True,
    help="lock: PostgreSQL rows stay locked by the batch's transaction (see docs).",
)
@click.option(
    "--receiver",
    "picked",
    multiple=True,
    help="Run only this queue/broadcast receiver (repeatable; default: all).",
)
@click.option("--group", "groups", multiple=True, help="Run only this group (repeatable).")
@click.option(
    "--pool",
    type=click.Choice(["threads", "asyncio"]),
    default="threads",
    show_default=True,
    help="Run queue/broadcast receivers in threads, or as asyncio tasks of one loop.",
)
@_count("--concurrency", 1, "Threads (or tasks) per receiver.")
@_count("--prefetch", 10, "Entries a thread (task) reads at once.")
@_seconds(
    "--claim-idle", 30.0, "Seconds before an idle entry is taken over (and a failed one retried)."
)
@click.option("--node", default=None, help="This node's name in broadcast groups.")
@click.option("--no-relay", is_flag=True, help="Only consume (no relay in this process).")
@click.option("--no-consume", is_flag=True, help="Only relay (no consumer in this process).")
def worker(
    target: str,
    once: bool,
    quiet: bool,
    batch_size: int,
    lease: float,
    poll: float,
    interval: float,
    no_wait: bool,
    claim: str,
    picked: tuple[str, ...],
    groups: tuple[str, ...],
    pool: str,
    concurrency: int,
    prefetch: int,
    claim_idle: float,
    node: str | None,
    no_relay: bool,
    no_consume: bool,
) -> None:
    """Run the durable, queue and broadcast receivers of the outbox TARGET (module:attribute).

    The relay runs durable receivers and publishes queue and broadcast deliveries to the
    outbox's transport; the consumer runs the queue and broadcast receivers from there. The
    outbox is installed (unless the application installed one), so durable sends made by the
    receivers are stored in it too.

    SIGTERM or SIGINT stops reading, lets the running receivers finish (their entries are
    acknowledged), releases the leases and exits 0.
    """
    outbox = load_outbox(target)
    installing = installed_outbox() is None
    if installing:
        outbox.install()  # durable sends made by the receivers land in the same outbox
    if node is not None:
        outbox.node = node
    consumer = None
    if not no_consume and outbox.transport is not None:
        consumer = make_consumer(
            outbox,
            picked=picked,
            groups=groups,
            pool=pool,
            concurrency=concurrency,
            prefetch=prefetch,
            claim_idle=claim_idle,
            quiet=quiet,
            interval=interval,
        )
    elif no_relay:
        raise click.UsageError(
            f"{outbox!r} has no transport: with --no-relay this worker would do nothing"
        )
    state: dict[str, Any] = {"last": (time.monotonic(), 0)}

    def progress(stats: RelayStats) -> None:
        if quiet:
            return
        now = time.monotonic()
        then, before = state["last"]
        state["last"] = (now, stats.done)
        # Since the line before; on exit, the rate of the whole run (the last line may come a
        # moment after the one before, with the last batch's count).
        if stats.ended is not None:
            then, before = stats.started, 0
        rate = (stats.done - before) / (now - then) if now > then else 0.0
        try:
            status = outbox.status()
            where = f"pending {status.pending}, in flight {status.in_flight}, dead {status.dead}"
        except Exception as exc:  # the line must not kill the worker
            where = f"outbox unreadable ({type(exc).__name__})"
        click.echo(
            f"tidings worker: {stats.done} done ({rate:.1f}/s), {stats.retried} retried, "
            f"{stats.dead} dead, {stats.unknown} unknown; {where}",
            err=True,
        )

    relay = None
    if not no_relay:
        relay = Relay(
            outbox,
            batch_size=batch_size,
            lease=lease,
            poll_interval=poll,
            wait=not no_wait,
            on_progress=progress,
            progress_interval=interval,
            claim=claim,
        )

    def stop(signum: int, frame: types.FrameType | None) -> None:
        if relay is not None:
            relay.stop()
        if consumer is not None:
            consumer.stop()

    previous = {sig: signals.signal(sig, stop) for sig in (signals.SIGTERM, signals.SIGINT)}
    try:
        run_worker(relay, consumer, once=once, quiet=quiet)
    except RelayBusyError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        for sig, handler in previous.items():
            signals.signal(sig, handler)
        if installing:
            outbox.uninstall()
        outbox.engine.dispose()
        if outbox.transport is not None:
            outbox.transport.close()


main.add_command(transport)


# -- the outbox ---------------------------------------------------------------------------


@main.group()
@app_option
@click.pass_context
def outbox(ctx: click.Context, target: str) -> None:
    """Look at and operate an outbox."""
    ctx.obj = load_outbox(target)
    ctx.call_on_close(ctx.obj.engine.dispose)


def _when(value: datetime.datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


@outbox.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(box: Outbox, as_json: bool) -> None:
    """Pending, in-flight and dead deliveries, and the oldest pending one's age."""
    current = box.status()
    age = current.oldest_age()
    if as_json:
        fields = ("pending", "in_flight", "dead")
        data: dict[str, Any] = {name: getattr(current, name) for name in fields}
        data["oldest_pending_age"] = age
        click.echo(json.dumps(data))
        return
    click.echo(f"pending    {current.pending}")
    click.echo(f"in flight  {current.in_flight}")
    click.echo(f"dead       {current.dead}")
    click.echo(f"oldest     {'-' if age is None else f'{age:.1f} s ago'}")


@outbox.command()
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Show at most this many (1 or more; omit it for all).",
)
@click.option("--traceback", "show_traceback", is_flag=True, help="Print each traceback.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_obj
def dead(box: Outbox, limit: int | None, show_traceback: bool, as_json: bool) -> None:
    """List the dead letters, oldest failure first."""
    letters = box.dead_letters(limit)
    if as_json:
        for letter in letters:
            data = {
                "id": letter.id,
                "event_id": str(letter.event_id),
                "signal": letter.signal,
                "receiver": letter.receiver,
                "attempts": letter.attempts,
                "sent_at": letter.sent_at.isoformat(),
                "failed_at": letter.failed_at.isoformat(),
                "error": letter.error,
                "traceback": letter.traceback,
                "payload": json.loads(letter.payload),
            }
            click.echo(json.dumps(data))
        return
    rows = [
        (str(d.id), _when(d.failed_at), str(d.attempts), d.signal, d.receiver, d.error)
        for d in letters
    ]
    table(("ID", "FAILED (UTC)", "ATTEMPTS", "SIGNAL", "RECEIVER", "ERROR"), rows)
    if show_traceback:
        for letter in letters:
            click.echo(f"\n-- {letter.id} ({letter.event_id})\n{letter.traceback.rstrip()}")


@outbox.command()
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Every dead letter.")
@click.pass_obj
def retry(box: Outbox, ids: tuple[int, ...], every: bool) -> None:
    """Put dead letters IDS (or --all) back for delivery, attempts reset."""
    if bool(ids) == every:
        raise click.UsageError("give dead-letter ids or --all (one of them)")
    moved = box.retry(None if every else list(ids))
    click.echo(f"{moved} dead letter{'s' if moved != 1 else ''} put back")
    if not every and moved < len(set(ids)):
        raise click.ClickException(f"{len(set(ids)) - moved} of the ids are not dead letters")


@outbox.command()
@click.option("--dead", is_flag=True, required=True, help="Purge dead letters (required).")
@click.option(
    "--older-than",
    metavar="DURATION",
    required=True,
    callback=duration,
    help="How long ago they failed: 30s, 15m, 12h, 7d (0s: every dead letter).",
)
@click.pass_obj
def purge(box: Outbox, dead: bool, older_than: float) -> None:
    """Delete dead letters that failed longer ago than --older-than."""
    removed = box.purge(older_than)
    click.echo(f"{removed} dead letter{'s' if removed != 1 else ''} deleted")


# -- receivers ----------------------------------------------------------------------------


def _signals() -> Iterator[tuple[str, Signal]]:
    """Every signal that is an attribute of an imported module, once, by its first path."""
    seen: set[int] = set()
    for module_name, module in sorted(sys.modules.items()):
        if module is None:
            continue
        try:
            attributes = list(vars(module).items())
        except TypeError:  # pragma: no cover - modules without a __dict__
            continue
        for attribute, value in attributes:
            if isinstance(value, Signal) and id(value) not in seen:
                seen.add(id(value))
                yield f"{module_name}.{attribute}", value


def _describe(value: Any) -> str:
    if value is None:
        return "(any)"
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


@main.command()
@click.argument("modules", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "every", is_flag=True, help="Also the signals no receiver is connected to.")
def receivers(modules: tuple[str, ...], as_json: bool, every: bool) -> None:
    """List every signal of the imported MODULES with its receivers (module or module:outbox).

    A durable, queue or broadcast receiver is named as the outbox's rows and dead letters name
    it (its name=, else its module.qualname); the JSON also gives every receiver's
    function as "function". With --all, a signal without receivers is listed too, once, its
    receiver "(none)" (null in the JSON).
    """
    for name in modules:
        if ":" in name:
            load_outbox(name)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            try:
                __import__(name)
            except ImportError as exc:
                raise click.BadParameter(f"cannot import {name!r}: {exc}") from exc
    entries: list[dict[str, Any]] = []
    for path, sig in _signals():
        connected = sig.live_receivers()
        if not connected and every:
            unheard = dict.fromkeys(("receiver", "function", "sender", "delivery", "async"))
            entries.append({"signal": sig.name or path, "signal_path": path, **unheard})
        for info in connected:
            delivery = getattr(info, "delivery", "immediate")
            function = _describe_receiver(info.receiver)
            entries.append(
                {
                    "signal": sig.name or path,
                    "signal_path": path,
                    "receiver": _stable_name(info, delivery) or function,
                    "function": function,
                    "sender": _describe(info.sender),
                    "delivery": delivery.value if isinstance(delivery, enum.Enum) else delivery,
                    "async": info.is_async,
                }
            )
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    table(
        ("SIGNAL", "RECEIVER", "SENDER", "DELIVERY"),
        [
            [e["signal"], e["receiver"] or "(none)", e["sender"] or "-", e["delivery"] or "-"]
            for e in entries
        ],
    )


def _stable_name(info: ReceiverInfo, delivery: object) -> str | None:
    """The name the outbox's rows and dead letters give a receiver of an outbox mode.

    None for the modes that run in the sending process (immediate, on_commit): they have no
    stored name, and their function's path is what names them.
    """
    if delivery in (Delivery.IMMEDIATE, Delivery.ON_COMMIT):
        return None
    name = info.options.get("name")
    return name if isinstance(name, str) else receiver_name(info.receiver)


def _describe_receiver(func: Any) -> str:
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or repr(func)
    return f"{module}.{qualname}"
