"""Django itself, configured once per test process, as the oracle for differential tests.

Django's settings are process-global, so every differential test goes through
:func:`setup_django`. The apps listed here hold the Django twins of the models and views that
the tidings integrations are compared against.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_done = False

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "tests.oracle.lifecycle",
    "tests.oracle.m2m",
]


def setup_django() -> None:
    """Configure Django (SQLite in memory, DEBUG off) and populate its registry, once."""
    global _done
    with _lock:
        if _done:
            return
        import django
        from django.conf import settings

        settings.configure(
            DEBUG=False,
            SECRET_KEY="tidings-tests",
            ALLOWED_HOSTS=["*"],
            INSTALLED_APPS=INSTALLED_APPS,
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
            ROOT_URLCONF="tests.oracle.urls",
            MIDDLEWARE=[],
            USE_TZ=True,
            LOGGING_CONFIG=None,
        )
        django.setup()
        _done = True
