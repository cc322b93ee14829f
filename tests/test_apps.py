"""The app registry: app configs, populate(), model lookups, lazy operations, check()."""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

import tidings.apps
from tests.apps_fixtures import EVENTS, forget_modules
from tidings import TidingsError
from tidings.apps import (
    AppConfig,
    AppRegistryNotReady,
    Apps,
    CheckMessage,
    CheckWarning,
    ImproperlyConfigured,
    RegistryError,
    apps,
    make_model_key,
    register_check,
)

FIX = "tests.apps_fixtures"


@pytest.fixture(autouse=True)
def registry() -> Iterator[Apps]:
    """The default registry, emptied for the test and restored afterwards."""
    forget_modules()
    with apps.isolated() as isolated:
        yield isolated
    forget_modules()


def model(name: str) -> type:
    """A fresh class standing for a model."""
    return type(name, (), {})


# -- AppConfig.create ----------------------------------------------------------------------


def test_module_entry_uses_the_only_config_of_its_apps_module() -> None:
    """A module entry whose apps module defines one config gets that config."""
    config = AppConfig.create(f"{FIX}.alpha")
    assert type(config).__name__ == "AlphaConfig"
    assert (config.name, config.label, config.verbose_name) == (
        f"{FIX}.alpha",
        "alpha",
        "Alpha app",
    )
    assert config.module.__name__ == f"{FIX}.alpha"
    assert config.path == os.path.dirname(str(config.module.__file__))
    assert config.models_module is None
    assert config.apps is None


def test_module_entry_without_apps_module_gets_a_plain_config() -> None:
    """A module entry without an apps module gets AppConfig, labelled by its last component."""
    config = AppConfig.create(f"{FIX}.beta")
    assert type(config) is AppConfig
    assert (config.label, config.verbose_name) == ("beta", "Beta")


def test_default_true_config_wins_among_several() -> None:
    """Among several configs, the one declaring default = True is used."""
    config = AppConfig.create(f"{FIX}.gamma")
    assert type(config).__name__ == "GammaConfig"
    assert config.label == "gamma_custom"


def test_two_default_configs_are_an_error_naming_both() -> None:
    """Two configs declaring default = True raise ImproperlyConfigured naming both."""
    with pytest.raises(ImproperlyConfigured) as info:
        AppConfig.create(f"{FIX}.twodefaults")
    message = str(info.value)
    assert f"'{FIX}.twodefaults.apps'" in message
    assert "'FirstConfig'" in message
    assert "'SecondConfig'" in message


def test_several_configs_without_default_fall_back_to_a_plain_config() -> None:
    """Several candidate configs and no default give a plain AppConfig for the module."""
    config = AppConfig.create(f"{FIX}.nodefault")
    assert type(config) is AppConfig
    assert config.label == "nodefault"


def test_configs_imported_into_the_apps_module_are_not_candidates() -> None:
    """Only configs defined in the app's apps module count, not ones imported into it."""
    config = AppConfig.create(f"{FIX}.ownconfig")
    assert type(config).__name__ == "OwnConfig"
    assert (config.name, config.label) == (f"{FIX}.ownconfig", "own_label")


def test_class_path_entry_uses_that_config() -> None:
    """A dotted path to an AppConfig subclass uses that class and its name."""
    config = AppConfig.create(f"{FIX}.gamma.apps.GammaAltConfig")
    assert type(config).__name__ == "GammaAltConfig"
    assert (config.name, config.label) == (f"{FIX}.gamma", "gamma_alt")


def test_class_path_entry_outside_the_apps_module() -> None:
    """A config class may live in any module when named by its full path."""
    config = AppConfig.create(f"{FIX}.byclass.configs.ByClassConfig")
    assert (config.name, config.label) == (f"{FIX}.byclass", "byclass")


def test_missing_class_is_an_error_listing_the_choices() -> None:
    """A class path whose class is missing names the module, the class and the choices."""
    with pytest.raises(ImproperlyConfigured) as info:
        AppConfig.create(f"{FIX}.byclass.configs.ByClasConfig")
    message = str(info.value)
    assert f"module '{FIX}.byclass.configs' does not contain a 'ByClasConfig' class" in message
    assert "Choices are: 'ByClassConfig', 'NoNameConfig', 'WrongNameConfig'." in message


def test_class_path_to_a_non_config_is_an_error() -> None:
    """A class path naming something that is not an AppConfig subclass is refused."""
    with pytest.raises(ImproperlyConfigured, match="NotAConfig' isn't a subclass of AppConfig"):
        AppConfig.create(f"{FIX}.byclass.configs.NotAConfig")


def test_config_without_name_is_an_error() -> None:
    """A config class named by path must say which app it configures."""
    with pytest.raises(ImproperlyConfigured, match="NoNameConfig must supply a 'name'"):
        AppConfig.create(f"{FIX}.byclass.configs.NoNameConfig")


def test_config_with_unimportable_name_is_an_error() -> None:
    """A config whose name cannot be imported says which attribute to fix."""
    with pytest.raises(ImproperlyConfigured) as info:
        AppConfig.create(f"{FIX}.byclass.configs.WrongNameConfig")
    assert f"Check that '{FIX}.byclass.configs.WrongNameConfig.name' is correct" in str(info.value)


@pytest.mark.parametrize("entry", ["no_such_app_xyz", f"{FIX}.nope", f"{FIX}.nope.apps.Cfg"])
def test_unimportable_entry_is_an_error_naming_it(entry: str) -> None:
    """An entry that is neither a module nor a config path raises a TidingsError naming it."""
    with pytest.raises(ImproperlyConfigured) as info:
        AppConfig.create(entry)
    assert f"'{entry}'" in str(info.value)
    assert isinstance(info.value, TidingsError)


def test_misspelt_app_module_says_the_module_was_not_found() -> None:
    """A lower-case last part that is neither a module nor a class is a missing module."""
    with pytest.raises(ImproperlyConfigured) as info:
        AppConfig.create(f"{FIX}.alpah")
    assert str(info.value) == (
        f"Cannot import the installed app '{FIX}.alpah': no module named '{FIX}.alpah'. "
        f"Did you mean '{FIX}.alpha'?"
    )


def test_missing_app_module_without_a_close_match_gives_no_hint() -> None:
    """A missing module with no similar sibling is reported without a guess."""
    with pytest.raises(ImproperlyConfigured) as info:
        apps.populate([f"{FIX}.zzzzzzzz"])
    assert str(info.value).endswith(f"no module named '{FIX}.zzzzzzzz'.")


def test_import_error_inside_an_app_propagates_unchanged() -> None:
    """A missing dependency inside an app is reported as itself, not as a wrong entry."""
    with pytest.raises(ModuleNotFoundError) as info:
        AppConfig.create(f"{FIX}.broken")
    assert info.value.name == f"{FIX}.no_such_dependency"


def test_invalid_label_is_an_error_naming_it() -> None:
    """A label that is not a Python identifier is refused with the label and the app."""
    with pytest.raises(ImproperlyConfigured, match=r"'bad-label' of app '.*badlabel'"):
        AppConfig.create(f"{FIX}.badlabel")


# -- populate ------------------------------------------------------------------------------


def test_populate_runs_ready_after_every_models_module() -> None:
    """Phase 2 imports every models module before phase 3 calls any ready(), in order."""
    apps.populate([f"{FIX}.alpha", f"{FIX}.beta", f"{FIX}.gamma"])
    assert EVENTS == ["models:alpha", "models:beta", "ready:alpha[Comment,Post]", "ready:gamma"]
    assert (apps.apps_ready, apps.models_ready, apps.ready) == (True, True, True)
    assert apps.get_app_config("alpha").models_module is not None
    assert apps.get_app_config("gamma_custom").models_module is None


def test_flags_during_ready() -> None:
    """During ready(), apps and models are ready but the registry as a whole is not."""
    seen: list[tuple[bool, bool, bool]] = []

    class Watcher(AppConfig):
        def ready(self) -> None:
            seen.append((apps.apps_ready, apps.models_ready, apps.ready))

    assert (apps.apps_ready, apps.models_ready, apps.ready) == (False, False, False)
    apps.populate([Watcher(f"{FIX}.plain", __import__(f"{FIX}.plain", fromlist=["_"]))])
    assert seen == [(True, True, False)]


@pytest.mark.parametrize("entries", ["tests.apps_fixtures.plain", b"tests"], ids=["str", "bytes"])
def test_populate_refuses_a_bare_string(entries: str) -> None:
    """A single string is refused (it would be iterated letter by letter), naming the fix."""
    with pytest.raises(ImproperlyConfigured) as info:
        apps.populate(entries)
    assert "populate() expects a list of installed apps, not the string" in str(info.value)
    assert f"write populate([{entries!r}])" in str(info.value)
    assert not apps.apps_ready


def test_populate_is_idempotent() -> None:
    """A second populate() on a ready registry changes nothing and calls nothing."""
    apps.populate([f"{FIX}.alpha"])
    before = list(EVENTS)
    apps.populate([f"{FIX}.beta", f"{FIX}.gamma"])
    assert before == EVENTS
    assert [c.label for c in apps.get_app_configs()] == ["alpha"]


def test_populate_reentry_is_an_error_and_the_registry_can_retry() -> None:
    """populate() called from a ready() raises RegistryError; the registry is left unloaded."""
    with pytest.raises(RegistryError, match="populate\\(\\) isn't reentrant"):
        apps.populate([f"{FIX}.reenter"])
    assert (apps.apps_ready, apps.ready, apps.get_app_configs()) == (False, False, [])
    apps.populate([f"{FIX}.alpha"])
    assert apps.ready


def test_populate_reentry_from_a_models_module_is_an_error() -> None:
    """populate() called while phase 2 imports a models module raises RegistryError."""
    with pytest.raises(RegistryError, match="isn't reentrant"):
        apps.populate([f"{FIX}.reenter_models"])
    assert not apps.models_ready


def test_reentry_error_is_a_runtime_error() -> None:
    """The re-entry error is also a RuntimeError, as in Django."""
    assert issubclass(RegistryError, RuntimeError)
    assert issubclass(RegistryError, TidingsError)


def test_duplicate_labels_are_an_error_naming_both_apps() -> None:
    """Two apps with the same label raise ImproperlyConfigured naming the label and both apps."""
    with pytest.raises(ImproperlyConfigured) as info:
        apps.populate([f"{FIX}.dup_one.blog", f"{FIX}.dup_two.blog"])
    message = str(info.value)
    assert "duplicates: 'blog'" in message
    assert f"'{FIX}.dup_one.blog'" in message
    assert f"'{FIX}.dup_two.blog'" in message


def test_duplicate_names_are_an_error() -> None:
    """The same app installed twice under two labels is refused."""
    with pytest.raises(ImproperlyConfigured, match="names aren't unique"):
        apps.populate([f"{FIX}.gamma", f"{FIX}.gamma.apps.GammaAltConfig"])


def test_failed_populate_rolls_back_and_can_be_retried() -> None:
    """When an entry fails, no app stays installed and a corrected call succeeds."""
    with pytest.raises(ImproperlyConfigured):
        apps.populate([f"{FIX}.beta", f"{FIX}.nope"])
    assert apps.get_app_configs() == []
    assert not apps.apps_ready
    apps.populate([f"{FIX}.beta"])
    assert apps.is_installed(f"{FIX}.beta")


def test_concurrent_populate_runs_ready_once() -> None:
    """Threads that call populate() together see one population and one ready() call."""
    calls: list[int] = []

    class Slow(AppConfig):
        def ready(self) -> None:
            calls.append(1)
            time.sleep(0.05)

    config = Slow(f"{FIX}.plain", __import__(f"{FIX}.plain", fromlist=["_"]))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            apps.populate([config])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert (calls, errors, apps.ready) == ([1], [], True)


def test_other_threads_can_register_models_during_populate() -> None:
    """A ready() that waits for a thread registering a model does not deadlock."""
    post = model("Post")
    finished: list[bool] = []

    class Spawner(AppConfig):
        def ready(self) -> None:
            worker = threading.Thread(target=lambda: apps.register_model("blog", post))
            worker.start()
            worker.join(timeout=5)
            finished.append(not worker.is_alive())

    apps.populate([Spawner(f"{FIX}.plain", __import__(f"{FIX}.plain", fromlist=["_"]))])
    assert finished == [True]
    assert apps.get_model("blog.Post") is post


def test_registry_created_with_installed_apps_is_populated() -> None:
    """Apps(installed_apps) populates at once; its configs point back to it."""
    registry = Apps([f"{FIX}.plain"])
    assert registry.ready
    assert registry.get_app_config("plain").apps is registry


# -- lookups -------------------------------------------------------------------------------


def test_get_app_configs_in_installation_order() -> None:
    """get_app_configs() lists configs in installed-apps order."""
    apps.populate([f"{FIX}.gamma", f"{FIX}.alpha", f"{FIX}.plain"])
    assert [c.label for c in apps.get_app_configs()] == ["gamma_custom", "alpha", "plain"]
    assert apps.get_app_config("alpha").name == f"{FIX}.alpha"


def test_get_app_config_unknown_label() -> None:
    """An unknown label raises LookupError, with a hint when a full app name was given."""
    apps.populate([f"{FIX}.alpha"])
    with pytest.raises(LookupError, match=r"^No installed app with label 'nope'\.$"):
        apps.get_app_config("nope")
    with pytest.raises(LookupError, match="Did you mean 'alpha'"):
        apps.get_app_config(f"{FIX}.alpha")


def test_get_model_variants() -> None:
    """get_model accepts (label, name) and 'label.Name', with the name in any case."""
    apps.populate([f"{FIX}.alpha", f"{FIX}.beta"])
    post = apps.get_model("alpha", "Post")
    assert post.__name__ == "Post"
    assert apps.get_model("alpha", "post") is post
    assert apps.get_model("alpha.POST") is post
    assert apps.get_app_config("alpha").get_model("pOsT") is post
    assert apps.get_app_config("alpha").get_models() == [post]
    assert [m.__name__ for m in apps.get_models()] == ["Post", "Comment"]


def test_get_model_errors() -> None:
    """Unknown models and apps raise LookupError naming them; bad references ValueError."""
    apps.populate([f"{FIX}.alpha"])
    with pytest.raises(LookupError, match=r"^App 'alpha' doesn't have a 'Nope' model\.$"):
        apps.get_model("alpha", "Nope")
    with pytest.raises(LookupError, match=r"^App 'alpha' doesn't have a 'Nope' model\.$"):
        apps.get_app_config("alpha").get_model("Nope")
    with pytest.raises(LookupError, match=r"^No installed app with label 'zzz'\.$"):
        apps.get_model("zzz.Post")
    for bad in ["alpha", "alpha.Post.x", ".Post"]:
        with pytest.raises(ValueError, match=r"must be of the form 'app_label\.ModelName'"):
            apps.get_model(bad)


def test_app_config_outside_a_registry_has_no_models() -> None:
    """Asking a config that is not installed for its models raises AppRegistryNotReady."""
    config = AppConfig.create(f"{FIX}.beta")
    with pytest.raises(AppRegistryNotReady, match="'beta' is not installed"):
        config.get_models()


def test_get_containing_app_config() -> None:
    """The innermost installed app holding a module is found; other modules give None."""
    assert apps.get_containing_app_config(f"{FIX}.outer.models") is None
    apps.populate([f"{FIX}.outer", f"{FIX}.outer.inner", f"{FIX}.alpha"])
    find = apps.get_containing_app_config
    assert find(f"{FIX}.outer").label == "outer"  # type: ignore[union-attr]
    assert find(f"{FIX}.outer.models").label == "outer"  # type: ignore[union-attr]
    assert find(f"{FIX}.outer.inner").label == "inner"  # type: ignore[union-attr]
    assert find(f"{FIX}.outer.inner.deep.models").label == "inner"  # type: ignore[union-attr]
    assert find(f"{FIX}.outerwear.models") is None
    assert find("elsewhere") is None


def test_is_installed() -> None:
    """is_installed() matches full app names, not labels."""
    apps.populate([f"{FIX}.gamma"])
    assert apps.is_installed(f"{FIX}.gamma")
    assert not apps.is_installed("gamma_custom")


# -- register_model ------------------------------------------------------------------------


def test_register_model_twice_is_a_no_op() -> None:
    """Registering the same class again changes nothing."""
    post = model("Post")
    apps.register_model("blog", post)
    apps.register_model("blog", post)
    assert apps.get_models() == [post]


def test_conflicting_model_is_an_error_naming_both() -> None:
    """A different class with the same name in the same app raises RegistryError."""
    first, second = model("Post"), model("POST")
    apps.register_model("blog", first)
    with pytest.raises(RegistryError) as info:
        apps.register_model("blog", second)
    message = str(info.value)
    assert "Conflicting 'post' models in application 'blog'" in message
    assert "test_apps.Post and " in message
    assert "test_apps.POST." in message
    assert apps.get_model("blog.post") is first


def test_models_of_uninstalled_apps_are_registered() -> None:
    """A model may be registered under a label that no installed app has."""
    post = model("Post")
    apps.register_model("blog", post)
    assert apps.get_model("blog", "Post") is post
    assert apps.get_registered_model("blog", "POST") is post
    assert apps.get_registered_model("blog", "Nope") is None


# -- lazy operations -----------------------------------------------------------------------


def test_lazy_operation_waits_for_its_model() -> None:
    """An operation on an unregistered model runs when it is registered, with the class."""
    calls: list[tuple[type, ...]] = []
    apps.lazy_model_operation(lambda *m: calls.append(m), ("blog", "Post"))
    assert calls == []
    post = model("Post")
    apps.register_model("blog", post)
    assert calls == [(post,)]
    apps.register_model("blog", model("Other"))
    assert calls == [(post,)]


def test_lazy_operation_runs_at_once_when_registered() -> None:
    """An operation on a registered model runs immediately and leaves nothing pending."""
    post = model("Post")
    apps.register_model("blog", post)
    calls: list[tuple[type, ...]] = []
    apps.lazy_model_operation(lambda *m: calls.append(m), "blog.POST")
    assert calls == [(post,)]
    assert apps.check() == []


@pytest.mark.parametrize("order", ["first-then-second", "second-then-first"])
def test_lazy_operation_with_two_models(order: str) -> None:
    """With two keys the operation runs once both exist, with classes in key order."""
    calls: list[tuple[type, ...]] = []
    apps.lazy_model_operation(lambda *m: calls.append(m), ("blog", "post"), ("shop", "item"))
    post, item = model("Post"), model("Item")
    pairs = [("blog", post), ("shop", item)]
    if order == "second-then-first":
        pairs.reverse()
    apps.register_model(*pairs[0])
    assert calls == []
    apps.register_model(*pairs[1])
    assert calls == [(post, item)]


def test_lazy_operations_on_one_model_run_in_order() -> None:
    """Several operations waiting on one model run in the order they were added."""
    calls: list[str] = []
    for name in "abc":
        apps.lazy_model_operation(lambda _m, name=name: calls.append(name), ("blog", "post"))
    apps.register_model("blog", model("Post"))
    assert calls == ["a", "b", "c"]


def test_failing_operation_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    """If operations raise, the rest still run; the first error propagates, later ones log."""
    calls: list[str] = []

    def fail(name: str) -> object:
        def operation(_model: type) -> None:
            calls.append(name)
            raise KeyError(name)

        return operation

    apps.lazy_model_operation(fail("a"), ("blog", "post"))  # type: ignore[arg-type]
    apps.lazy_model_operation(fail("b"), ("blog", "post"))  # type: ignore[arg-type]
    apps.lazy_model_operation(lambda _m: calls.append("c"), ("blog", "post"))
    with pytest.raises(KeyError, match="a"):
        apps.register_model("blog", model("Post"))
    assert calls == ["a", "b", "c"]
    assert [r.name for r in caplog.records] == ["tidings.apps"]


@pytest.mark.parametrize("key", [("blog",), ("blog", ""), ("", "post"), "blog", "a.b.c", 3])
def test_malformed_keys_are_refused(key: object) -> None:
    """Keys must be two non-empty parts."""
    with pytest.raises(ValueError, match="Invalid model reference"):
        apps.lazy_model_operation(print, key)  # type: ignore[arg-type]


def test_make_model_key_lowercases_the_model_only() -> None:
    """The model name is lower-cased; the app label is kept exactly."""
    assert make_model_key("Blog.Post") == ("Blog", "post")
    assert make_model_key(("blog", "POST")) == ("blog", "post")


def test_concurrent_registrations_run_every_operation_once() -> None:
    """Operations added while other threads register models each run exactly once."""
    names = [f"m{i}" for i in range(40)]
    classes = {name: model(name) for name in names}
    runs: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def record(found: type) -> None:
        with lock:
            runs.append(found.__name__)

    def add_operations(part: list[str]) -> None:
        barrier.wait()
        for name in part:
            apps.lazy_model_operation(record, ("blog", name))

    def register(part: list[str]) -> None:
        barrier.wait()
        for name in part:
            apps.register_model("blog", classes[name])

    threads = [
        threading.Thread(target=add_operations, args=(names[::2],)),
        threading.Thread(target=add_operations, args=(names[1::2],)),
        threading.Thread(target=register, args=(names[:20],)),
        threading.Thread(target=register, args=(names[20:],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(runs) == sorted(names)
    assert apps.check() == []


# -- check() -------------------------------------------------------------------------------


def pending_operation(_model: type) -> None:
    """A lazy operation for check() to describe."""


def test_check_reports_an_app_that_is_not_installed() -> None:
    """A reference to an unknown app is reported as 'isn't installed'."""
    apps.lazy_model_operation(pending_operation, ("blog", "post"))
    assert apps.check() == [
        CheckMessage(
            "models.E022",
            "The operation 'pending_operation' contains a lazy reference to 'blog.post', but "
            "app 'blog' isn't installed.",
            pending_operation,
        )
    ]


def test_check_reports_a_missing_model_of_a_known_app() -> None:
    """A reference to an unknown model of an installed app says the app lacks it."""
    apps.populate([f"{FIX}.alpha"])
    apps.lazy_model_operation(pending_operation, ("alpha", "nope"), description="Something")
    (message,) = apps.check()
    assert message.msg == "Something 'alpha.nope', but app 'alpha' doesn't provide model 'nope'."
    assert str(message) == f"(models.E022) {message.msg}"


def test_check_counts_apps_known_only_by_their_models() -> None:
    """An app label with registered models, though not installed, is not reported missing."""
    apps.register_model("blog", model("Post"))
    apps.lazy_model_operation(pending_operation, ("blog", "nope"))
    assert "app 'blog' doesn't provide model 'nope'" in apps.check()[0].msg


def test_check_can_raise() -> None:
    """check(raise_on_error=True) raises ImproperlyConfigured listing every message."""
    apps.check(raise_on_error=True)
    apps.lazy_model_operation(pending_operation, ("blog", "post"))
    apps.lazy_model_operation(pending_operation, ("shop", "item"), check_id="x.E1")
    with pytest.raises(ImproperlyConfigured) as info:
        apps.check(raise_on_error=True)
    assert "(models.E022) The operation" in str(info.value)
    assert "(x.E1) The operation 'pending_operation' contains a lazy reference to 'shop.item'" in (
        str(info.value)
    )


def test_populate_warns_about_a_lazy_reference_that_did_not_resolve() -> None:
    """When populate() finishes, each unresolved reference is a CheckWarning at the caller."""
    apps.lazy_model_operation(pending_operation, ("profles", "user"))
    with pytest.warns(CheckWarning) as record:
        apps.populate([f"{FIX}.alpha"])
    (warning,) = record
    assert str(warning.message) == (
        "(models.E022) The operation 'pending_operation' contains a lazy reference to "
        "'profles.user', but app 'profles' isn't installed."
    )
    assert warning.filename == __file__
    assert apps.ready
    assert [m.msg for m in apps.check()] == [str(warning.message).partition(" ")[2]]


def test_populate_is_silent_when_every_reference_resolved() -> None:
    """A reference to a model that a models module registers gives no warning."""
    apps.lazy_model_operation(pending_operation, ("alpha", "post"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apps.populate([f"{FIX}.alpha"])
    assert apps.check() == []


def test_check_warning_can_be_made_an_error() -> None:
    """An error filter on CheckWarning makes the unresolved reference stop start-up."""
    apps.lazy_model_operation(pending_operation, ("blog", "pots"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckWarning)
        with pytest.raises(CheckWarning, match=r"'blog\.pots'"):
            apps.populate([f"{FIX}.plain"])
    assert isinstance(CheckWarning("x"), UserWarning)


def test_receiver_lost_by_ready_is_reported_when_populate_finishes() -> None:
    """A nested function that ready() connects with @receiver and drops warns at populate()."""
    import inspect

    import tests.apps_fixtures.forgetful.apps as forgetful_apps
    from tests.apps_fixtures.forgetful import order_placed
    from tidings import UncalledReceiverWarning

    source = inspect.getsource(forgetful_apps).splitlines()
    line = next(n for n, text in enumerate(source, 1) if text.endswith("# lost receiver"))
    with pytest.warns(UncalledReceiverWarning) as record:
        apps.populate([f"{FIX}.forgetful"])
    (warning,) = record
    assert "ForgetfulConfig.ready.<locals>.lost" in str(warning.message)
    assert warning.filename == forgetful_apps.__file__
    assert warning.lineno in (line, line + 1)  # the decorator's line (the def's on 3.10)
    order_placed.send(None)
    assert EVENTS == ["kept"]


def test_populate_leaves_earlier_deaths_to_their_signal() -> None:
    """A receiver that died before populate() is reported by its signal, not by populate()."""
    import gc

    from tidings import Signal, UncalledReceiverWarning

    signal = Signal(name="earlier")
    signal.connect(lambda **kwargs: None)
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apps.populate([f"{FIX}.plain"])
    with pytest.warns(UncalledReceiverWarning, match="<Signal 'earlier'>"):
        signal.send(None)


def test_registered_checks_run_in_check_and_at_populate() -> None:
    """A check given to register_check() adds its messages to check() and to populate()."""
    seen: list[Apps] = []

    def no_widgets(registry: Apps) -> list[CheckMessage]:
        seen.append(registry)
        return [CheckMessage("widgets.E001", "No widget is installed.")]

    assert register_check(no_widgets) is no_widgets
    register_check(no_widgets)  # a second registration changes nothing
    try:
        with pytest.warns(CheckWarning, match=r"^\(widgets.E001\) No widget is installed\.$"):
            apps.populate([f"{FIX}.plain"])
        assert apps.check() == [CheckMessage("widgets.E001", "No widget is installed.")]
        assert seen == [apps, apps]
    finally:
        tidings.apps._checks.remove(no_widgets)


def test_pending_model_keys_lists_what_lazy_operations_wait_for() -> None:
    """pending_model_keys() names each model still awaited, and forgets it once registered."""
    apps.lazy_model_operation(pending_operation, "blog.Post")
    apps.lazy_model_operation(pending_operation, ("shop", "item"))
    assert sorted(apps.pending_model_keys()) == [("blog", "post"), ("shop", "item")]
    apps.register_model("blog", model("Post"))
    assert apps.pending_model_keys() == [("shop", "item")]


# -- isolation -----------------------------------------------------------------------------


def test_isolated_swaps_the_whole_state_and_restores_it() -> None:
    """Inside isolated() the registry is empty; afterwards the earlier state is back."""
    apps.populate([f"{FIX}.alpha"])
    apps.lazy_model_operation(pending_operation, ("blog", "post"))
    with apps.isolated() as inner:
        assert inner is apps
        assert (apps.ready, apps.get_app_configs(), apps.get_models(), apps.check()) == (
            False,
            [],
            [],
            [],
        )
        apps.register_model("blog", model("Post"))
        with apps.isolated():
            assert apps.get_models() == []
        assert len(apps.get_models()) == 1
    assert apps.ready
    assert [m.__name__ for m in apps.get_models()] == ["Post"]
    assert apps.get_model("alpha.Post").__module__ == f"{FIX}.alpha.models"
    assert len(apps.check()) == 1


def test_isolated_restores_after_an_error() -> None:
    """The earlier state comes back even when the block raises."""
    post = model("Post")
    apps.register_model("blog", post)
    with pytest.raises(KeyError), apps.isolated():
        raise KeyError("boom")
    assert apps.get_models() == [post]


def test_isolated_can_populate() -> None:
    """isolated(installed_apps) populates the fresh state."""
    with apps.isolated([f"{FIX}.plain"]):
        assert apps.ready
        assert apps.is_installed(f"{FIX}.plain")
    assert not apps.ready


def test_module_exports_are_sorted_and_complete() -> None:
    """tidings.apps.__all__ is sorted and lists every public name."""
    public = {
        name
        for name, value in vars(tidings.apps).items()
        if not name.startswith("_")
        and getattr(value, "__module__", tidings.apps.__name__) == tidings.apps.__name__
        and not isinstance(value, type(tidings.apps))
    } - {"annotations", "logger", "ModelKey"} | {"CheckFunction"}
    assert tidings.apps.__all__ == sorted(tidings.apps.__all__)
    assert set(tidings.apps.__all__) == public
