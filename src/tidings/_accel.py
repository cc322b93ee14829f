"""Choose the compiled or the pure-Python send path, once, at import time.

``tidings._speedups`` (an optional C extension, built from ``_speedups.c`` where a compiler is
available) replaces :meth:`Signal.send` and :meth:`Signal.send_robust` with method
descriptors that run the common case (only sync receivers, nothing to purge) in C and hand
every other case to the pure-Python methods, which stay the reference. Setting the
environment variable ``TIDINGS_NO_EXTENSIONS`` to anything but ``""`` or ``"0"`` before
``import tidings`` keeps the pure path. :data:`tidings.compiled` says which one is active.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from tidings._dispatch import Signal

__all__ = ["compiled", "init_hook", "pure_method"]

_METHODS = {"send": False, "send_robust": True}  # name: whether it is the robust variant


def _disabled() -> bool:
    return os.environ.get("TIDINGS_NO_EXTENSIONS", "") not in ("", "0")


def _install() -> bool:
    """Install the compiled methods on :class:`Signal`; return whether they are active."""
    if _disabled():
        return False
    try:
        from tidings import _speedups
    except ImportError:
        return False
    for name, robust in _METHODS.items():
        pure = vars(Signal)[name]
        method = _speedups.SendMethod(pure, robust=robust)
        functools.update_wrapper(method, pure)
        setattr(Signal, name, method)
    return True


def pure_method(name: str) -> Any:
    """The pure-Python ``Signal.<name>`` function, whichever path is active."""
    method = vars(Signal)[name]
    return getattr(method, "pure", method)


compiled: bool = _install()

#: ``tidings._speedups.InitHook`` on the compiled path (the ORM integration's constructor
#: wrapper), None on the pure path.
init_hook: Any = None
if compiled:
    from tidings._speedups import InitHook as init_hook
