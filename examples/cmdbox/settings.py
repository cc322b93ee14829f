"""The project's settings: which apps are installed, and which database to use.

``DATABASE_URL`` (an SQLAlchemy URL such as ``postgresql+psycopg://user@host/dbname``) selects
the database; without it the demo uses an SQLite file in a temporary directory, removed at exit.
"""

from __future__ import annotations

import os

#: The apps, in the order ``apps.populate()`` loads them (as in Django's settings).
INSTALLED_APPS = [
    "profiles",  # picks up profiles.apps.ProfilesConfig by itself
    "blog",
    "pages.apps.PagesConfig",  # an AppConfig path works too
]

#: The database, or None for a throw-away SQLite file.
DATABASE_URL = os.environ.get("DATABASE_URL") or None
