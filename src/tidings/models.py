"""Model signals, ORM-agnostic: Django's names and arguments, sent by an ORM integration.

This module defines the signals; ``tidings.sqlalchemy`` sends them for SQLAlchemy models.
Every receiver gets ``signal=`` and ``sender=`` (the model class, unless noted) plus:

==================  ==========================================================================
Signal              Keyword arguments
==================  ==========================================================================
``pre_init``        ``args``, ``kwargs``
``post_init``       ``instance``
``pre_save``        ``instance``, ``raw``, ``using``, ``update_fields``; tidings adds ``changes``
``post_save``       ``instance``, ``created``, ``raw``, ``using``, ``update_fields``; tidings
                    adds ``changes``
``pre_delete``      ``instance``, ``using``, ``origin``
``post_delete``     ``instance``, ``using``, ``origin``
``m2m_changed``     ``action``, ``instance``, ``reverse``, ``model``, ``pk_set``, ``using``
                    (``sender`` is the association table or class)
``class_prepared``  none: ``sender`` is the newly prepared model class
``pre_migrate``     ``app_config``, ``verbosity``, ``interactive``, ``using``, ``apps``, ``plan``
                    (``sender`` is an :class:`~tidings.apps.AppConfig`)
``post_migrate``    ``app_config``, ``verbosity``, ``interactive``, ``using``, ``apps``, ``plan``
                    (``sender`` is an :class:`~tidings.apps.AppConfig`)
==================  ==========================================================================

``changes`` (tidings extension) maps each changed field name to ``(old, new)`` for an update
and is empty for an insert.

Two tidings extensions report SQLAlchemy bulk statements, which Django's ``QuerySet.update()``
and the fast delete path never signal: ``post_bulk_update`` and ``post_bulk_delete``, sent with
``sender=<model class>``, ``statement`` (the executed statement), ``using`` (the database
alias), ``pks`` (a tuple of the affected primary keys, or None when the database did not
return them) and ``rowcount``.

``pre_init`` … ``m2m_changed`` and the two bulk signals are :class:`ModelSignal` instances with
``use_caching=True``; ``class_prepared``, ``pre_migrate`` and ``post_migrate`` are plain
:class:`~tidings.Signal` instances.

Lazy senders: a :class:`ModelSignal` accepts ``sender="app_label.ModelName"``. The connection
(or disconnection) waits in the app registry (:data:`tidings.apps.apps` unless ``apps=`` is
given) until that model is registered, and happens at once if it already is. The app label is
matched exactly, the model name case-insensitively. While it waits, a weakly connected receiver
is held weakly, exactly as a connected one would be: a module-level function stays connected, a
temporary lambda does not. :meth:`tidings.apps.Apps.check` reports references that never
resolved (``signals.E001``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from tidings import Signal
from tidings._delivery import Delivery
from tidings._delivery import resolve as resolve_delivery
from tidings._errors import InvalidReceiverError
from tidings._refs import describe, mark_heard, peek, receiver_getter
from tidings.apps import Apps, make_model_key
from tidings.apps import apps as _default_apps

__all__ = [
    "ModelSignal",
    "class_prepared",
    "m2m_changed",
    "post_bulk_delete",
    "post_bulk_update",
    "post_delete",
    "post_init",
    "post_migrate",
    "post_save",
    "pre_delete",
    "pre_init",
    "pre_migrate",
    "pre_save",
]


def _hold(receiver: Callable[..., Any], weak: bool, signal: ModelSignal) -> Callable[[], Any]:
    """Return a getter for a receiver waiting on a lazy sender, weak when the connection is."""
    return receiver_getter(receiver, weak, _ignore_death, signal)


def _ignore_death(_ref: object) -> None:
    # A waiting receiver that dies simply finds nothing to connect when its model arrives.
    pass


class ModelSignal(Signal):
    """A :class:`~tidings.Signal` whose sender may be given lazily as ``"app_label.ModelName"``.

    Constructed like :class:`~tidings.Signal` (``use_caching``, ``name``); the name appears in
    error and check messages.
    """

    def _signal_text(self) -> str:
        return f"the {self.name!r} signal" if self.name else f"the signal {self!r}"

    def connect(
        self,
        receiver: Callable[..., Any],
        sender: object = None,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
        apps: Apps | None = None,
        *,
        inline: bool = False,
        delivery: Delivery | str = Delivery.IMMEDIATE,
        **options: Any,
    ) -> None:
        """Connect ``receiver``; a string ``sender`` waits until that model is registered.

        Args:
            receiver: A callable accepting ``**kwargs``.
            sender: A model class, None for any sender, or ``"app_label.ModelName"``.
            weak: Hold the receiver weakly (also while a lazy sender is pending).
            dispatch_uid: A unique id that replaces the receiver's identity.
            apps: The registry that resolves a string sender; the default registry if None.
            inline: As for :meth:`tidings.Signal.connect`.
            delivery: As for :meth:`tidings.Signal.connect`.
            **options: The delivery mode's options, as for :meth:`tidings.Signal.connect`.

        Raises:
            ValueError: If a string sender is not of the form ``"app_label.ModelName"``, the
                receiver does not accept ``**kwargs``, or ``delivery`` is not a usable mode.
            TypeError: If the receiver is not callable or cannot be weakly referenced, or
                ``options`` holds options the delivery mode does not take.
        """
        if not isinstance(sender, str):
            super().connect(
                receiver, sender, weak, dispatch_uid, inline=inline, delivery=delivery, **options
            )
            return
        key = make_model_key(sender)
        # Validate now: the real connect may run much later, far from the mistake.
        self._check_connectable(receiver, inline)
        resolve_delivery(delivery, options, self, receiver)
        # A receiver that dies while it waits is reported like one that dies connected.
        getter = receiver_getter(receiver, weak, self._note_unheard, self)

        def connect_to(model: type) -> None:
            # Peeked, not called: only a send counts as reaching the receiver.
            target = peek(getter)
            if target is not None:
                # The connection keeps the site of this call, not that of the registry.
                Signal._connect(
                    self,
                    target,
                    model,
                    weak,
                    dispatch_uid,
                    inline=inline,
                    delivery=delivery,
                    origin=getter,
                    **options,
                )
                mark_heard(getter)  # from now on the connection reports the receiver

        registry = apps if apps is not None else _default_apps
        registry.lazy_model_operation(
            connect_to,
            key,
            description=f"The receiver {describe(receiver)!r} was connected to "
            f"{self._signal_text()} with a lazy reference to the sender",
            check_id="signals.E001",
            obj=describe(receiver),
        )

    def disconnect(  # type: ignore[override]
        self,
        receiver: Callable[..., Any] | None = None,
        sender: object = None,
        dispatch_uid: Hashable | None = None,
        apps: Apps | None = None,
    ) -> bool | None:
        """Disconnect a receiver; a string ``sender`` waits until that model is registered.

        Args:
            receiver: The receiver to remove (or None with ``dispatch_uid``).
            sender: The sender it was connected for, or ``"app_label.ModelName"``.
            dispatch_uid: The unique id it was connected with.
            apps: The registry that resolves a string sender; the default registry if None.

        Returns:
            Whether a receiver was removed, for a non-string sender; None for a string
            sender, whose disconnection may not have happened yet (as in Django).

        Raises:
            ValueError: If a string sender is not of the form ``"app_label.ModelName"``.
        """
        if not isinstance(sender, str):
            return super().disconnect(receiver, sender, dispatch_uid=dispatch_uid)
        key = make_model_key(sender)
        # The receiver is held weakly where possible: if it dies first, so did any connection
        # of it. A dispatch_uid alone identifies the connection, so nothing is held then.
        getter: Callable[[], Any] | None = None
        if receiver is not None and not dispatch_uid:
            try:
                getter = _hold(receiver, True, self)
            except InvalidReceiverError:
                getter = _hold(receiver, False, self)

        def disconnect_from(model: type) -> None:
            target = None if getter is None else getter()
            if getter is None or target is not None:
                Signal.disconnect(self, target, model, dispatch_uid=dispatch_uid)

        what = (
            f"The receiver {describe(receiver)!r}"
            if receiver is not None
            else f"The dispatch_uid {dispatch_uid!r}"
        )
        registry = apps if apps is not None else _default_apps
        registry.lazy_model_operation(
            disconnect_from,
            key,
            description=f"{what} was disconnected from {self._signal_text()} with a lazy "
            "reference to the sender",
            check_id="signals.E001",
            obj=describe(receiver) if receiver is not None else dispatch_uid,
        )
        return None


pre_init = ModelSignal(use_caching=True, name="pre_init")
post_init = ModelSignal(use_caching=True, name="post_init")

pre_save = ModelSignal(use_caching=True, name="pre_save")
post_save = ModelSignal(use_caching=True, name="post_save")

pre_delete = ModelSignal(use_caching=True, name="pre_delete")
post_delete = ModelSignal(use_caching=True, name="post_delete")

m2m_changed = ModelSignal(use_caching=True, name="m2m_changed")

post_bulk_update = ModelSignal(use_caching=True, name="post_bulk_update")
post_bulk_delete = ModelSignal(use_caching=True, name="post_bulk_delete")

class_prepared = Signal(name="class_prepared")
pre_migrate = Signal(name="pre_migrate")
post_migrate = Signal(name="post_migrate")
