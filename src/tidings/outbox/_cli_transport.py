"""``tidings transport``: the streams of an outbox's queue and broadcast receivers.

::

    tidings transport --app package.module:outbox status [--json]
    tidings transport --app package.module:outbox dead [--group G] [--json]
    tidings transport --app package.module:outbox retry --group G ID... | retry [--group G] --all

The outbox names the transport (``Outbox(..., transport=...)``), and so the key prefix.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Iterator, Sequence
from typing import Any

import click

from tidings._errors import TransportError
from tidings.outbox._cli_common import app_option, load_outbox, table
from tidings.outbox._consumer import Consumer
from tidings.outbox._lanes import ConsumerStats, describe_lanes
from tidings.outbox._outbox import Outbox
from tidings.outbox._relay import Relay
from tidings.outbox._remote import topic_of_group
from tidings.transport._base import DeadMessage, GroupStatus, Transport

__all__ = ["make_consumer", "run_worker", "transport"]


# -- the worker's consumer ----------------------------------------------------------------


def make_consumer(
    box: Outbox,
    *,
    picked: Sequence[str],
    groups: Sequence[str],
    quiet: bool,
    interval: float,
    **options: Any,
) -> Consumer | None:
    """The consumer ``tidings worker`` runs, or None when it has no receiver to run.

    Raises:
        click.UsageError: ``--receiver`` or ``--group`` names nothing known here.
    """
    try:
        consumer = box.consumer(**options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    lanes = consumer.lanes
    if picked or groups:
        known = {lane.receiver for lane in lanes} | {lane.group for lane in lanes}
        unknown = sorted((set(picked) | set(groups)) - known)
        if unknown:
            raise click.UsageError(
                f"no queue or broadcast receiver or group {', '.join(map(repr, unknown))} here; "
                f"known: {', '.join(sorted(known)) or 'none'}"
            )
        lanes = [lane for lane in lanes if lane.receiver in picked or lane.group in groups]
        consumer.lanes = lanes
    if not lanes:
        return None
    if not quiet:

        def progress(stats: ConsumerStats) -> None:
            click.echo(
                f"tidings worker: consumed {stats.done} done, {stats.skipped} skipped, "
                f"{stats.failed} failed, {stats.dead} dead, {stats.claimed} claimed",
                err=True,
            )

        consumer.on_progress = progress
        consumer.progress_interval = interval
    return consumer


def run_worker(relay: Relay | None, consumer: Consumer | None, *, once: bool, quiet: bool) -> None:
    """Run the relay in this thread and the consumer in its own threads, until stopped.

    With ``once``, the relay drains first (publishing what is due), then the consumer drains.
    """
    if consumer is not None:
        consumer.ensure_groups()
        if not quiet:
            click.echo(f"tidings worker: consuming {describe_lanes(consumer.lanes)}", err=True)
    if once:
        if relay is not None:
            relay.run(once=True)
        if consumer is not None:
            consumer.run(once=True)
        return
    if relay is None:
        if consumer is not None:
            consumer.run()
        return
    if consumer is not None:
        consumer.start()
    try:
        relay.run()
    finally:
        if consumer is not None:
            consumer.close()


def _transport_of(box: Outbox) -> Transport:
    if box.transport is None:
        raise click.ClickException(
            f"{box!r} has no transport: configure one with Outbox(..., transport=...)"
        )
    return box.transport


def _groups(box: Outbox) -> list[GroupStatus]:
    return _transport_of(box).status()


@contextlib.contextmanager
def _said() -> Iterator[None]:
    """Turn a transport's error into the command's error message."""
    try:
        yield
    except TransportError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@app_option
@click.pass_context
def transport(ctx: click.Context, target: str) -> None:
    """Look at and operate the streams of queue and broadcast receivers."""
    box = load_outbox(target)
    ctx.obj = box
    ctx.call_on_close(box.engine.dispose)
    if box.transport is not None:
        ctx.call_on_close(box.transport.close)


@transport.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_obj
def status(box: Outbox, as_json: bool) -> None:
    """Per stream and group: length, pending, lag, consumers, dead letters."""
    with _said():
        groups = _groups(box)
    if as_json:
        for state in groups:
            data: dict[str, Any] = {
                "stream": state.topic,
                "group": state.group,
                "length": state.length,
                "pending": state.pending,
                "lag": state.lag,
                "dead": state.dead,
                "consumers": [
                    {"name": c.name, "pending": c.pending, "idle": round(c.idle, 3)}
                    for c in state.consumers
                ],
            }
            click.echo(json.dumps(data))
        return
    if not groups:
        click.echo(f"no group reads a topic of {_transport_of(box)!r} yet")
        return
    rows = [
        (
            s.topic,
            s.group,
            str(s.length),
            str(s.pending),
            "?" if s.lag is None else str(s.lag),
            str(len(s.consumers)),
            str(s.dead),
        )
        for s in groups
    ]
    table(("STREAM", "GROUP", "LENGTH", "PENDING", "LAG", "CONSUMERS", "DEAD"), rows)


def _dead(box: Outbox, group: str | None) -> list[DeadMessage]:
    carrier = _transport_of(box)
    names = [group] if group is not None else [state.group for state in _groups(box)]
    letters: list[DeadMessage] = []
    for name in names:
        letters.extend(carrier.dead_letters(topic_of_group(name), name))
    return letters


def _when(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return f"{moment:%Y-%m-%d %H:%M:%S}"


@transport.command()
@click.option("--group", default=None, help="Only this group's dead letters.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_obj
def dead(box: Outbox, group: str | None, as_json: bool) -> None:
    """List the dead letters of every group (or --group), oldest first."""
    with _said():
        letters = _dead(box, group)
    if as_json:
        for letter in letters:
            data = {
                "id": letter.id,
                "stream": letter.topic,
                "group": letter.group,
                "entry": letter.message_id,
                "event_id": letter.event_id,
                "deliveries": letter.deliveries,
                "dead_at": _when(letter.dead_at),
                "reason": letter.reason,
                "body": letter.body.decode(errors="replace"),
            }
            click.echo(json.dumps(data))
        return
    rows = [
        (
            d.id,
            d.group,
            d.event_id,
            str(d.deliveries),
            _when(d.dead_at),
            d.reason.splitlines()[0] if d.reason else "",
        )
        for d in letters
    ]
    table(("ID", "GROUP", "EVENT", "DELIVERIES", "DEAD (UTC)", "REASON"), rows)


@transport.command()
@click.argument("ids", nargs=-1)
@click.option("--group", default=None, help="The group whose dead letters IDS are.")
@click.option("--all", "every", is_flag=True, help="Every dead letter (of --group, or all).")
@click.pass_obj
def retry(box: Outbox, ids: Sequence[str], group: str | None, every: bool) -> None:
    """Publish dead letters IDS of --group (or --all) onto their stream again."""
    if bool(ids) == every:
        raise click.UsageError("give dead-letter ids (with --group) or --all (one of them)")
    carrier = _transport_of(box)
    if ids:
        if group is None:
            raise click.UsageError("dead-letter ids belong to a group: give --group")
        with _said():
            moved = carrier.retry(topic_of_group(group), group, list(ids))
        click.echo(f"{moved} dead letter{'s' if moved != 1 else ''} put back")
        if moved < len(set(ids)):
            raise click.ClickException(
                f"{len(set(ids)) - moved} of the ids are not dead letters of {group!r}"
            )
        return
    names = [group] if group is not None else [state.group for state in _groups(box)]
    with _said():
        moved = sum(carrier.retry(topic_of_group(name), name, None) for name in names)
    click.echo(f"{moved} dead letter{'s' if moved != 1 else ''} put back")
