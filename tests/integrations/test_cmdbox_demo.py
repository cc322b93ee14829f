"""The cmdbox demo (``make demo``) runs the classic User/Profile tutorial and traces its signals."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "cmdbox" / "main.py"

#: Every signal the scenario sends, as ``name Sender``, in order (Django's order).
EXPECTED_SIGNALS = [
    # populate(): the models modules are imported
    "class_prepared User",
    "class_prepared Profile",
    "class_prepared Post",
    # 1. two users sign up; create_user_profile adds their profiles, written by the same commit
    "pre_save User",
    "pre_save User",
    "post_save User",
    "post_save User",
    "pre_save Profile",
    "pre_save Profile",
    "post_save Profile",
    "post_save Profile",
    # 2. carol signs up in another session, which is rolled back
    "pre_save User",
    "post_save User",
    "pre_save Profile",
    "post_save Profile",
    # 3. alice changes her email; save_user_profile saves her profile too
    "pre_save User",
    "post_save User",
    "pre_save Profile",
    "post_save Profile",
    # 4. save(profile, update_fields=["location"])
    "pre_save Profile",
    "post_save Profile",
    # 5. two posts
    "pre_save Post",
    "pre_save Post",
    "post_save Post",
    "post_save Post",
    # 6. a post is edited
    "pre_save Post",
    "post_save Post",
    # 7. a post is deleted
    "pre_delete Post",
    "post_delete Post",
    # 8. bob is deleted, and his profile with him (dependents first, as Django's Collector)
    "pre_delete Profile",
    "pre_delete User",
    "post_delete Profile",
    "post_delete User",
]

EXPECTED_ROWS = """\
profiles_user (1 row)
  id  username  email
  1   'alice'   'alice@cmdbox.dev'
profiles_profile (1 row)
  id  user_id  location  bio
  1   1        'Lisbon'  ''
blog_post (1 row)
  id  title            slug           author_id
  1   'Hello, cmdbox'  'hello-world'  1
page cache (2 rows)
  path                   html
  '/posts/hello-world/'  '<h1>Hello, cmdbox</h1>'
  '/'                    '<ul><li>Hello, cmdbox</li></ul>'
"""


def run_demo(database_url: str | None) -> subprocess.CompletedProcess[str]:
    """Run the demo in a fresh interpreter, with ``DATABASE_URL`` set or unset."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, str(DEMO)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def check_output(done: subprocess.CompletedProcess[str]) -> None:
    """Assert the demo succeeded quietly and printed the expected trace, rows and check."""
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warning, no traceback
    out = done.stdout
    traced = re.findall(r"^([a-z_]+)\(sender=(\w+)", out, flags=re.MULTILINE)
    assert [f"{name} {sender}" for name, sender in traced] == EXPECTED_SIGNALS
    assert (
        "post_save(sender=User, instance=<User 1 'alice'>, created=True, update_fields=None, "
        "changes={})\n  -> profiles.signals.create_user_profile, "
        "profiles.signals.save_user_profile, profiles.signals.send_welcome_mail [after commit]\n"
        "     | profiles.signals: added a Profile for <User 1 'alice'>\n"
    ) in out
    assert (
        "  post_save   sender=User  profiles.signals.send_welcome_mail  (delivery='on_commit')\n"
    ) in out
    # The welcome mails go out after the commit, and not for the signup rolled back.
    assert (
        "  -> (no receivers)\n"
        "     | profiles.signals: welcome mail sent to alice@example.com\n"
        "     | profiles.signals: welcome mail sent to bob@example.com\n"
        "committed; welcome mails sent: alice@example.com, bob@example.com\n"
    ) in out
    assert (
        "post_save(sender=User, instance=<User 3 'carol'>, created=True, update_fields=None, "
        "changes={})\n  -> profiles.signals.create_user_profile, "
        "profiles.signals.save_user_profile, profiles.signals.send_welcome_mail [after commit]\n"
    ) in out
    assert "welcome mail sent to carol" not in out
    assert (
        "rolled back; welcome mails sent: alice@example.com, bob@example.com (none to carol)\n"
    ) in out
    assert (
        "post_save(sender=User, instance=<User 1 'alice'>, created=False, update_fields=None, "
        "changes={email: 'alice@example.com' -> 'alice@cmdbox.dev'})"
    ) in out
    assert (
        "post_save(sender=Profile, instance=<Profile 1 of user 1>, created=False, "
        "update_fields=[location], changes={location: '' -> 'Lisbon'})"
    ) in out
    assert "     | blog.signals: slug set to 'hello-world'" in out
    assert (
        "post_save(sender=Post, instance=<Post 1 'Hello, cmdbox'>, created=False, "
        "update_fields=None, changes={title: 'Hello, world' -> 'Hello, cmdbox'})\n"
        "  -> pages.signals.invalidate_post_pages\n"
        "     | pages.signals: dropped from the cache: /posts/hello-world/, /\n"
    ) in out
    assert (
        "post_delete(sender=Post, instance=<Post 2 'Drafts'>, origin=<Post 2 'Drafts'>)\n"
        "  -> pages.signals.invalidate_post_pages\n"
        "     | pages.signals: dropped from the cache: /posts/drafts/, /\n"
    ) in out
    assert (
        "pre_delete(sender=Profile, instance=<Profile 2 of user 2>, origin=<User 2 'bob'>)"
    ) in out
    assert "  post_save   sender=Post  pages.signals.invalidate_post_pages\n" in out
    assert EXPECTED_ROWS in out
    assert "== apps.check() " in out
    assert "\nno problems found\n" in out


def test_demo_on_an_sqlite_file(tmp_path: Path) -> None:
    """On the SQLite file DATABASE_URL names, the demo traces every signal and prints the rows."""
    database = tmp_path / "cmdbox.sqlite3"
    done = run_demo(f"sqlite:///{database}")
    check_output(done)
    assert f"database: sqlite:///{database}\n" in done.stdout
    with closing(sqlite3.connect(database)) as connection, connection:
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    assert tables == []  # the demo drops the tables it created


def test_default_database_is_a_temporary_file_removed_at_exit() -> None:
    """Without DATABASE_URL the demo uses an SQLite file in a temp directory, then removes it."""
    done = run_demo(None)
    check_output(done)
    found = re.search(r"^database: sqlite:///(.+)$", done.stdout, flags=re.MULTILINE)
    assert found is not None
    assert not Path(found.group(1)).parent.exists()


def test_demo_refuses_a_database_that_has_its_tables(tmp_path: Path) -> None:
    """The demo does not touch a database where its tables already exist, and says why."""
    database = tmp_path / "cmdbox.sqlite3"
    with closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("CREATE TABLE blog_post (id INTEGER PRIMARY KEY, title TEXT)")
        connection.execute("INSERT INTO blog_post VALUES (1, 'keep me')")
    done = run_demo(f"sqlite:///{database}")
    assert done.returncode != 0
    assert "already has the demo's tables blog_post" in done.stderr
    with closing(sqlite3.connect(database)) as connection, connection:
        assert connection.execute("SELECT title FROM blog_post").fetchall() == [("keep me",)]


@pytest.mark.postgres
def test_demo_on_postgresql(postgres_url: str) -> None:
    """With DATABASE_URL naming a PostgreSQL database, the demo gives the same trace and rows."""
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
    check_output(run_demo(url))
