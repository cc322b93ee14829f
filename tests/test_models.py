"""Model signals: ModelSignal's lazy senders, the signal objects, and Django as the oracle."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import tidings.models
from tests.apps_fixtures import EVENTS, forget_modules
from tidings import InvalidReceiverError, ReceiverSignatureError, Signal, receiver
from tidings.apps import Apps, apps
from tidings.models import ModelSignal

FIX = "tests.apps_fixtures"
MODEL_SIGNALS = [
    "m2m_changed",
    "post_bulk_delete",
    "post_bulk_update",
    "post_delete",
    "post_init",
    "post_save",
    "pre_delete",
    "pre_init",
    "pre_save",
]
PLAIN_SIGNALS = ["class_prepared", "post_migrate", "pre_migrate"]


@pytest.fixture(autouse=True)
def registry() -> Iterator[Apps]:
    """The default registry, emptied for the test and restored afterwards."""
    forget_modules()
    with apps.isolated() as isolated:
        yield isolated
    forget_modules()


@pytest.fixture
def signal() -> ModelSignal:
    """A model signal of the test's own, so no connection outlives the test."""
    return ModelSignal(use_caching=True, name="test_signal")


calls: list[str] = []


@pytest.fixture(autouse=True)
def _clear_calls() -> Iterator[None]:
    calls.clear()
    yield
    calls.clear()


def handler(sender: object, **kwargs: Any) -> str:
    """A module-level receiver that records its calls."""
    calls.append(f"handler:{getattr(sender, '__name__', sender)}")
    return "handled"


def other(sender: object, **kwargs: Any) -> None:
    """A second module-level receiver."""
    calls.append(f"other:{getattr(sender, '__name__', sender)}")


def model(name: str) -> type:
    """A fresh class standing for a model."""
    return type(name, (), {})


# -- the signal objects --------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_SIGNALS)
def test_model_signals_are_cached_model_signals(name: str) -> None:
    """pre_init … m2m_changed and the bulk signals are ModelSignal(use_caching=True)."""
    sig = getattr(tidings.models, name)
    assert isinstance(sig, ModelSignal)
    assert sig.use_caching is True
    assert sig.name == name


@pytest.mark.parametrize("name", PLAIN_SIGNALS)
def test_app_signals_are_plain_signals(name: str) -> None:
    """class_prepared, pre_migrate and post_migrate are plain Signals, not ModelSignals."""
    sig = getattr(tidings.models, name)
    assert type(sig) is Signal
    assert sig.name == name


def test_module_exports_are_sorted_and_complete() -> None:
    """tidings.models.__all__ is sorted and lists every signal and ModelSignal."""
    assert tidings.models.__all__ == sorted(tidings.models.__all__)
    assert set(tidings.models.__all__) == {"ModelSignal", *MODEL_SIGNALS, *PLAIN_SIGNALS}


def test_import_loads_only_the_standard_library() -> None:
    """Importing tidings.apps and tidings.models imports no third-party module (no ORM)."""
    code = (
        "import sys; before = set(sys.modules); import tidings.models, tidings.apps; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    roots = {name.split(".")[0] for name in loaded}
    assert roots - set(sys.stdlib_module_names) == {"tidings"}


def test_docstring_documents_every_signal() -> None:
    """The module docstring names every signal and its keyword arguments."""
    doc = tidings.models.__doc__ or ""
    for name in MODEL_SIGNALS + PLAIN_SIGNALS:
        assert f"``{name}``" in doc
    for argument in ["update_fields", "origin", "pk_set", "changes", "rowcount", "pks", "plan"]:
        assert f"``{argument}``" in doc


# -- lazy senders --------------------------------------------------------------------------


@pytest.mark.parametrize("reference", ["invalid", "a.b.c", ".Post", "blog.", ""])
def test_invalid_reference_is_refused_at_once(signal: ModelSignal, reference: str) -> None:
    """A string sender that is not 'app_label.ModelName' raises Django's ValueError."""
    expected = (
        f"Invalid model reference '{reference}'. String model references must be of the form "
        "'app_label.ModelName'."
    )
    with pytest.raises(ValueError) as info:
        signal.connect(handler, sender=reference)
    assert str(info.value) == expected
    with pytest.raises(ValueError) as info:
        signal.disconnect(handler, sender=reference)
    assert str(info.value) == expected
    assert apps.check() == []


def test_lazy_connect_before_registration(signal: ModelSignal) -> None:
    """A receiver connected to a model not yet registered receives its sends afterwards."""
    assert signal.connect(handler, sender="blog.Post") is None  # type: ignore[func-returns-value]
    assert not signal.has_listeners()
    post = model("Post")
    apps.register_model("blog", post)
    assert signal.has_listeners(post)
    assert signal.send(post) == [(handler, "handled")]
    assert signal.send(model("Post")) == []
    assert apps.check() == []


def test_lazy_connect_keeps_the_site_of_the_connect_call(signal: ModelSignal) -> None:
    """A receiver lost after its lazy sender resolved is reported at its connect() line."""
    import inspect

    from tidings import UncalledReceiverWarning

    def make() -> Any:
        def nested(**kwargs: Any) -> None:
            pass

        return nested

    nested = make()
    signal.connect(nested, sender="blog.Post")  # lazy connect
    post = model("Post")
    apps.register_model("blog", post)
    assert signal.has_listeners(post)
    del nested
    source = inspect.getsource(test_lazy_connect_keeps_the_site_of_the_connect_call)
    first = test_lazy_connect_keeps_the_site_of_the_connect_call.__code__.co_firstlineno
    offset = next(i for i, t in enumerate(source.splitlines()) if t.endswith("# lazy connect"))
    with pytest.warns(UncalledReceiverWarning) as record:
        assert signal.send(post) == []
    assert [(w.filename, w.lineno) for w in record] == [(__file__, first + offset)]


def test_receiver_dying_while_it_waits_for_its_model_is_reported(signal: ModelSignal) -> None:
    """A lambda connected with a lazy sender and held by nobody warns, although never linked."""
    from tidings import UncalledReceiverWarning

    signal.connect(lambda **kwargs: None, sender="blog.Post")
    with pytest.warns(UncalledReceiverWarning, match=r"<lambda> was connected to <ModelSignal"):
        signal.connect(handler)
    post = model("Post")
    apps.register_model("blog", post)
    assert signal.send(post) == [(handler, "handled")]


def test_lazy_connect_after_registration_is_immediate(signal: ModelSignal) -> None:
    """A string sender naming a registered model connects at once."""
    post = model("Post")
    apps.register_model("blog", post)
    signal.connect(handler, sender="blog.Post")
    assert signal.send(post) == [(handler, "handled")]


def test_model_part_is_case_insensitive_app_label_is_not(signal: ModelSignal) -> None:
    """'blog.POST' resolves to blog.Post, but 'BLOG.Post' waits for another app."""
    signal.connect(handler, sender="blog.POST")
    signal.connect(other, sender="BLOG.Post")
    post = model("Post")
    apps.register_model("blog", post)
    signal.send(post)
    assert calls == ["handler:Post"]
    assert [m.msg.endswith("but app 'BLOG' isn't installed.") for m in apps.check()] == [True]


def test_disconnect_before_registration_returns_none(signal: ModelSignal) -> None:
    """A lazy disconnect returns None and, once resolved, undoes the earlier lazy connect."""
    signal.connect(handler, sender="blog.Post")
    signal.connect(other, sender="blog.Post")
    assert signal.disconnect(handler, sender="blog.Post") is None
    post = model("Post")
    apps.register_model("blog", post)
    signal.send(post)
    assert calls == ["other:Post"]


def test_disconnect_after_registration_returns_none(signal: ModelSignal) -> None:
    """A lazy disconnect of a registered model returns None but disconnects at once."""
    post = model("Post")
    apps.register_model("blog", post)
    signal.connect(handler, sender="blog.Post")
    assert signal.disconnect(handler, sender="blog.post") is None
    assert signal.send(post) == []


def test_class_sender_connects_immediately(signal: ModelSignal) -> None:
    """A class sender never goes through the registry; disconnect returns the bool."""
    post = model("Post")
    assert signal.connect(handler, sender=post) is None  # type: ignore[func-returns-value]
    assert apps.check() == []
    assert signal.send(post) == [(handler, "handled")]
    assert signal.disconnect(handler, sender=post) is True
    assert signal.disconnect(handler, sender=post) is False


def test_dispatch_uid_with_lazy_sender(signal: ModelSignal) -> None:
    """dispatch_uid deduplicates lazy connections and disconnects them by uid."""
    signal.connect(handler, sender="blog.Post", dispatch_uid="uid")
    signal.connect(other, sender="blog.Post", dispatch_uid="uid")
    post = model("Post")
    apps.register_model("blog", post)
    assert signal.send(post) == [(handler, "handled")]
    assert signal.disconnect(sender="blog.Post", dispatch_uid="uid") is None
    assert signal.send(post) == []


def test_receiver_decorator_accepts_a_lazy_sender(signal: ModelSignal) -> None:
    """@receiver(signal, sender='app.Model') connects lazily."""

    @receiver(signal, sender="blog.Post", weak=False)
    def decorated(sender: type, **kwargs: Any) -> None:
        calls.append(f"decorated:{sender.__name__}")

    post = model("Post")
    apps.register_model("blog", post)
    signal.send(post)
    assert calls == ["decorated:Post"]


def test_inline_is_passed_through(signal: ModelSignal) -> None:
    """connect(inline=True) reaches the core for class and lazy senders alike."""
    post = model("Post")
    signal.connect(handler, sender="blog.Post", inline=True)
    apps.register_model("blog", post)
    (info,) = signal.live_receivers(post)
    assert info.inline is True


# -- receiver validation and lifetime ------------------------------------------------------


def no_kwargs(sender: object) -> None:
    """A receiver that cannot accept **kwargs."""


async def async_receiver(sender: object, **kwargs: Any) -> None:
    """An async receiver."""


def test_lazy_receiver_without_kwargs_is_refused_at_once(signal: ModelSignal) -> None:
    """A receiver without **kwargs raises ValueError at connect, before the model exists."""
    with pytest.raises(ReceiverSignatureError, match="no_kwargs") as info:
        signal.connect(no_kwargs, sender="blog.Post")
    assert isinstance(info.value, ValueError)
    assert apps.check() == []


def test_lazy_non_callable_is_refused_at_once(signal: ModelSignal) -> None:
    """A non-callable receiver raises TypeError at connect, before the model exists."""
    with pytest.raises(TypeError, match="must be callable"):
        signal.connect("not callable", sender="blog.Post")  # type: ignore[arg-type]
    assert apps.check() == []


def test_lazy_inline_async_receiver_is_refused_at_once(signal: ModelSignal) -> None:
    """inline=True with an async receiver is refused at connect, as the core does."""
    with pytest.raises(InvalidReceiverError, match="inline=True"):
        signal.connect(async_receiver, sender="blog.Post", inline=True)
    assert apps.check() == []


def test_lazy_receiver_that_cannot_be_weakly_referenced(signal: ModelSignal) -> None:
    """weak=True with an object that has no weak references is refused at connect."""

    class Slotted:
        __slots__ = ()

        def __call__(self, **kwargs: Any) -> None:
            calls.append("slotted")

    with pytest.raises(InvalidReceiverError, match="weak=False"):
        signal.connect(Slotted(), sender="blog.Post")
    signal.connect(Slotted(), sender="blog.Post", weak=False)
    post = model("Post")
    apps.register_model("blog", post)
    signal.send(post)
    assert calls == ["slotted"]


@pytest.mark.parametrize("weak", [True, False], ids=["weak", "strong"])
def test_pending_receiver_lifetime_matches_its_connection(signal: ModelSignal, weak: bool) -> None:
    """While waiting, a weak receiver is held weakly and a strong one strongly."""
    signal.connect(lambda **kwargs: calls.append("lambda"), sender="blog.Post", weak=weak)
    gc.collect()
    post = model("Post")
    apps.register_model("blog", post)
    signal.send(post)
    assert calls == ([] if weak else ["lambda"])


def test_pending_bound_method_does_not_keep_its_object_alive(signal: ModelSignal) -> None:
    """A bound method waiting on a lazy sender lets its object be collected."""

    class Listener:
        def on_save(self, **kwargs: Any) -> None:
            calls.append("method")

    kept, dropped = Listener(), Listener()
    signal.connect(kept.on_save, sender="blog.Post")
    signal.connect(dropped.on_save, sender="blog.Post")
    del dropped
    gc.collect()
    post = model("Post")
    apps.register_model("blog", post)
    signal.send(post)
    assert calls == ["method"]


def test_pending_disconnect_does_not_keep_its_receiver_alive(signal: ModelSignal) -> None:
    """A lazy disconnect waiting for its model holds the receiver weakly."""

    class Listener:
        def on_save(self, **kwargs: Any) -> None:
            calls.append("method")

    listener = Listener()
    alive = weakref.ref(listener)
    signal.connect(listener.on_save, sender="blog.Post")
    signal.disconnect(listener.on_save, sender="blog.Post")
    del listener
    gc.collect()
    assert alive() is None
    apps.register_model("blog", model("Post"))
    assert len(apps.check()) == 0


def test_module_level_receiver_stays_connected(signal: ModelSignal) -> None:
    """A module-level function connected lazily and weakly is still connected later."""
    signal.connect(handler, sender="blog.Post")
    gc.collect()
    post = model("Post")
    apps.register_model("blog", post)
    gc.collect()
    assert signal.send(post) == [(handler, "handled")]


# -- check() and registries ----------------------------------------------------------------


def test_check_names_the_receiver_signal_and_missing_app(signal: ModelSignal) -> None:
    """An unresolved lazy sender of an unknown app is reported as signals.E001."""
    # The pending connection lives in the isolated registry state and vanishes with it.
    tidings.models.post_save.connect(handler, sender="blog.post")
    (message,) = apps.check()
    assert message.id == "signals.E001"
    assert message.msg == (
        "The receiver 'tests.test_models.handler' was connected to the 'post_save' signal "
        "with a lazy reference to the sender 'blog.post', but app 'blog' isn't installed."
    )
    assert message.obj == "tests.test_models.handler"


def test_check_names_the_missing_model_of_an_installed_app(signal: ModelSignal) -> None:
    """An unresolved lazy sender of an installed app says the app lacks the model."""
    apps.populate([f"{FIX}.alpha"])
    signal.connect(handler, sender="alpha.Nope")
    signal.disconnect(sender="alpha.Nope", dispatch_uid="uid")
    assert [m.msg for m in apps.check()] == [
        "The dispatch_uid 'uid' was disconnected from the 'test_signal' signal with a lazy "
        "reference to the sender 'alpha.nope', but app 'alpha' doesn't provide model 'nope'.",
        "The receiver 'tests.test_models.handler' was connected to the 'test_signal' signal "
        "with a lazy reference to the sender 'alpha.nope', but app 'alpha' doesn't provide "
        "model 'nope'.",
    ]


def test_unnamed_model_signal_is_described_by_its_repr() -> None:
    """A ModelSignal without a name is described by its repr in check messages."""
    unnamed = ModelSignal()
    unnamed.connect(handler, sender="blog.Post")
    assert f"to the signal {unnamed!r} with" in apps.check()[0].msg


def test_apps_argument_selects_the_registry(signal: ModelSignal) -> None:
    """connect(apps=...) waits in that registry, not the default one."""
    other_registry = Apps()
    signal.connect(handler, sender="blog.Post", apps=other_registry)
    post = model("Post")
    apps.register_model("blog", post)
    assert signal.send(post) == []
    other_registry.register_model("blog", post)
    assert signal.send(post) == [(handler, "handled")]
    assert signal.disconnect(handler, sender="blog.Post", apps=other_registry) is None
    assert signal.send(post) == []


def test_ready_connects_receivers_with_class_and_lazy_senders() -> None:
    """An app's ready() importing its signals module connects receivers that then fire."""
    apps.populate([f"{FIX}.delta"])
    from tests.apps_fixtures.delta import signals

    entry = apps.get_model("delta.Entry")
    try:
        tidings.models.post_save.send(entry, instance=entry(), created=True)
        assert EVENTS == ["class:Entry", "lazy:Entry"]
    finally:
        tidings.models.post_save.disconnect(signals.saved_by_class, sender=entry)
        tidings.models.post_save.disconnect(dispatch_uid="delta-by-class", sender=entry)
        tidings.models.post_save.disconnect(dispatch_uid="delta-by-name", sender=entry)
    assert not tidings.models.post_save.has_listeners(entry)


# -- Django as the oracle ------------------------------------------------------------------


def _django_model(registry: Any, app_label: str, name: str) -> type:
    """Define a Django model class registered in ``registry`` only."""
    from django.db import models as django_models

    meta = type("Meta", (), {"app_label": app_label, "apps": registry})
    return type(name, (django_models.Model,), {"__module__": __name__, "Meta": meta})


def _run_scenario(
    connect: Callable[..., object],
    disconnect: Callable[..., object],
    send: Callable[[type], object],
    define: Callable[[str, str], type],
) -> list[object]:
    """Run one sequence of lazy operations and record every observable result."""
    seen: list[object] = []
    seen.append(connect(handler, sender="shop.Item"))
    seen.append(connect(other, sender="shop.ITEM", dispatch_uid="uid"))
    seen.append(connect(handler, sender="shop.item", dispatch_uid="uid"))
    seen.append(disconnect(handler, sender="shop.Item"))
    item = define("shop", "Item")
    send(item)
    seen.append(list(calls))
    calls.clear()
    seen.append(connect(handler, sender="shop.Item"))
    send(item)
    seen.append(list(calls))
    calls.clear()
    seen.append(disconnect(other, sender="shop.Item", dispatch_uid="uid"))
    seen.append(disconnect(handler, sender="shop.Item"))
    send(item)
    seen.append(list(calls))
    seen.append(connect(handler, sender=item))
    seen.append(disconnect(handler, sender=item))
    seen.append(disconnect(handler, sender=item))
    for bad in ["invalid", "a.b.c"]:
        try:
            connect(handler, sender=bad)
        except ValueError as exc:
            seen.append(str(exc))
    return seen


def test_lazy_senders_match_django() -> None:
    """Connect/disconnect results and dispatch with lazy senders match Django's ModelSignal."""
    from tests.oracle import setup_django

    setup_django()
    from django.apps.registry import Apps as DjangoApps
    from django.db.models.signals import post_save as django_post_save

    django_registry = DjangoApps(installed_apps=[])
    django_seen = _run_scenario(
        lambda *a, **k: django_post_save.connect(*a, apps=django_registry, **k),
        lambda *a, **k: django_post_save.disconnect(*a, apps=django_registry, **k),
        lambda sender: django_post_save.send(sender),
        lambda label, name: _django_model(django_registry, label, name),
    )
    ours = ModelSignal(use_caching=True, name="post_save")

    def define(label: str, name: str) -> type:
        cls = model(name)
        apps.register_model(label, cls)
        return cls

    our_seen = _run_scenario(
        ours.connect, ours.disconnect, lambda sender: ours.send(sender), define
    )
    assert our_seen == django_seen
    assert django_seen[4] == ["other:Item"]  # the scenario exercised real dispatch


def test_check_messages_match_django() -> None:
    """The E001 reasons for a missing app and a missing model read as Django's do."""
    from tests.oracle import setup_django

    setup_django()
    from django.apps.registry import Apps as DjangoApps
    from django.core.checks.model_checks import _check_lazy_references
    from django.db.models.signals import post_save as django_post_save

    django_registry = DjangoApps(installed_apps=["tests.oracle.lifecycle"])
    apps.populate(["tests.oracle.lifecycle"])
    for sender in ["nosuchapp.Thing", "lifecycle.Nope"]:
        django_post_save.connect(handler, sender=sender, apps=django_registry)
        tidings.models.post_save.connect(handler, sender=sender)
    django_messages = [e.msg for e in _check_lazy_references(django_registry)]
    our_messages = [m.msg for m in apps.check()]

    def tail(message: str) -> str:
        return message.split(" was connected to ", 1)[1]

    assert [m.id for m in apps.check()] == ["signals.E001"] * 2
    assert sorted(map(tail, our_messages)) == sorted(map(tail, django_messages))
    assert len(django_messages) == 2


def test_empty_reference_parts_are_refused_unlike_django() -> None:
    """'blog.' and '.Post' raise ValueError here; Django accepts them and waits forever."""
    from tests.oracle import setup_django

    setup_django()
    from django.db.models.utils import make_model_tuple

    assert make_model_tuple("blog.") == ("blog", "")
    assert make_model_tuple(".Post") == ("", "post")
    for reference in ["blog.", ".Post"]:
        with pytest.raises(ValueError, match="Invalid model reference"):
            tidings.models.post_save.connect(handler, sender=reference)


# -- random operation sequences against Django ---------------------------------------------

MODEL_NAMES = [("shop", "Item"), ("shop", "Order"), ("blog", "Post")]
log: list[tuple[object, str, str]] = []


def _recorder(name: str) -> Callable[..., None]:
    def record(signal: object, sender: type, **kwargs: Any) -> None:
        log.append((signal, name, sender.__name__))

    record.__name__ = record.__qualname__ = name
    return record


RECORDERS = [_recorder(f"r{i}") for i in range(3)]


class LazySenderMachine(RuleBasedStateMachine):
    """Drive tidings' and Django's ModelSignal through the same lazy operations."""

    def __init__(self) -> None:
        super().__init__()
        from tests.oracle import setup_django

        setup_django()
        from django.apps.registry import Apps as DjangoApps
        from django.db.models.signals import ModelSignal as DjangoModelSignal

        self.django_apps = DjangoApps(installed_apps=[])
        self.django_signal = DjangoModelSignal(use_caching=True)
        self.our_apps = Apps()
        self.our_signal = ModelSignal(use_caching=True, name="machine")
        self.models: dict[tuple[str, str], tuple[type, type]] = {}

    def _reference(self, index: int, upper: bool) -> str:
        label, name = MODEL_NAMES[index]
        return f"{label}.{name.upper() if upper else name}"

    @rule(
        receiver=st.integers(0, 2),
        model=st.integers(0, 2),
        upper=st.booleans(),
        uid=st.sampled_from([None, "uid"]),
        connect=st.booleans(),
    )
    def lazy(self, receiver: int, model: int, upper: bool, uid: str | None, connect: bool) -> None:
        """Connect or disconnect a receiver with a string sender on both sides."""
        reference = self._reference(model, upper)
        method = "connect" if connect else "disconnect"
        theirs = getattr(self.django_signal, method)(
            RECORDERS[receiver], sender=reference, dispatch_uid=uid, apps=self.django_apps
        )
        ours = getattr(self.our_signal, method)(
            RECORDERS[receiver], sender=reference, dispatch_uid=uid, apps=self.our_apps
        )
        assert ours == theirs

    @rule(receiver=st.integers(0, 2), model=st.integers(0, 2), connect=st.booleans())
    def by_class(self, receiver: int, model: int, connect: bool) -> None:
        """Connect or disconnect a receiver with a registered model class as sender."""
        key = MODEL_NAMES[model]
        if key not in self.models:
            return
        theirs_model, our_model = self.models[key]
        method = "connect" if connect else "disconnect"
        theirs = getattr(self.django_signal, method)(RECORDERS[receiver], sender=theirs_model)
        ours = getattr(self.our_signal, method)(RECORDERS[receiver], sender=our_model)
        assert ours == theirs

    @rule(model=st.integers(0, 2))
    def register(self, model: int) -> None:
        """Define the model on both sides, which resolves what waits for it."""
        key = MODEL_NAMES[model]
        if key in self.models:
            return
        theirs = _django_model(self.django_apps, *key)
        ours = type(key[1], (), {})
        self.our_apps.register_model(key[0], ours)
        self.models[key] = (theirs, ours)

    @invariant()
    def same_dispatch(self) -> None:
        """Every registered model reaches the same receivers, in the same order."""
        for theirs_model, our_model in self.models.values():
            log.clear()
            self.django_signal.send(theirs_model)
            theirs = [(name, sender) for _, name, sender in log]
            log.clear()
            self.our_signal.send(our_model)
            ours = [(name, sender) for _, name, sender in log]
            log.clear()
            assert ours == theirs


LazySenderMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=15, deadline=None
)
TestLazySendersAgainstDjango = LazySenderMachine.TestCase
