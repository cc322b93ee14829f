"""``post_bulk_update``/``post_bulk_delete`` for ORM ``update()``/``delete()`` statements.

These statements bypass the unit of work: SQLAlchemy sends no per-object events for them, like
Django's ``QuerySet.update()``. When a receiver listens for the statement's model, the
``do_orm_execute`` hook runs the statement itself and then sends the signal with:

* ``pks``: for a WHERE-criteria statement without RETURNING, on a database that supports
  RETURNING for it, the statement is run with ``return_defaults(<primary key>)`` added and
  ``pks`` is the tuple of returned keys (a scalar per row, a tuple per row for a composite
  key). The key columns are those of the table the statement writes (``dog.id`` for a
  joined-table subclass ``Dog``, not the base table's ``animal.id``), so RETURNING never names
  a table the statement does not have. The caller still gets a ``CursorResult`` with its
  ``rowcount``.
  For "bulk UPDATE by primary key" (a list of parameter dictionaries) ``pks`` comes from the
  parameters. Otherwise (the statement has its own RETURNING, or the database has none)
  ``pks`` is None.
* ``rowcount``: the driver's row count, -1 when unknown.

Nothing happens, and the statement runs untouched, when nobody listens.

The same hook keeps the per-row ``load`` listeners in step with the init receivers before each
SELECT (:func:`tidings.sqlalchemy._lifecycle.sync_load_listener`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column
from sqlalchemy.orm import Mapper, ORMExecuteState

from tidings.models import post_bulk_delete, post_bulk_update
from tidings.sqlalchemy._compat import has_return_defaults
from tidings.sqlalchemy._delivery import sending_for
from tidings.sqlalchemy._lifecycle import sync_load_listener
from tidings.sqlalchemy._registry import is_instrumented
from tidings.sqlalchemy._send import send
from tidings.sqlalchemy._session import using_for

__all__ = ["on_execute"]


def on_execute(orm_state: ORMExecuteState) -> Any:
    """Session ``do_orm_execute``: the bulk signals around an ORM-enabled statement."""
    if orm_state.is_select:
        sync_load_listener(orm_state.session)
        return None
    if orm_state.is_update:
        signal = post_bulk_update
    elif orm_state.is_delete:
        signal = post_bulk_delete
    else:
        return None
    if not signal.receivers:
        return None
    mapper = orm_state.bind_mapper
    if mapper is None or not is_instrumented(mapper.class_):
        return None
    sender = mapper.class_
    if not signal.has_listeners(sender):
        return None
    statement: Any = orm_state.statement
    parameters = orm_state.parameters
    using = using_for(orm_state.session, mapper)
    keys = [mapper.get_property_by_column(column).key for column in mapper.primary_key]
    pks: tuple[Any, ...] | None = None
    result: Any
    if isinstance(parameters, (list, tuple)):
        result = orm_state.invoke_statement()
        pks = tuple(_pk([row.get(key) for key in keys]) for row in parameters)
    elif (
        not _has_returning(statement)
        and _supports_returning(orm_state, mapper)
        and (columns := _key_columns(statement, mapper)) is not None
    ):
        # return_defaults() fetches the keys through RETURNING but leaves the caller a plain
        # CursorResult (rowcount intact, no rows), unlike returning().
        result = orm_state.invoke_statement(statement=statement.return_defaults(*columns))
        pks = tuple(_pk(list(row)) for row in result.returned_defaults_rows or ())
    else:
        result = orm_state.invoke_statement()
    rowcount = getattr(result, "rowcount", -1)
    if pks == () and rowcount != 0:
        # Rows changed but none came back (a release that ignores return_defaults() for the
        # statement): the keys are unknown, which an empty tuple would deny.
        pks = None
    with sending_for(orm_state.session):  # delivery="on_commit" joins this Session
        send(signal, sender, statement=statement, using=using, pks=pks, rowcount=rowcount)
    return result


def _key_columns(statement: Any, mapper: Mapper[Any]) -> list[Column[Any]] | None:
    """Return the columns of the table ``statement`` writes that hold ``mapper``'s key.

    ``mapper.primary_key`` names the base table's columns; a statement on a joined-table
    subclass writes the subclass table (``UPDATE dog``), where RETURNING ``animal.id`` is
    an error on PostgreSQL and silently dropped on SQLite. Each key attribute of a joined
    subclass maps to a column of each table (``dog.id`` and ``animal.id``): the one of the
    written table is returned. None when the written table lacks one: the keys cannot be
    known without changing the statement.
    """
    table = statement.table  # annotated with the entity: compared by lineage, not identity
    columns: list[Column[Any]] = []
    for key_column in mapper.primary_key:
        prop = mapper.get_property_by_column(key_column)
        found = next((c for c in prop.columns if table.is_derived_from(c.table)), None)
        if found is None:
            return None
        columns.append(found)
    return columns


def _pk(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else tuple(values)


def _has_returning(statement: Any) -> bool:
    return bool(statement.exported_columns) or has_return_defaults(statement)


def _supports_returning(orm_state: ORMExecuteState, mapper: Any) -> bool:
    dialect = orm_state.session.get_bind(mapper=mapper).dialect
    flag = "update_returning" if orm_state.is_update else "delete_returning"
    return bool(getattr(dialect, flag, False))
