"""What the ``tidings`` command groups share: finding the outbox, printing tables."""

from __future__ import annotations

import datetime
import os
import re
import sys
from collections.abc import Sequence

import click

from tidings.outbox._codec import import_path
from tidings.outbox._outbox import Outbox

__all__ = ["app_option", "duration", "load_outbox", "parse_duration", "table"]

#: The ``--app`` option of the command groups that operate an outbox.
app_option = click.option(
    "--app",
    "target",
    envvar="TIDINGS_OUTBOX",
    required=True,
    help="The outbox, module:attribute (or set TIDINGS_OUTBOX).",
)


def load_outbox(target: str) -> Outbox:
    """Import ``module:attribute`` and return the outbox it names.

    Raises:
        click.BadParameter: It cannot be imported or is not an Outbox.
    """
    if ":" not in target:
        raise click.BadParameter(f"{target!r}: expected module:attribute, e.g. myapp.jobs:outbox")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value = import_path(target)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {target!r}: {exc}") from exc
    if not isinstance(value, Outbox) and callable(value):
        value = value()
    if not isinstance(value, Outbox):
        raise click.BadParameter(
            f"{target!r} is {type(value).__qualname__}, not a tidings.outbox.Outbox"
        )
    value.setup()
    return value


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``30``, ``30s``, ``15m``, ``12h`` or ``7d``.

    A duration is counted back from now, so one reaching past the first day of the calendar
    (year 1) is refused rather than left to overflow where it is used.

    Raises:
        click.BadParameter: Not such a duration, or one too long to count back from now.
    """
    match = _DURATION.match(text.strip())
    if match is None:
        raise click.BadParameter(f"{text!r}: expected a duration such as 30s, 15m, 12h or 7d")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    # datetime.min is naive, as the outbox's UTC times are.
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if not seconds <= (now - datetime.datetime.min).total_seconds():
        raise click.BadParameter(f"{text!r} reaches back before the year 1: give a shorter one")
    return seconds


def duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """An option's callback: the seconds of its :func:`parse_duration` value (None if not given).

    Raises:
        click.BadParameter: Not such a duration, said with the option's name.
    """
    if value is None:
        return None
    try:
        return parse_duration(value)
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, ctx=ctx, param=param) from None


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``header``, each column as wide as its widest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        click.echo("  ".join(cells).rstrip())
