"""The app registry: installed apps, their models, and lazy model references.

An *app* is an importable package listed in an ``INSTALLED_APPS``-style sequence and
described by an :class:`AppConfig`. :meth:`Apps.populate` loads them in Django's three
phases:

1. import each entry and build its :class:`AppConfig` (``apps_ready`` becomes true);
2. import each app's ``models`` submodule, if it has one, in order (``models_ready``);
3. call each config's :meth:`AppConfig.ready`, in order (``ready``).

Every ``ready()`` therefore runs after every ``models`` module has been imported, which is
where an app should import the module that connects its receivers.

Models are registered with :meth:`Apps.register_model` under ``(app_label,
ClassName.lower())``, by an ORM integration (``tidings.sqlalchemy``) or by hand. Registration
does not require the app to be installed (like a Django model declaring ``app_label``), and a
project that never calls ``populate()`` still gets lazy model references.

:meth:`Apps.lazy_model_operation` runs a function once the models it names are registered, at
once when they already are. Operations still waiting are what :meth:`Apps.check` reports, in
the spirit of Django's ``signals.E001``, together with what the checks of integrations
(:func:`register_check`) find. When ``populate()`` finishes, every message ``check()`` would
return is also issued as a :class:`CheckWarning`: a typo in a lazy sender is reported at
start-up, not only when someone thinks of calling ``check()``.

Threads: ``populate()`` is serialised by its own lock (a second thread waits, then finds the
registry ready). Another lock guards the bookkeeping of models and pending operations and is
never held while user code runs: lazy operations are taken off the registry under it and
called after it is released. Lookups take no lock.

Tests: ``with apps.isolated():`` swaps the registry's whole state (apps, models, pending
operations, flags) for a fresh empty one and restores it afterwards. It works on the default
:data:`apps` object, which is the one every model signal uses unless given ``apps=``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator

from tidings._appconfig import (
    AppConfig,
    AppRegistry,
    AppRegistryNotReady,
    CheckMessage,
    CheckWarning,
    ImproperlyConfigured,
    ModelKey,
    Operation,
    RegistryError,
    RegistryState,
    make_model_key,
)
from tidings._errors import TidingsLookupError
from tidings._index import uncalled_receivers_reported

__all__ = [
    "AppConfig",
    "AppRegistry",
    "AppRegistryNotReady",
    "Apps",
    "CheckFunction",
    "CheckMessage",
    "CheckWarning",
    "ImproperlyConfigured",
    "RegistryError",
    "apps",
    "make_model_key",
    "register_check",
]

logger = logging.getLogger("tidings.apps")

# Defined in a private module, documented and used as tidings.apps names.
for _public in (
    AppConfig,
    AppRegistry,
    AppRegistryNotReady,
    CheckMessage,
    CheckWarning,
    ImproperlyConfigured,
    RegistryError,
    make_model_key,
):
    _public.__module__ = __name__

#: A check an integration contributes: called with the registry being checked.
CheckFunction = Callable[["Apps"], Iterable[CheckMessage]]

_checks: list[CheckFunction] = []
_checks_lock = threading.Lock()

# The core cannot import an integration's library, so an integration's checks are loaded when
# its library is already imported: a project whose models are SQLAlchemy classes gets the
# SQLAlchemy checks even if it never imported tidings.sqlalchemy (the likely mistake).
_INTEGRATION_CHECKS = {"sqlalchemy": "tidings.sqlalchemy._checks"}


def register_check(check: CheckFunction) -> CheckFunction:
    """Add ``check`` to what :meth:`Apps.check` (and so ``populate()``) reports; a decorator.

    Every registry runs every registered check. Registering the same function again does
    nothing.

    Args:
        check: Called as ``check(registry)`` with the :class:`Apps` being checked; returns
            the :class:`CheckMessage` objects it finds (none when all is well).

    Returns:
        ``check`` itself.
    """
    with _checks_lock:
        if check not in _checks:
            _checks.append(check)
    return check


def _registered_checks() -> list[CheckFunction]:
    """Return the registered checks, after loading those of the integrations in use."""
    for library, module in _INTEGRATION_CHECKS.items():
        if library in sys.modules:
            try:
                importlib.import_module(module)
            except ImportError:
                # An unsupported version of the library: the integration cannot be in use,
                # so neither can the mistakes its checks look for.
                logger.debug("Checks of %s not loaded", module, exc_info=True)
    with _checks_lock:
        return list(_checks)


class Apps:
    """A registry of installed apps, registered models and pending lazy model operations."""

    def __init__(self, installed_apps: Iterable[str | AppConfig] | None = None) -> None:
        """Create a registry, populated at once when ``installed_apps`` is given.

        Args:
            installed_apps: Entries for :meth:`populate`, or None to populate later.
        """
        # Two locks: population runs user code (imports, ready()) for a long time, while
        # bookkeeping must stay quick, so a thread registering a model during another
        # thread's populate() is never blocked behind it.
        self._populate_lock = threading.RLock()
        self._lock = threading.Lock()
        self._state = RegistryState()
        if installed_apps is not None:
            self.populate(installed_apps)

    @property
    def apps_ready(self) -> bool:
        """Whether phase 1 (app configs) of :meth:`populate` has completed."""
        return self._state.apps_ready

    @property
    def models_ready(self) -> bool:
        """Whether phase 2 (``models`` modules) of :meth:`populate` has completed."""
        return self._state.models_ready

    @property
    def ready(self) -> bool:
        """Whether phase 3 (``ready()`` hooks) of :meth:`populate` has completed."""
        return self._state.ready

    def populate(self, installed_apps: Iterable[str | AppConfig]) -> None:
        """Load the installed apps, their ``models`` modules, then call their ``ready()``.

        Idempotent (a populated registry ignores later calls) and thread-safe. If a phase
        raises, the registry goes back to its state before the call, except for models that
        were registered (their modules stay imported), so the call can be retried.

        Once the ``ready()`` hooks have run, every message :meth:`check` returns is issued as
        a :class:`CheckWarning` (a lazy sender naming a model that does not exist, a receiver
        that can never be called), pointing at the caller of ``populate()``; and a receiver
        connected weakly by a ``ready()`` hook (a nested function, a lambda) that died before
        any send reached it is reported as a :class:`tidings.UncalledReceiverWarning`,
        pointing at the line that connected it.

        Args:
            installed_apps: A list (or other iterable, not a string) of module paths,
                AppConfig-subclass paths or AppConfig instances.

        Raises:
            RegistryError: If called again while this registry is being populated (from an
                app's import, a ``models`` module or a ``ready()``).
            ImproperlyConfigured: If ``installed_apps`` is a single string, an entry is wrong,
                or two apps share a label or name.
        """
        if isinstance(installed_apps, (str, bytes)):
            raise ImproperlyConfigured(
                f"populate() expects a list of installed apps, not the string "
                f"{installed_apps!r}: write populate([{installed_apps!r}])."
            )
        if self._state.ready:
            return
        with uncalled_receivers_reported():
            with self._populate_lock:
                state = self._state
                if state.ready:
                    return
                if state.loading:
                    raise RegistryError(
                        "populate() isn't reentrant: it was called while the registry was being "
                        "populated (from an app's import, a models module or a ready() method)."
                    )
                state.loading = True
                try:
                    self._populate(state, list(installed_apps))
                except BaseException:
                    state.app_configs.clear()
                    state.apps_ready = state.models_ready = False
                    raise
                finally:
                    state.loading = False
            for message in self.check():
                # stacklevel 2: the warning points at the line that called populate().
                warnings.warn(str(message), CheckWarning, stacklevel=2)

    def _populate(self, state: RegistryState, entries: list[str | AppConfig]) -> None:
        for entry in entries:
            config = entry if isinstance(entry, AppConfig) else AppConfig.create(entry)
            other = state.app_configs.get(config.label)
            if other is not None:
                raise ImproperlyConfigured(
                    f"Application labels aren't unique, duplicates: {config.label!r} (apps "
                    f"{other.name!r} and {config.name!r}); set 'label' on an AppConfig "
                    "subclass to tell them apart."
                )
            for existing in state.app_configs.values():
                if existing.name == config.name:
                    raise ImproperlyConfigured(
                        f"Application names aren't unique, duplicates: {config.name!r} "
                        f"(labels {existing.label!r} and {config.label!r})."
                    )
            config.apps = self
            state.app_configs[config.label] = config
        state.apps_ready = True
        for config in list(state.app_configs.values()):
            config.import_models()
        state.models_ready = True
        for config in list(state.app_configs.values()):
            config.ready()
        state.ready = True

    # Readers take no lock: list(dict.values()) is a single C-level copy, safe against a
    # concurrent insertion, and they must not block behind a long populate().

    def get_app_configs(self) -> list[AppConfig]:
        """Return the installed app configs in installation order."""
        return list(self._state.app_configs.values())

    def get_app_config(self, app_label: str) -> AppConfig:
        """Return the installed app config labelled ``app_label``.

        Raises:
            LookupError: If no installed app has that label.
        """
        configs = self._state.app_configs
        try:
            return configs[app_label]
        except KeyError:
            message = f"No installed app with label {app_label!r}."
            for config in list(configs.values()):
                if config.name == app_label:
                    message += f" Did you mean {config.label!r}?"
                    break
            raise TidingsLookupError(message) from None

    def is_installed(self, name: str) -> bool:
        """Whether an app with the full module path ``name`` is installed."""
        return any(config.name == name for config in self.get_app_configs())

    def get_containing_app_config(self, module_name: str) -> AppConfig | None:
        """Return the installed app whose package holds ``module_name``, or None.

        With nested apps, the innermost (longest name) wins.

        Args:
            module_name: A dotted module path, such as a model class's ``__module__``.
        """
        best: AppConfig | None = None
        for config in self.get_app_configs():
            inside = module_name == config.name or module_name.startswith(config.name + ".")
            if inside and (best is None or len(config.name) > len(best.name)):
                best = config
        return best

    def get_registered_model(self, app_label: str, model_name: str) -> type | None:
        """Return the model registered as ``(app_label, model_name)``, or None.

        Unlike :meth:`get_model` this never raises and is safe during population.
        """
        return self._state.models.get(app_label, {}).get(model_name.lower())

    def get_model(self, app_label: str, model_name: str | None = None) -> type:
        """Return a registered model, by label and name or by ``"app_label.ModelName"``.

        The model name is case-insensitive. The app need not be installed, only the model
        registered.

        Raises:
            ValueError: If a single argument is not of the form ``"app_label.ModelName"``.
            LookupError: If the app label or the model is unknown.
        """
        if model_name is None:
            app_label, model_name = make_model_key(app_label)
        model = self.get_registered_model(app_label, model_name)
        if model is not None:
            return model
        if app_label in self._state.app_configs or app_label in self._state.models:
            raise TidingsLookupError(f"App {app_label!r} doesn't have a {model_name!r} model.")
        raise TidingsLookupError(f"No installed app with label {app_label!r}.")

    def get_models(self) -> list[type]:
        """Return every registered model, grouped by app label in registration order."""
        by_app = list(self._state.models.values())
        return [model for models in by_app for model in list(models.values())]

    def _models_of(self, app_label: str) -> list[type]:
        return list(self._state.models.get(app_label, {}).values())

    def register_model(self, app_label: str, model: type) -> None:
        """Record ``model`` as ``(app_label, model.__name__.lower())`` and run what waits on it.

        Registering the same class again does nothing. Pending lazy operations run after the
        registry lock is released; if one raises, the rest still run and the first error
        propagates (later ones are logged).

        Args:
            app_label: The app the model belongs to; it need not be installed.
            model: The model class.

        Raises:
            RegistryError: If another class is already registered under the same key.
        """
        key = (app_label, model.__name__.lower())
        with self._lock:
            state = self._state
            models = state.models.setdefault(app_label, {})
            existing = models.get(key[1])
            if existing is model:
                return
            if existing is not None:
                raise RegistryError(
                    f"Conflicting {key[1]!r} models in application {app_label!r}: "
                    f"{existing.__module__}.{existing.__qualname__} and "
                    f"{model.__module__}.{model.__qualname__}."
                )
            models[key[1]] = model
            waiting = state.pending.pop(key, [])
        self._run_all([(operation, (*resolved, model)) for operation, resolved in waiting])

    def lazy_model_operation(
        self,
        function: Callable[..., object],
        *model_keys: ModelKey | str,
        description: str | None = None,
        check_id: str = "models.E022",
        obj: object = None,
    ) -> None:
        """Call ``function(*models)`` once every model in ``model_keys`` is registered.

        Runs at once when they already are. ``check()`` reports the operation while it
        waits, as ``"<description> '<app_label.model>', but <reason>."``.

        Args:
            function: Called with one model class per key, in key order.
            *model_keys: ``(app_label, model_name)`` tuples (or ``"app_label.ModelName"``).
            description: The start of the check message; defaults to
                ``"The operation '<qualname>' contains a lazy reference to"``.
            check_id: The id of the check message.
            obj: The ``obj`` of the check message; defaults to ``function``.

        Raises:
            ValueError: If a key is malformed.
        """
        keys = tuple(make_model_key(key) for key in model_keys)
        if description is None:
            name = getattr(function, "__qualname__", None) or repr(function)
            description = f"The operation {name!r} contains a lazy reference to"
        operation = Operation(
            function, keys, description, check_id, function if obj is None else obj
        )
        self._run_all([(operation, ())])

    def _run_all(self, ready: list[tuple[Operation, tuple[type, ...]]]) -> None:
        first: BaseException | None = None
        for operation, resolved in ready:
            try:
                self._advance(operation, resolved)
            except Exception as exc:
                if first is None:
                    first = exc
                else:
                    logger.error(
                        "Lazy model operation %r failed after an earlier one",
                        operation.function,
                        exc_info=exc,
                    )
        if first is not None:
            raise first

    def _advance(self, operation: Operation, resolved: tuple[type, ...]) -> None:
        while len(resolved) < len(operation.keys):
            key = operation.keys[len(resolved)]
            with self._lock:
                model = self.get_registered_model(*key)
                if model is None:
                    self._state.pending.setdefault(key, []).append((operation, resolved))
                    return
            resolved = (*resolved, model)
        operation.function(*resolved)

    def pending_model_keys(self) -> list[ModelKey]:
        """Return the ``(app_label, model_name)`` keys lazy operations still wait for."""
        with self._lock:
            return [key for key, waiting in self._state.pending.items() if waiting]

    def check(self, *, raise_on_error: bool = False) -> list[CheckMessage]:
        """Report every lazy model operation still waiting, and what integrations' checks find.

        The checks of :func:`register_check` run too; those of an integration whose library
        has been imported are loaded first (the SQLAlchemy one reports receivers connected to
        mapped classes that were never instrumented).

        Args:
            raise_on_error: Raise instead of returning when there is anything to report.

        Returns:
            The messages, sorted by text; empty when every reference resolved.

        Raises:
            ImproperlyConfigured: With every message, when ``raise_on_error`` is true.
        """
        state = self._state
        with self._lock:
            pending = [(key, list(waiting)) for key, waiting in state.pending.items()]
        messages = []
        for (app_label, model_name), waiting in pending:
            if app_label in state.app_configs or app_label in state.models:
                reason = f"app {app_label!r} doesn't provide model {model_name!r}"
            else:
                reason = f"app {app_label!r} isn't installed"
            for operation, _ in waiting:
                text = f"{operation.description} '{app_label}.{model_name}', but {reason}."
                messages.append(CheckMessage(operation.check_id, text, operation.obj))
        for check in _registered_checks():
            messages.extend(check(self))
        messages.sort(key=lambda message: message.msg)
        if raise_on_error and messages:
            raise ImproperlyConfigured(
                "The app registry's checks failed:\n" + "\n".join(map(str, messages))
            )
        return messages

    @contextlib.contextmanager
    def isolated(self, installed_apps: Iterable[str | AppConfig] | None = None) -> Iterator[Apps]:
        """Swap in a fresh empty state for the duration of a ``with`` block (for tests).

        Apps, models, pending operations and flags are all replaced, then restored on exit,
        even if the block raises. Blocks nest.

        Args:
            installed_apps: If given, populate the fresh state with these entries.

        Yields:
            This registry.
        """
        with self._lock:
            saved, self._state = self._state, RegistryState()
        try:
            if installed_apps is not None:
                self.populate(installed_apps)
            yield self
        finally:
            with self._lock:
                self._state = saved


#: The default registry, used by every model signal unless it is given ``apps=``.
apps = Apps()
