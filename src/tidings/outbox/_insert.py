"""The producer's write: a send's pending-delivery INSERT, prepared once per outbox.

The relays' claim on PostgreSQL (:class:`DirectQuery`) runs on the DBAPI cursor by the same
rules as the write (:func:`may_bypass`, :func:`run_direct`).

The write runs inside the sender's business transaction, once per durable receiver of every
send, so what it costs is added to each of those transactions. It is prepared when the outbox
is created:

* **One statement on PostgreSQL.** The relays' wake-up is part of the INSERT:
  ``INSERT ... RETURNING pg_notify(<channel>, '')``, one round trip where a separate ``NOTIFY``
  took a second one. ``pg_notify()`` is ``NOTIFY``: PostgreSQL delivers it when the
  transaction commits, never when it (or the savepoint around the write) rolls back, and folds
  the repeats of one transaction into one notification.
* **Compiled once, run on the Connection's DBAPI connection** with the psycopg 3 and pysqlite
  drivers (sync engines): SQLAlchemy's work per execute (statement cache lookup, execution
  context, result object) was most of the write's Python time. The statement is SQLAlchemy's
  own compilation of the INSERT for the engine's dialect, its parameters pass through the
  column types' bind processors as SQLAlchemy would pass them, and it runs on the same DBAPI
  connection, in the transaction the Connection has begun, on one cursor kept for that
  connection. A driver error is raised as SQLAlchemy's ``DBAPIError`` subclass for it, and a
  disconnect invalidates the Connection, as ``Connection.execute()`` does.

The write goes through ``Connection.execute()`` instead wherever going around it would change
what the application sees: another driver or an async one, a Connection of another engine
than the outbox's, a Connection with no transaction begun (SQLAlchemy begins it),
cursor-execute, ``do_execute`` or error listeners on the engine or the Connection, statement logging
(``echo``), or a ``schema_translate_map``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, String, Table, bindparam, func, insert
from sqlalchemy.exc import DBAPIError

from tidings.outbox._wakeup import channel_name, notifier

__all__ = ["COLUMNS", "DirectQuery", "RowWriter", "may_bypass", "run_direct"]

#: The columns a send writes (the keys of ``Store.row()``); the others take their defaults.
COLUMNS = (
    "event_id",
    "format",
    "signal",
    "receiver",
    "delivery",
    "order_key",
    "payload",
    "sent_at",
    "available_at",
    "attempts",
)
_DIRECT_DRIVERS = frozenset({"psycopg", "pysqlite"})
_CHANNEL, _MESSAGE = "tidings_channel", "tidings_message"
_CURSOR = "tidings.outbox.cursor"  # the key of run_direct()'s cursor in the pool's info


class RowWriter:
    """The prepared INSERT of one outbox's pending deliveries on one engine.

    Args:
        engine: The outbox's engine (its dialect compiles the statement).
        table: The pending table.
        wake: Wake the relays at commit (see :mod:`tidings.outbox._wakeup`).
    """

    def __init__(self, engine: Engine, table: Table, *, wake: bool) -> None:
        dialect = engine.dialect
        self._dialect = dialect
        statement: Any = insert(table).inline()  # nothing reads the new id
        fixed: dict[str, Any] = {}
        if wake and dialect.name == "postgresql":
            fixed = {_CHANNEL: channel_name(table), _MESSAGE: ""}
            notify = func.pg_notify(
                bindparam(_CHANNEL, fixed[_CHANNEL], type_=String()),
                bindparam(_MESSAGE, "", type_=String()),
            )
            statement = statement.returning(notify)
        #: What ``Connection.execute()`` runs (the fallback).
        self.statement = statement
        # SQLite's wake-up is an in-process kick at commit: the Connection is marked.
        self._mark = notifier(engine, table) if wake else None
        self._direct = not dialect.is_async and dialect.driver in _DIRECT_DRIVERS
        compiled = statement.compile(dialect=dialect, column_keys=list(COLUMNS))
        #: The SQL text run on the DBAPI connection.
        self.sql = str(compiled)
        processors = {
            column.key: column.type.dialect_impl(dialect).bind_processor(dialect)
            for column in table.columns
            if column.key in COLUMNS
        }
        self._params: Callable[[dict[str, Any]], Any]
        positions = compiled.positiontup
        if positions is not None:  # qmark (pysqlite): a tuple in the statement's order
            steps = [(key, processors.get(key)) for key in positions]

            def positional(row: dict[str, Any]) -> Any:
                return tuple(row[key] if fn is None else fn(row[key]) for key, fn in steps)

            self._params = positional
        elif any(processors.values()):
            converted = [(key, fn) for key, fn in processors.items() if fn is not None]

            def named(row: dict[str, Any]) -> Any:
                params = {**row, **fixed}
                for key, fn in converted:
                    params[key] = fn(params[key])
                return params

            self._params = named
        else:  # psycopg: every type passes as it is
            self._params = lambda row: {**row, **fixed}

    def insert(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert prepared rows on ``conn``, in its current transaction (begun if need be)."""
        if not rows:
            return
        if self._direct and may_bypass(conn, self._dialect):
            if len(rows) == 1:
                run_direct(conn, self._dialect, self.sql, self._params(rows[0]))
            else:
                params = [self._params(row) for row in rows]
                run_direct(conn, self._dialect, self.sql, params, many=True)
        else:
            conn.execute(self.statement, rows[0] if len(rows) == 1 else list(rows))
        if self._mark is not None:
            self._mark(conn)


class DirectQuery:
    """A statement with results, compiled once, run as the write is on psycopg 3.

    The PostgreSQL relays' claim: SQLAlchemy's work around it (execution context, result
    object, rows) cost a quarter of what the statement costs the database, once per batch.
    Where any parameter or result column needs SQLAlchemy's conversion, or the statement is
    rebuilt per execution (an expanding ``IN``), it always goes through ``conn.execute()``.

    Args:
        statement: The statement.
        columns: The columns it returns, in order.
        dialect: The dialect it runs on.
    """

    def __init__(self, statement: Any, columns: Sequence[Any], dialect: Any) -> None:
        self.statement = statement
        self._dialect = dialect
        self._compiled = compiled = statement.compile(dialect=dialect)
        #: The SQL text run on the DBAPI connection.
        self.sql = str(compiled)
        binds = compiled.binds.values()
        self.direct = (
            not dialect.is_async
            and dialect.driver == "psycopg"
            and not any(bind.expanding or bind.literal_execute for bind in binds)
            and all(_impl(bind.type, dialect).bind_processor(dialect) is None for bind in binds)
            and all(
                _impl(column.type, dialect).result_processor(dialect, None) is None
                for column in columns
            )
        )

    def rows(self, conn: Connection, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        """Run the statement on ``conn`` with ``params``; return its rows."""
        if self.direct and may_bypass(conn, self._dialect):
            values = self._compiled.construct_params(params)
            return run_direct(conn, self._dialect, self.sql, values, fetch=True)
        return conn.execute(self.statement, params).all()


def _impl(type_: Any, dialect: Any) -> Any:
    return type_.dialect_impl(dialect)


def may_bypass(conn: Connection, dialect: Any) -> bool:
    """Whether running around ``conn.execute()`` changes nothing the application sees."""
    if conn.dialect is not dialect or not conn.in_transaction():
        return False  # compiled for another dialect (a Session may bind another engine)
    # The flags SQLAlchemy itself reads before it looks at any listener: most engines have
    # none, and the check then skips the per-event lookups.
    if conn._has_events or conn.engine._has_events:
        dispatch = conn.dispatch
        if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
            return False
    if dialect._has_events:
        events = dialect.dispatch
        if events.handle_error or events.do_execute or events.do_executemany:
            return False
    return (
        not conn.engine.logger.isEnabledFor(logging.INFO)
        and "schema_translate_map" not in conn.get_execution_options()
    )


def run_direct(
    conn: Connection,
    dialect: Any,
    sql: str,
    params: Any,
    *,
    many: bool = False,
    fetch: bool = False,
) -> list[Any]:
    """Run ``sql`` on ``conn``'s DBAPI connection, as ``Connection.execute()`` would.

    Returns:
        The rows, if ``fetch``; else an empty list.

    Raises:
        DBAPIError: The driver's error, as SQLAlchemy raises it; a disconnect invalidates
            ``conn``.
    """
    proxied = conn.connection
    dbapi_connection = proxied.dbapi_connection
    assert dbapi_connection is not None  # conn is in a transaction: it holds one
    # One cursor per DBAPI connection, kept in the pool's info for it (SQLAlchemy clears
    # that when the connection is replaced): creating a psycopg cursor copies the
    # connection's adapters, a tenth of what the write costs in Python.
    cursor = proxied.info.get(_CURSOR)
    if cursor is None:
        cursor = proxied.info[_CURSOR] = dbapi_connection.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params)
        return list(cursor.fetchall()) if fetch else []
    except dialect.loaded_dbapi.Error as exc:
        del proxied.info[_CURSOR]
        gone = dialect.is_disconnect(exc, dbapi_connection, cursor)
        # A connection that went away fails the close too.
        with contextlib.suppress(dialect.loaded_dbapi.Error):
            cursor.close()
        if gone:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            params,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=gone,
            dialect=dialect,
        ) from exc
