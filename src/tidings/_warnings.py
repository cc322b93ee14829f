"""The warning categories of the core.

Each warning tidings issues derives from :class:`TidingsWarning`, itself a
:class:`UserWarning`, so a single filter turns all of them into errors
(``warnings.simplefilter("error", tidings.TidingsWarning)``, or pytest's
``filterwarnings = ["error::tidings.TidingsWarning"]``) or silences them.

Hierarchy::

    TidingsWarning(UserWarning)
    ├── UncalledReceiverWarning    a weak receiver was collected before any send reached it
    └── CheckWarning               a problem Apps.check() finds, issued when populate() ends

(``CheckWarning`` is defined with the app registry, in :mod:`tidings.apps`.)
"""

from __future__ import annotations

__all__ = ["TidingsWarning", "UncalledReceiverWarning"]


class TidingsWarning(UserWarning):
    """Base class of every warning issued by tidings itself."""


class UncalledReceiverWarning(TidingsWarning):
    """A weakly connected receiver was garbage-collected before any send reached it.

    Issued for receivers that are usually temporaries (lambdas, functions defined inside
    another function, bound methods, ``functools.partial`` objects) when nothing but the
    signal referenced them: the signal holds receivers weakly, so such a receiver is never
    called. The message names the receiver and the file and line of its ``connect()`` (or
    ``@receiver``), and the warning is attributed to that line, so ``module=`` filters match
    the module that connected it. It is issued by the next ``connect``, ``disconnect`` or
    send of the signal (and by ``Apps.populate()`` once the ``ready()`` hooks have run),
    never from inside garbage collection.
    """
