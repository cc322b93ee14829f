"""A receiver that prints every signal it sees, with the receivers the send is about to call.

Each send prints as a call, then the receivers it calls::

    post_save(sender=User, instance=<User 1 'alice'>, created=True, update_fields=None, changes={})
      -> profiles.signals.create_user_profile, profiles.signals.save_user_profile


It is connected first (before any app connects its own receivers) for every sender, so it runs
before the others and can list them: ``live_receivers(sender)`` are exactly the receivers this
send calls, in order; one connected with ``delivery="on_commit"`` is marked ``[after
commit]``: the send only queues it, and its log lines come after the commit. Receivers' own log
lines follow it, indented.

The demo does not trace ``pre_init``/``post_init``: they are sent for every object built or
loaded, and a receiver connected to them makes SQLAlchemy's row loading send them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tidings import Delivery, Signal

__all__ = ["Tracer", "describe"]

# The arguments worth showing, per signal; ``raw`` is always False and ``using`` "default" here.
_SHOWN = {
    "pre_save": ("update_fields", "changes"),
    "post_save": ("created", "update_fields", "changes"),
    "pre_delete": ("origin",),
    "post_delete": ("origin",),
}


def describe(func: Callable[..., Any]) -> str:
    """``module.qualname`` of a receiver."""
    return f"{func.__module__}.{func.__qualname__}"


def _value(name: str, value: Any) -> str:
    if name == "changes":
        if not value:
            return "{}"
        return (
            "{" + ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in value.items()) + "}"
        )
    if name == "update_fields" and value is not None:
        return "[" + ", ".join(sorted(value)) + "]"
    return repr(value)


class Tracer:
    """Prints one block per signal sent: name, sender, arguments and receivers called."""

    def __init__(self, write: Callable[[str], object] = print) -> None:
        """Print with ``write``."""
        self._write = write
        self.count = 0

    def connect(self, signals: Iterable[Signal]) -> None:
        """Trace every send of ``signals``, from any sender, for as long as the process runs."""
        for signal in signals:
            # weak=False: a bound method of an object would otherwise be referenced weakly.
            signal.connect(self.trace, weak=False)

    def receivers(self, signal: Signal, sender: Any = None) -> list[str]:
        """The receivers a send from ``sender`` calls, this tracer left out."""
        found = signal.live_receivers() if sender is None else signal.live_receivers(sender)
        return [
            describe(info.receiver)
            + ("" if info.delivery is Delivery.IMMEDIATE else " [after commit]")
            for info in found
            if info.receiver != self.trace
        ]

    def trace(self, signal: Signal, sender: Any, **kwargs: Any) -> None:
        """The receiver: print the signal, its sender and arguments, and who receives it."""
        self.count += 1
        name = signal.name or repr(signal)
        parts = [f"sender={getattr(sender, '__name__', sender)}"]
        instance = kwargs.get("instance")
        if instance is not None:
            parts.append(f"instance={instance!r}")
        parts.extend(f"{key}={_value(key, kwargs[key])}" for key in _SHOWN.get(name, ()))
        self._write(f"{name}({', '.join(parts)})")
        called = self.receivers(signal, sender)
        self._write(f"  -> {', '.join(called) or '(no receivers)'}")
