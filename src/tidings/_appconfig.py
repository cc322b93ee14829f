"""App configs: :class:`AppConfig`, the app registry's errors, records and check messages.

Beside :class:`AppConfig`: the errors the registry raises, model keys, the records it keeps
(:class:`Operation`, :class:`RegistryState`) and what its checks report (:class:`CheckMessage`).

The registry itself, :class:`tidings.apps.Apps`, lives in :mod:`tidings.apps`, which
re-exports everything public here (with the check registry). This module does not import it:
an AppConfig sees its registry through :class:`AppRegistry`, the lookups ``Apps`` provides.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import os
import pkgutil
import types
from collections.abc import Callable, Iterable
from typing import Protocol

from tidings._errors import (
    AppRegistryNotReady,
    ImproperlyConfigured,
    RegistryError,
    TidingsLookupError,
    TidingsValueError,
)
from tidings._warnings import TidingsWarning

__all__ = [
    "AppConfig",
    "AppRegistry",
    "AppRegistryNotReady",
    "CheckMessage",
    "CheckWarning",
    "ImproperlyConfigured",
    "ModelKey",
    "Operation",
    "RegistryError",
    "RegistryState",
    "make_model_key",
]

#: ``(app_label, model_name)`` with the model name lower-cased.
ModelKey = tuple[str, str]

_APPS_MODULE = "apps"
_MODELS_MODULE = "models"


class CheckWarning(TidingsWarning):
    """A problem :meth:`Apps.check` finds, reported as a warning when ``populate()`` finishes.

    Turn it into an error with ``warnings.simplefilter("error", CheckWarning)`` (or pytest's
    ``filterwarnings = ["error::tidings.apps.CheckWarning"]``), or silence it likewise.
    """


@dataclasses.dataclass(frozen=True)
class CheckMessage:
    """One problem found by :meth:`Apps.check`.

    Attributes:
        id: A stable identifier, such as ``"signals.E001"``.
        msg: The human-readable description.
        obj: What the message is about (for a lazy receiver: its qualified name).
    """

    id: str
    msg: str
    obj: object = None

    def __str__(self) -> str:
        return f"({self.id}) {self.msg}"


@dataclasses.dataclass
class Operation:
    """A lazy model operation and what ``check()`` should say while it waits."""

    function: Callable[..., object]
    keys: tuple[ModelKey, ...]
    description: str
    check_id: str
    obj: object


@dataclasses.dataclass
class RegistryState:
    """Everything ``isolated()`` swaps out; one object so a swap is a single assignment."""

    app_configs: dict[str, AppConfig] = dataclasses.field(default_factory=dict)
    models: dict[str, dict[str, type]] = dataclasses.field(default_factory=dict)
    # Each waiting entry is an operation plus the model classes resolved so far.
    pending: dict[ModelKey, list[tuple[Operation, tuple[type, ...]]]] = dataclasses.field(
        default_factory=dict
    )
    apps_ready: bool = False
    models_ready: bool = False
    ready: bool = False
    loading: bool = False


def make_model_key(reference: str | tuple[str, str]) -> ModelKey:
    """Turn ``"app_label.ModelName"`` or ``(app_label, model_name)`` into a registry key.

    Args:
        reference: The lazy model reference.

    Returns:
        ``(app_label, model_name)`` with the model name lower-cased; the app label is kept
        as given (it is matched exactly, as in Django).

    Raises:
        ValueError: If the reference is not exactly two non-empty parts.
    """
    parts = reference.split(".") if isinstance(reference, str) else reference
    if not (
        isinstance(parts, (list, tuple))
        and len(parts) == 2
        and all(isinstance(part, str) and part for part in parts)
    ):
        raise TidingsValueError(
            f"Invalid model reference {reference!r}. String model references must be of the "
            "form 'app_label.ModelName'."
        )
    return parts[0], parts[1].lower()


def _has_submodule(module: types.ModuleType, name: str) -> bool:
    """Whether the package ``module`` has a submodule ``name``, without importing it."""
    if not hasattr(module, "__path__"):
        return False
    return importlib.util.find_spec(f"{module.__name__}.{name}") is not None


def _is_missing(exc: ModuleNotFoundError, dotted: str) -> bool:
    """Whether ``exc`` says ``dotted`` itself (or a parent package) does not exist.

    A ModuleNotFoundError raised by an import *inside* the module is a real error and must
    propagate rather than be mistaken for a wrong entry.
    """
    return exc.name is not None and (dotted == exc.name or dotted.startswith(exc.name + "."))


def _did_you_mean(package: types.ModuleType, name: str) -> str:
    """A hint naming the submodule of ``package`` closest to ``name``, or an empty string."""
    submodules = [info.name for info in pkgutil.iter_modules(getattr(package, "__path__", []))]
    close = difflib.get_close_matches(name, submodules, n=1)
    return f" Did you mean '{package.__name__}.{close[0]}'?" if close else ""


class AppRegistry(Protocol):
    """An app registry as its configs see it (:attr:`AppConfig.apps`): :class:`tidings.apps.Apps`.

    The public methods of ``Apps`` but ``isolated()``, ``register_model()`` and
    ``lazy_model_operation()``, which belong to whoever holds the registry itself.
    """

    @property
    def ready(self) -> bool:
        """Whether every ``ready()`` ran."""

    def populate(self, installed_apps: Iterable[str | AppConfig]) -> None:
        """Load the installed apps (see :meth:`tidings.apps.Apps.populate`)."""

    def check(self, *, raise_on_error: bool = False) -> list[CheckMessage]:
        """Report what the registry's checks find (see :meth:`tidings.apps.Apps.check`)."""

    def get_app_configs(self) -> list[AppConfig]:
        """Return every installed app's config, in installation order."""

    def get_app_config(self, app_label: str) -> AppConfig:
        """Return the config of the app labelled ``app_label``."""

    def is_installed(self, name: str) -> bool:
        """Whether an app with the module path ``name`` is installed."""

    def get_registered_model(self, app_label: str, model_name: str) -> type | None:
        """Return the model registered under the key, or None."""

    def get_model(self, app_label: str, model_name: str | None = None) -> type:
        """Return the model ``"app_label.ModelName"`` (or ``app_label, model_name``)."""

    def get_models(self) -> list[type]:
        """Return every registered model."""

    def _models_of(self, app_label: str) -> list[type]: ...


class AppConfig:
    """The configuration of one installed app; subclass it to set attributes or ``ready()``.

    Attributes:
        name: The app's full module path, such as ``"myproject.blog"``.
        label: A short unique identifier; defaults to the last component of ``name``.
        verbose_name: A human-readable name; defaults to ``label.title()``.
        module: The app's root module.
        models_module: The app's ``models`` submodule, set in phase 2, or None.
        path: The app's directory on disk.
        apps: The registry holding this config, or None before it is installed.
        default: Set on a subclass in an app's ``apps`` module: ``False`` keeps it from being
            chosen for the app's module path, ``True`` picks it among several.
    """

    name: str
    label: str
    verbose_name: str
    path: str
    module: types.ModuleType
    models_module: types.ModuleType | None
    apps: AppRegistry | None

    def __init__(self, app_name: str, app_module: types.ModuleType) -> None:
        """Describe the app ``app_name`` (a module path) whose root module is ``app_module``.

        Raises:
            ImproperlyConfigured: If the label is not an identifier or the path is ambiguous.
        """
        self.name = app_name
        self.module = app_module
        self.apps = None
        self.models_module = None
        # Subclasses may set these as class attributes; only fill in what they left out.
        if not hasattr(self, "label"):
            self.label = app_name.rpartition(".")[2]
        if not self.label.isidentifier():
            raise ImproperlyConfigured(
                f"The app label {self.label!r} of app {app_name!r} is not a valid Python "
                "identifier."
            )
        if not hasattr(self, "verbose_name"):
            self.verbose_name = self.label.title()
        if not hasattr(self, "path"):
            self.path = self._path_from_module(app_module)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.label}>"

    @staticmethod
    def _path_from_module(module: types.ModuleType) -> str:
        paths = list(dict.fromkeys(getattr(module, "__path__", [])))
        if not paths and getattr(module, "__file__", None):
            paths = [os.path.dirname(str(module.__file__))]
        if len(paths) != 1:
            # Namespace packages spread over several directories have no single path.
            raise ImproperlyConfigured(
                f"The app module {module.__name__!r} has {len(paths)} filesystem locations "
                f"{paths!r}; configure it with an AppConfig subclass that sets 'path'."
            )
        return str(paths[0])

    @classmethod
    def create(cls, entry: str) -> AppConfig:
        """Build the config for one installed-apps entry.

        ``entry`` is either an app's module path or the dotted path of an AppConfig
        subclass. For a module path, the app's ``apps`` submodule is searched for AppConfig
        subclasses defined there: the only one whose ``default`` is not false, else the only
        one with ``default = True``; failing both, a plain :class:`AppConfig` is used.

        Args:
            entry: The installed-apps entry.

        Returns:
            A new, not yet installed, app config.

        Raises:
            ImproperlyConfigured: If the entry imports nothing, names something that is not an
                AppConfig subclass, or its ``apps`` module declares several defaults.
        """
        try:
            module: types.ModuleType | None = importlib.import_module(entry)
        except ModuleNotFoundError as exc:
            if not _is_missing(exc, entry):
                raise
            module = None
        if module is not None:
            config_class = cls._default_config_class(module) or cls
            if config_class is cls or not hasattr(config_class, "name"):
                # A config found inside the app's own package can only describe that app.
                return config_class(entry, module)
            return config_class._from_class(entry, config_class)
        return cls._from_class(entry, cls._import_config_class(entry))

    @classmethod
    def _default_config_class(cls, module: types.ModuleType) -> type[AppConfig] | None:
        if not _has_submodule(module, _APPS_MODULE):
            return None
        apps_path = f"{module.__name__}.{_APPS_MODULE}"
        apps_module = importlib.import_module(apps_path)
        candidates = [
            candidate
            for _, candidate in inspect.getmembers(apps_module, inspect.isclass)
            # Classes imported from elsewhere (say a base config) are not this app's choice.
            if issubclass(candidate, cls)
            and candidate is not cls
            and candidate.__module__ == apps_path
            and getattr(candidate, "default", True)
        ]
        if len(candidates) == 1:
            return candidates[0]
        defaults = [c for c in candidates if getattr(c, "default", False) is True]
        if len(defaults) > 1:
            names = ", ".join(repr(c.__name__) for c in defaults)
            raise ImproperlyConfigured(
                f"{apps_path!r} declares more than one default AppConfig: {names}."
            )
        return defaults[0] if defaults else None

    @classmethod
    def _import_config_class(cls, entry: str) -> type[AppConfig]:
        module_path, _, class_name = entry.rpartition(".")
        if not module_path:
            raise ImproperlyConfigured(
                f"Cannot import the installed app {entry!r}: no module named {entry!r}."
            )
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as exc:
            if not _is_missing(exc, module_path):
                raise
            raise ImproperlyConfigured(
                f"Cannot import the installed app {entry!r}: it is neither a module nor the "
                f"path of an AppConfig subclass ({exc})."
            ) from exc
        found = getattr(module, class_name, None)
        if found is None and not class_name[:1].isupper():
            # Class names are capitalised (Django decides the same way): a lower-case last
            # part is a module that does not exist, most often a typo in the app's path.
            raise ImproperlyConfigured(
                f"Cannot import the installed app {entry!r}: no module named {entry!r}."
                f"{_did_you_mean(module, class_name)}"
            )
        if found is None:
            choices = sorted(
                name
                for name, candidate in inspect.getmembers(module, inspect.isclass)
                if issubclass(candidate, cls) and candidate is not cls
            )
            hint = f" Choices are: {', '.join(map(repr, choices))}." if choices else ""
            raise ImproperlyConfigured(
                f"Cannot import the installed app {entry!r}: module {module_path!r} does not "
                f"contain a {class_name!r} class.{hint}"
            )
        if not (isinstance(found, type) and issubclass(found, AppConfig)):
            raise ImproperlyConfigured(f"Installed app {entry!r} isn't a subclass of AppConfig.")
        return found

    @staticmethod
    def _from_class(entry: str, config_class: type[AppConfig]) -> AppConfig:
        app_name = getattr(config_class, "name", None)
        if not isinstance(app_name, str):
            raise ImproperlyConfigured(
                f"Installed app {entry!r}: {config_class.__qualname__} must supply a 'name' "
                "attribute (the app's module path)."
            )
        try:
            module = importlib.import_module(app_name)
        except ModuleNotFoundError as exc:
            if not _is_missing(exc, app_name):
                raise
            raise ImproperlyConfigured(
                f"Cannot import {app_name!r} for installed app {entry!r}. Check that "
                f"'{config_class.__module__}.{config_class.__qualname__}.name' is correct."
            ) from exc
        return config_class(app_name, module)

    def import_models(self) -> None:
        """Import the app's ``models`` submodule, if it has one (phase 2 of populate)."""
        if _has_submodule(self.module, _MODELS_MODULE):
            self.models_module = importlib.import_module(f"{self.name}.{_MODELS_MODULE}")

    def ready(self) -> None:
        """Run once the registry is fully populated; override to import signal receivers."""

    def get_model(self, model_name: str) -> type:
        """Return this app's model named ``model_name`` (case-insensitive).

        Args:
            model_name: The model's class name, in any case.

        Returns:
            The registered model class.

        Raises:
            LookupError: If this app has no such model.
            AppRegistryNotReady: If this config is not installed in a registry.
        """
        model = self._registry().get_registered_model(self.label, model_name)
        if model is None:
            raise TidingsLookupError(f"App {self.label!r} doesn't have a {model_name!r} model.")
        return model

    def get_models(self) -> list[type]:
        """Return this app's registered models, in registration order.

        Raises:
            AppRegistryNotReady: If this config is not installed in a registry.
        """
        return self._registry()._models_of(self.label)

    def _registry(self) -> AppRegistry:
        if self.apps is None:
            raise AppRegistryNotReady(
                f"App {self.label!r} is not installed in a registry; call populate() first."
            )
        return self.apps
