"""Fetch Django's own dispatch tests and run them against tidings (see test_django_suite.py).

Nothing of Django's test suite is kept in this repository: the sdist of the installed Django
version is downloaded at test time (``pip download``, cached next to the virtual environment
or in the folder ``TIDINGS_DJANGO_SDISTS`` names) and the test modules are extracted from it
into a temporary folder, with their imports of ``django.dispatch`` pointed at ``tidings``.

Run as a script (``python -m tests.core._django_suite FOLDER``), it configures Django's
settings, runs the extracted tests and prints one JSON line per test:
``{"test": id, "outcome": "passed" | "failed" | "error" | "skipped", "detail": text}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path
from typing import Any

# The Django test modules run against tidings, with the test classes taken from each. The
# ORM-backed classes of tests/signals need Django's database machinery and are not run.
MODULES = {
    "dispatch/tests.py": None,
    "signals/tests.py": ("AsyncReceiversTests", "TestReceiversContextVarsSharing"),
}
SUPPORT_FILES = ("dispatch/__init__.py", "signals/__init__.py", "signals/models.py")

# How each module's imports of django.dispatch are pointed at tidings: (old, new) pairs that
# must all be found, so that a change in Django's tests is noticed rather than run unpatched.
# ``_make_id`` stays Django's: tidings has no such private hook (see docs/differences.md).
REWRITES = {
    "dispatch/tests.py": (
        ("from django.dispatch import Signal, receiver", "from tidings import Signal, receiver"),
    ),
    "signals/tests.py": (
        ("from django import dispatch\n", "import tidings as dispatch\n"),
        ("from django.dispatch import receiver\n", "from tidings import receiver\n"),
    ),
}


class FetchError(Exception):
    """The Django sdist could not be downloaded."""


def cache_dir() -> Path:
    """Where downloaded sdists are kept: ``TIDINGS_DJANGO_SDISTS``, or beside the running
    virtual environment (CI shares one folder between the environments of its Pythons)."""
    shared = os.environ.get("TIDINGS_DJANGO_SDISTS", "")
    return Path(shared) if shared else Path(sys.prefix) / "django-test-sdists"


def fetch_sdist(version: str) -> Path:
    """Return the path of Django ``version``'s sdist, downloading it once.

    Raises:
        FetchError: pip could not download it (no network, no such version).
    """
    folder = cache_dir()
    found = sorted(folder.glob(f"[dD]jango-{version}.tar.gz"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    # Downloaded beside the cache and renamed into it: two test runs sharing the environment
    # (CI runs the main suite and the pure-Python one at once) never read a partial file.
    with tempfile.TemporaryDirectory(dir=folder) as partial:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-binary",
            ":all:",
            "--no-deps",
            f"django=={version}",
            "--dest",
            partial,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
        except subprocess.TimeoutExpired as exc:
            raise FetchError(f"pip download django=={version} timed out") from exc
        downloaded = sorted(Path(partial).glob(f"[dD]jango-{version}.tar.gz"))
        if done.returncode != 0 or not downloaded:
            raise FetchError(f"pip download django=={version} failed: {done.stderr.strip()[-500:]}")
        target = folder / downloaded[0].name
        os.replace(downloaded[0], target)
    return target


def extract(sdist: Path, version: str, target: Path) -> list[str]:
    """Extract the test modules into ``target``, pointed at tidings; return the test labels."""
    prefix = f"{sdist.name.removesuffix('.tar.gz')}/tests/"
    wanted = [*MODULES, *SUPPORT_FILES]
    with tarfile.open(sdist) as archive:
        for name in wanted:
            member = archive.extractfile(prefix + name)
            if member is None:
                raise FileNotFoundError(f"{prefix}{name} is not in {sdist.name}")
            text = member.read().decode()
            for old, new in REWRITES.get(name, ()):
                if old not in text:
                    raise ValueError(f"Django {version}'s {name} no longer contains {old!r}")
                text = text.replace(old, new)
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    labels = []
    for name, classes in MODULES.items():
        module = name.removesuffix(".py").replace("/", ".")
        if classes is None:
            labels.append(module)
        else:
            # TestReceiversContextVarsSharing is new in Django 6.1.
            text = (target / name).read_text()
            labels.extend(f"{module}.{c}" for c in classes if f"\nclass {c}(" in text)
    return labels


class _Result(unittest.TestResult):
    """Collects one outcome per test."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: dict[str, tuple[str, str]] = {}

    def addSuccess(self, test: unittest.TestCase) -> None:
        self.outcomes[test.id()] = ("passed", "")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        self.outcomes[test.id()] = ("failed", str(err[1]))

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        self.outcomes[test.id()] = ("error", f"{err[0].__name__}: {err[1]}")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        self.outcomes[test.id()] = ("skipped", reason)


def run(folder: Path, labels: list[str]) -> dict[str, tuple[str, str]]:
    """Configure Django, run the tests named by ``labels`` from ``folder``; return outcomes."""
    sys.path.insert(0, str(folder))
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        INSTALLED_APPS=["signals"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
    )
    django.setup()
    suite = unittest.defaultTestLoader.loadTestsFromNames(labels)
    result = _Result()
    suite.run(result)
    return result.outcomes


def main() -> None:
    """Run the tests extracted into ``sys.argv[1]``; print the outcomes as JSON lines."""
    folder = Path(sys.argv[1])
    labels = sys.argv[2:]
    os.chdir(folder)
    for test, (outcome, detail) in sorted(run(folder, labels).items()):
        print(json.dumps({"test": test, "outcome": outcome, "detail": detail}))


if __name__ == "__main__":
    main()
