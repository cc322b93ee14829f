"""The outbox tables, described by SQLAlchemy ``MetaData``.

Two tables, named from one prefix (``tidings_outbox`` by default):

``<prefix>``
    One row per durable receiver per send: the pending deliveries. A receiver's completion is
    the deletion of its row, so a retry runs only the receivers whose rows are still there.
    ``delivery`` is the receiver's mode (``durable``, or ``queue``/``broadcast`` for rows a
    relay publishes to a transport): a relay claims only the modes it has an action for.
    ``order_key`` is set for the receivers connected with ``ordered=``: such a row is claimed
    only once no older row of the same receiver and key is pending.
``<prefix>_dead``
    Deliveries that failed ``max_attempts`` times or could not be read, with the error and the
    traceback text.
``<prefix>_relay``
    The relay lease of a SQLite database (one active relay per database file).

Times are naive UTC ``datetime`` values written by the workers' clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
    event,
    text,
)

__all__ = ["OutboxTables", "build_tables"]

#: The payload format this release writes; a worker reads this format and every older one.
FORMAT_VERSION = 1

_ID = BigInteger().with_variant(Integer(), "sqlite")

#: The pending table's fill factor on PostgreSQL: inserts fill a page half, so a claim's lease
#: write (a new version of every claimed row, 50 at a time from a few pages) fits on the page
#: of the old version, a heap-only update: no new index entry, the WAL record only the bytes
#: that changed. Full pages send most of them to other pages with an index insertion each.
PENDING_FILLFACTOR = 50


def _delivery_columns() -> list[Column[Any]]:
    """The columns a pending delivery and a dead letter share (new objects on every call)."""
    return [
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("event_id", Uuid(), nullable=False),
        Column("format", SmallInteger(), nullable=False),
        Column("signal", String(255), nullable=False),
        Column("receiver", String(255), nullable=False),
        Column("delivery", String(16), nullable=False, default="durable"),
        Column("order_key", String(255)),
        Column("payload", Text(), nullable=False),
        Column("sent_at", DateTime(), nullable=False),
    ]


def _leave_room_for_leases(table: Table, connection: Connection, **kw: Any) -> None:
    if connection.dialect.name == "postgresql":
        name = connection.dialect.identifier_preparer.format_table(table)
        connection.exec_driver_sql(f"ALTER TABLE {name} SET (fillfactor = {PENDING_FILLFACTOR})")


@dataclass(frozen=True)
class OutboxTables:
    """The three tables of an outbox, bound to one ``MetaData``."""

    metadata: MetaData
    pending: Table
    dead: Table
    relay: Table


def build_tables(metadata: MetaData, prefix: str, schema: str | None) -> OutboxTables:
    """Add the outbox tables named from ``prefix`` to ``metadata``.

    Args:
        metadata: The ``MetaData`` to add them to (the application's own, for Alembic).
        prefix: The name of the pending table; the others append ``_dead`` and ``_relay``.
        schema: The database schema of the tables, or None for the default one.

    Returns:
        The tables.
    """
    pending = Table(
        prefix,
        metadata,
        *_delivery_columns(),
        Column("available_at", DateTime(), nullable=False),
        Column("attempts", Integer(), nullable=False, default=0),
        Column("locked_by", String(128)),
        Column("locked_until", DateTime()),
        Column("last_error", Text()),
        # No index on the due time: claims walk the primary key oldest first (the planner does so
        # even with one), and every index costs each send and each claim a write.
        # Ordered receivers: is an older delivery of the same receiver and key still pending?
        Index(
            f"{prefix}_order",
            "receiver",
            "order_key",
            "id",
            postgresql_where=text("order_key IS NOT NULL"),
            sqlite_where=text("order_key IS NOT NULL"),
        ),
        schema=schema,
    )
    # Set by an ALTER TABLE right after the CREATE TABLE (the Table option postgresql_with
    # needs SQLAlchemy 2.1); a migration runs the same statement.
    event.listen(pending, "after_create", _leave_room_for_leases)
    dead = Table(
        f"{prefix}_dead",
        metadata,
        *_delivery_columns(),
        Column("attempts", Integer(), nullable=False),
        Column("failed_at", DateTime(), nullable=False),
        Column("error", Text(), nullable=False),
        Column("traceback", Text(), nullable=False),
        Index(f"{prefix}_dead_failed", "failed_at"),
        schema=schema,
    )
    relay = Table(
        f"{prefix}_relay",
        metadata,
        Column("name", String(64), primary_key=True),
        Column("holder", String(128), nullable=False),
        Column("lease_until", DateTime(), nullable=False),
        schema=schema,
    )
    return OutboxTables(metadata, pending, dead, relay)
