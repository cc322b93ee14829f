"""The classic User/Profile tutorial with tidings and SQLAlchemy, traced signal by signal.

Run ``python examples/cmdbox/main.py`` (``make demo``). It populates the apps of
``settings.INSTALLED_APPS``, creates the tables, walks through a short scenario and prints
every model signal sent, its arguments and the receivers it calls, then the rows it left.

The database is an SQLite file in a temporary directory, removed at exit, unless
``DATABASE_URL`` names another one (for PostgreSQL: ``postgresql+psycopg://user@host/dbname``).
There the demo creates its tables (``profiles_user``, ``profiles_profile``, ``blog_post``),
refuses to start if they already exist, and drops them at exit.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import settings
from sqlalchemy import Engine, create_engine, inspect, select
from sqlalchemy.orm import Session
from tracing import Tracer, describe

from tidings.apps import apps
from tidings.models import class_prepared, post_delete, post_save, pre_delete, pre_save
from tidings.sqlalchemy import save

MODEL_SIGNALS = (pre_save, post_save, pre_delete, post_delete)


def heading(text: str) -> None:
    """Print a section heading."""
    print(f"\n== {text} " + "=" * max(3, 76 - len(text)))


def code(*lines: str) -> None:
    """Print the code a step runs, as typed at a prompt."""
    for line in lines:
        print(f">>> {line}")


@contextmanager
def open_database() -> Iterator[Engine]:
    """The engine of ``DATABASE_URL``, or of a temporary SQLite file; cleaned up at exit."""
    from database import Base

    tmp = None
    url = settings.DATABASE_URL
    if url is None:
        tmp = tempfile.mkdtemp(prefix="cmdbox-")
        url = f"sqlite:///{tmp}/cmdbox.sqlite3"
    engine = create_engine(url)
    print(f"database: {engine.url.render_as_string(hide_password=True)}")
    try:
        existing = sorted(set(inspect(engine).get_table_names()) & set(Base.metadata.tables))
        if existing:
            raise SystemExit(
                f"The database already has the demo's tables {', '.join(existing)}; "
                "drop them or point DATABASE_URL at another database."
            )
        Base.metadata.create_all(engine)
        try:
            yield engine
        finally:
            Base.metadata.drop_all(engine)
    finally:
        engine.dispose()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def populate(tracer: Tracer) -> None:
    """Populate the app registry and show what each phase imported and connected."""
    heading("apps.populate(settings.INSTALLED_APPS)")
    print(f"INSTALLED_APPS = {settings.INSTALLED_APPS!r}")
    print("populate() 1. builds each app's config, 2. imports each app's models module (each")
    print("mapped class sends class_prepared, traced as it happens), 3. calls each ready():")
    before = set(sys.modules)
    apps.populate(settings.INSTALLED_APPS)
    names = {config.name for config in apps.get_app_configs()}
    imported = [m for m in sys.modules if m not in before and m.split(".")[0] in names]
    print("app configs:")
    for config in apps.get_app_configs():
        print(f"  {config.label:<9} {type(config).__qualname__:<15} {config.verbose_name!r}")
    models = [i for i, name in enumerate(imported) if name.endswith(".models")]
    first, last = (models[0], models[-1] + 1) if models else (len(imported), len(imported))
    print("app modules imported, in order:")
    print(f"  phase 1: {', '.join(imported[:first])}")
    print(f"  phase 2: {', '.join(imported[first:last])}")
    print(f"  phase 3: {', '.join(imported[last:])}")
    print("receivers connected by the signals modules that ready() imported:")
    for signal in MODEL_SIGNALS:
        for info in signal.live_receivers():
            if info.receiver == tracer.trace:
                continue
            sender = getattr(info.sender, "__qualname__", "any")
            mode = "" if info.delivery == "immediate" else f"  (delivery={info.delivery.value!r})"
            print(f"  {signal.name:<11} sender={sender:<5} {describe(info.receiver)}{mode}")
    print('(pages.signals named its sender "blog.Post": the registry resolved it to the model)')


def show_pages(session: Session, *paths: str) -> None:
    """Render ``paths`` through the page cache and say whether each came from it."""
    from pages.cache import cache
    from pages.views import render

    for path in paths:
        html, hit = render(session, path)
        print(f"GET {path:<22} {'cache hit ' if hit else 'rendered  '} {html}")
    print(f"page cache now holds: {', '.join(path for path, _ in cache.items()) or 'nothing'}")


def scenario(session: Session) -> None:
    """Create, update and delete users and posts, one commit per step."""
    from blog.models import Post
    from profiles.models import User
    from profiles.signals import outbox

    heading("1. Two users sign up")
    code(
        'session.add_all([User(username="alice", email="alice@example.com"),',
        '                 User(username="bob", email="bob@example.com")])',
        "session.commit()",
    )
    alice = User(username="alice", email="alice@example.com")
    bob = User(username="bob", email="bob@example.com")
    session.add_all([alice, bob])
    session.commit()
    print(f"committed; welcome mails sent: {', '.join(outbox)}")

    heading("2. Carol signs up, but her transaction is rolled back: no welcome mail")
    code(
        "with Session(engine) as other:",
        '    other.add(User(username="carol", email="carol@example.com"))',
        "    other.flush(); other.rollback()",
    )
    with Session(session.get_bind()) as other:
        other.add(User(username="carol", email="carol@example.com"))
        other.flush()
        print("flushed: post_save was sent, the row is written but not committed")
        other.rollback()
    print(f"rolled back; welcome mails sent: {', '.join(outbox)} (none to carol)")

    heading("3. Alice changes her email")
    code('alice.email = "alice@cmdbox.dev"', "session.commit()")
    alice.email = "alice@cmdbox.dev"
    session.commit()

    heading("4. Alice fills in her profile, saving only the location")
    code(
        'alice.profile.location = "Lisbon"; alice.profile.bio = "(not saved)"',
        'save(session, alice.profile, update_fields=["location"]); session.commit()',
    )
    profile = alice.profile
    assert profile is not None
    profile.location = "Lisbon"
    profile.bio = "(not saved)"
    save(session, profile, update_fields=["location"])
    session.commit()

    heading("5. Alice writes two posts; the pages get rendered and cached")
    code(
        'session.add_all([Post(title="Hello, world", author=alice),',
        '                 Post(title="Drafts", author=alice)]); session.commit()',
    )
    hello = Post(title="Hello, world", author=alice)
    drafts = Post(title="Drafts", author=alice)
    session.add_all([hello, drafts])
    session.commit()
    show_pages(session, "/", "/posts/hello-world/", "/posts/drafts/", "/")

    heading("6. Alice edits a post: the pages showing it are dropped")
    code('hello.title = "Hello, cmdbox"', "session.commit()")
    hello.title = "Hello, cmdbox"
    session.commit()
    show_pages(session, "/", "/posts/hello-world/")

    heading("7. Alice deletes her drafts")
    code("session.delete(drafts)", "session.commit()")
    session.delete(drafts)
    session.commit()
    show_pages(session, "/")

    heading("8. Bob closes his account: his profile goes with it")
    code("session.delete(bob)", "session.commit()")
    session.delete(bob)
    session.commit()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows under their column names."""
    texts = [[repr(value) for value in row] for row in rows]
    widths = [max([len(c)] + [len(row[i]) for row in texts]) for i, c in enumerate(columns)]
    print(f"{title} ({len(rows)} row{'' if len(rows) == 1 else 's'})")
    for cells in [list(columns), *texts]:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


def show_rows(engine: Engine) -> None:
    """Print what the scenario left in the database and in the page cache."""
    from blog.models import Post
    from pages.cache import cache
    from profiles.models import Profile, User

    heading("Resulting rows")
    with Session(engine) as session:
        table(
            "profiles_user",
            ["id", "username", "email"],
            session.execute(select(User.id, User.username, User.email).order_by(User.id)).all(),
        )
        profiles = select(Profile.id, Profile.user_id, Profile.location, Profile.bio)
        table(
            "profiles_profile",
            ["id", "user_id", "location", "bio"],
            session.execute(profiles.order_by(Profile.id)).all(),
        )
        posts = select(Post.id, Post.title, Post.slug, Post.author_id)
        table(
            "blog_post",
            ["id", "title", "slug", "author_id"],
            session.execute(posts.order_by(Post.id)).all(),
        )
    table("page cache", ["path", "html"], cache.items())


def main() -> int:
    """Run the demo; return the exit status."""
    # Receivers log what they do; their lines appear under the signal that called them.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("     | %(name)s: %(message)s"))
    for app in ("profiles", "blog", "pages"):
        logger = logging.getLogger(app)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    tracer = Tracer()
    # Connected before any app: the tracer runs first and sees the class_prepared of each model.
    tracer.connect([class_prepared, *MODEL_SIGNALS])
    populate(tracer)
    with open_database() as engine:
        # expire_on_commit=False keeps the committed values in memory, so that ``changes``
        # can report the old value of an attribute changed after a commit.
        with Session(engine, expire_on_commit=False) as session:
            scenario(session)
        show_rows(engine)

    heading("apps.check()")
    problems = apps.check()
    for problem in problems:
        print(problem)
    print(f"{len(problems) or 'no'} problem{'' if len(problems) == 1 else 's'} found")
    print(f"\n{tracer.count} signals traced.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
