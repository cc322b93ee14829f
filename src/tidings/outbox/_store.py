"""Reading and writing the outbox tables: the claim, completion, retries, dead letters.

PostgreSQL claims due rows with ``FOR UPDATE SKIP LOCKED`` and marks them with a lease
(``locked_by``, ``locked_until``): any number of workers claim disjoint rows, and the rows of a
worker that died come back when its lease expires. SQLite has no row locks: a claim runs in a
``BEGIN IMMEDIATE`` transaction (writers are serialized by the database file), and one relay per
database file holds the relay lease in the ``_relay`` table; a second relay waits for it (or
says who holds it). Other dialects use the PostgreSQL statements without ``SKIP LOCKED``.

Every claim counts an attempt, so a receiver that kills its worker each time still reaches the
dead letters after ``max_attempts``.
"""

from __future__ import annotations

import contextlib
import datetime
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
    Engine,
    Text,
    all_,
    and_,
    any_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    true,
    update,
)

from tidings.outbox._insert import DirectQuery, RowWriter
from tidings.outbox._records import Claimed, Failure, Outcome, Taken, utcnow
from tidings.outbox._schema import FORMAT_VERSION, OutboxTables

__all__ = ["Store"]


class Store:
    """The statements of one outbox on one engine."""

    def __init__(self, engine: Engine, tables: OutboxTables, *, wake: bool = True) -> None:
        self.engine = engine
        self.tables = tables
        self.sqlite = engine.dialect.name == "sqlite"
        self.postgresql = engine.dialect.name == "postgresql"
        self.skip_locked = engine.dialect.name in {"postgresql", "mysql", "mariadb", "oracle"}
        # Built once: a send's write is one prepared statement (see tidings.outbox._insert),
        # which also wakes the relays (NOTIFY on PostgreSQL; see tidings.outbox._wakeup).
        self._writer = RowWriter(engine, tables.pending, wake=wake)
        self._queries: dict[tuple[str, tuple[str, ...], int], DirectQuery] = {}
        self._delete = delete(tables.pending).where(self._among())

    @contextlib.contextmanager
    def transaction(self, *, single: bool = False) -> Iterator[Connection]:
        """A short write transaction; on SQLite it takes the write lock at once.

        Args:
            single: The block runs one statement: on PostgreSQL it runs in autocommit mode,
                its own transaction, without a ``BEGIN`` and a ``COMMIT`` round trip.
        """
        if single and self.postgresql:
            with self.engine.connect() as conn:
                yield conn.execution_options(isolation_level="AUTOCOMMIT")
            return
        with self.engine.connect() as conn:
            if self.sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
            conn.commit()

    # -- producing ------------------------------------------------------------------------

    def write(
        self,
        conn: Connection,
        event_id: uuid.UUID,
        signal: str,
        receivers: Sequence[str],
        payload: str,
        sent_at: datetime.datetime,
        delivery: str = "durable",
    ) -> None:
        """Insert one pending delivery per receiver on ``conn``, in its current transaction."""
        rows = [self.row(event_id, signal, name, payload, sent_at, delivery) for name in receivers]
        self.insert_rows(conn, rows)

    @staticmethod
    def row(
        event_id: uuid.UUID,
        signal: str,
        receiver: str,
        payload: str,
        sent_at: datetime.datetime,
        delivery: str = "durable",
        order_key: str | None = None,
    ) -> dict[str, Any]:
        """The parameters of one pending delivery's insert."""
        return {
            "event_id": event_id,
            "format": FORMAT_VERSION,
            "signal": signal,
            "receiver": receiver,
            "delivery": delivery,
            "order_key": order_key,
            "payload": payload,
            "sent_at": sent_at,
            "available_at": sent_at,
            "attempts": 0,
        }

    def insert_rows(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert prepared rows (see :meth:`row`) on ``conn``, in its current transaction."""
        self._writer.insert(conn, rows)

    # -- the relay lease (SQLite) ---------------------------------------------------------

    def take_relay_lease(
        self, conn: Connection, me: str, seconds: float, now: datetime.datetime
    ) -> tuple[str, datetime.datetime] | None:
        """Take or renew the relay lease; return ``(holder, until)`` if another relay has it."""
        table = self.tables.relay
        until = now + datetime.timedelta(seconds=seconds)
        held = conn.execute(
            select(table.c.holder, table.c.lease_until).where(table.c.name == "relay")
        ).first()
        if held is None:
            conn.execute(insert(table).values(name="relay", holder=me, lease_until=until))
            return None
        if held.holder != me and held.lease_until > now:
            return held.holder, held.lease_until
        conn.execute(
            update(table).where(table.c.name == "relay").values(holder=me, lease_until=until)
        )
        return None

    def drop_relay_lease(self, me: str) -> None:
        """Give the relay lease up, if ``me`` holds it."""
        table = self.tables.relay
        with self.transaction() as conn:
            conn.execute(delete(table).where(table.c.name == "relay", table.c.holder == me))

    # -- claiming and completing ----------------------------------------------------------

    def claim(
        self,
        conn: Connection,
        me: str,
        limit: int,
        lease: float,
        now: datetime.datetime,
        modes: Sequence[str] = ("durable",),
        done: Sequence[int] = (),
    ) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries of ``modes`` to ``me``, counting an attempt.

        Args:
            conn: The connection, in the transaction the claim commits with.
            me: The relay the leases are written for.
            limit: The most deliveries claimed.
            lease: Seconds the lease lasts.
            now: The current time.
            modes: The delivery modes claimed.
            done: Ids of deliveries whose receivers returned, deleted first. On PostgreSQL in
                the claim's statement (one round trip for the batch).

        Returns:
            The deliveries, oldest first.
        """
        until = now + datetime.timedelta(seconds=lease)
        params: dict[str, Any] = {"now": now, "me": me, "until": until}
        if self.postgresql:
            params["done"] = self._ids(done)
        elif done:
            conn.execute(self._delete, {"ids": self._ids(done)})
        rows = [Claimed(*row) for row in self._query("claim", modes, limit).rows(conn, params)]
        rows.sort(key=lambda row: row.id)
        return rows

    def lock(
        self, conn: Connection, limit: int, now: datetime.datetime, modes: Sequence[str]
    ) -> Taken:
        """Take up to ``limit`` due deliveries in ``conn``'s transaction (PostgreSQL).

        ``DELETE … WHERE id = ANY(ARRAY(SELECT … FOR UPDATE SKIP LOCKED)) RETURNING``, no lease
        written: the rows are deleted by a transaction held open while they run, so other
        workers skip them, and they are back the moment it ends without committing, also when
        its worker dies. :meth:`settle` puts back, in that transaction, those not done; the
        attempt is counted there.

        Returns:
            The deliveries, oldest first, ``attempts`` being this attempt's number.
        """
        taken = Taken()
        # Fetched at once and unpacked: row by row through the result costs more than the rest.
        for r in self._query("lock", modes, limit).rows(conn, {"now": now}):
            # ``attempts`` (r[9]) counts the recorded attempts: this one is the next.
            taken.rows.append(
                Claimed(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9] + 1)
            )
            taken.kept[r[0]] = (r[10], r[11])
        taken.rows.sort(key=lambda row: row.id)
        return taken

    def settle(self, conn: Connection, outcome: Outcome, taken: Taken) -> None:
        """Record the outcome of deliveries :meth:`lock` took, on its transaction.

        Done deliveries stay deleted; dead ones go to the dead letters; the others are put back
        with their id: failed ones due after their delay with the attempt counted, postponed
        ones after theirs, and released ones (and any the outcome does not mention) as they
        were.
        """
        now = utcnow()
        self._bury(conn, [f for f in outcome.failures if f.dead], now)
        back: list[dict[str, Any]] = []

        def put(
            row: Claimed, attempts: int, due: datetime.datetime | None, error: str | None
        ) -> None:
            available_at, last_error = taken.kept[row.id]
            values = {name: getattr(row, name) for name in Claimed._fields}
            values.update(
                attempts=attempts,
                available_at=available_at if due is None else due,
                last_error=last_error if error is None else error,
            )
            back.append(values)

        seen = set(outcome.done)
        for failure in outcome.failures:
            seen.add(failure.row.id)
            if not failure.dead:
                due = now + datetime.timedelta(seconds=failure.delay)
                put(failure.row, failure.row.attempts, due, failure.error)
        for row, delay in outcome.postponed:
            seen.add(row.id)
            put(row, row.attempts - 1, now + datetime.timedelta(seconds=delay), None)
        for row in taken.rows:  # released, or not reached
            if row.id not in seen:
                put(row, row.attempts - 1, None, None)
        if back:
            conn.execute(insert(self.tables.pending), back)

    def _query(self, kind: str, modes: Sequence[str], limit: int) -> DirectQuery:
        """:meth:`_statement`, compiled once to run on the DBAPI cursor where it can."""
        key = (kind, tuple(modes), limit)
        query = self._queries.get(key)
        if query is None:
            statement = self._statement(kind, modes, limit)
            columns = self._claimed_columns()
            if kind == "lock":
                columns += [self.tables.pending.c.available_at, self.tables.pending.c.last_error]
            query = self._queries[key] = DirectQuery(statement, columns, self.engine.dialect)
        return query

    def _statement(self, kind: str, modes: Sequence[str], limit: int) -> Any:
        """The claim (``"claim"``) or lock (``"lock"``) statement (:meth:`_query` keeps it).

        A statement object reused with new parameters skips SQLAlchemy's construction and
        cache-key work on every batch.
        """
        table = self.tables.pending
        now = bindparam("now", type_=table.c.available_at.type)
        older = table.alias("older")
        # On PostgreSQL the claim deletes the deliveries done last batch in its own statement
        # (a CTE): they are neither claimed nor, as older deliveries of an order key, waited for.
        combined = kind == "claim" and self.postgresql
        done = _id_array("done")
        # The filters compare every row the claim walks with the ids done: as ARRAY(SELECT
        # ...) the text is parsed into an array once per statement, not once per row (a plain
        # cast of the parameter is evaluated again for each row under a prepared plan).
        done_once = func.array(select(func.unnest(done)).scalar_subquery())
        pending_older = [
            older.c.receiver == table.c.receiver,
            older.c.order_key == table.c.order_key,
            older.c.id < table.c.id,
        ]
        if combined:
            pending_older.append(older.c.id != all_(done_once))
        due_where = [
            table.c.available_at <= now,
            or_(table.c.locked_until.is_(None), table.c.locked_until < now),
            table.c.delivery.in_(list(modes)) if len(modes) > 1 else table.c.delivery == modes[0],
            or_(table.c.order_key.is_(None), ~exists().where(*pending_older)),
        ]
        if combined:
            due_where.append(table.c.id != all_(done_once))
        if self.postgresql:
            # Wrapped, the due filter is one condition PostgreSQL cannot estimate (it guesses
            # half the rows). Unwrapped, a table without current statistics (a queue table
            # rarely has them: a fresh one, a burst) multiplies default selectivities to one
            # row, and every claim scans and sorts the whole table instead of walking the
            # primary key oldest first and stopping at ``limit``.
            due_where = [case((and_(*due_where), true()), else_=false())]
        due = select(table.c.id).where(*due_where).order_by(table.c.id).limit(limit)
        if self.skip_locked:
            due = due.with_for_update(skip_locked=True)
        # PostgreSQL plans "id IN (subquery)" as a hash join over a scan of the whole table;
        # "id = ANY(ARRAY(subquery))" looks the chosen ids up in the primary key.
        chosen = (
            table.c.id == any_(func.array(due.scalar_subquery()))
            if self.postgresql
            else table.c.id.in_(due)
        )
        statement: Any
        if kind == "lock":
            statement = (
                delete(table)
                .where(chosen)
                .returning(*self._claimed_columns(), table.c.available_at, table.c.last_error)
            )
        else:
            statement = (
                update(table)
                .where(chosen)
                .values(
                    locked_by=bindparam("me", type_=table.c.locked_by.type),
                    locked_until=bindparam("until", type_=table.c.locked_until.type),
                    attempts=table.c.attempts + 1,
                )
                .returning(*self._claimed_columns())
            )
            if combined:
                statement = statement.add_cte(
                    delete(table).where(table.c.id == any_(done)).cte("done")
                )
        return statement

    def _claimed_columns(self) -> list[Any]:
        table = self.tables.pending
        return [
            table.c.id,
            table.c.event_id,
            table.c.format,
            table.c.signal,
            table.c.receiver,
            table.c.delivery,
            table.c.order_key,
            table.c.payload,
            table.c.sent_at,
            table.c.attempts,
        ]

    def extend(self, me: str, ids: Sequence[int], lease: float) -> bool:
        """Extend ``me``'s lease on the deliveries ``ids``, and on SQLite the relay lease.

        Returns:
            False if on SQLite another relay holds the relay lease now (``me``'s deliveries
            whose lease expired may be that relay's by now; those still ``me``'s are renewed).
        """
        table = self.tables.pending
        until = utcnow() + datetime.timedelta(seconds=lease)
        with self.transaction(single=not self.sqlite) as conn:
            conn.execute(
                update(table)
                .where(self._among(), table.c.locked_by == me)
                .values(locked_until=until),
                {"ids": self._ids(ids)},
            )
            if not self.sqlite:
                return True
            relay = self.tables.relay
            renewed = conn.execute(
                update(relay)
                .where(relay.c.name == "relay", relay.c.holder == me)
                .values(lease_until=until)
            )
            return renewed.rowcount == 1

    def finish(self, me: str, outcome: Outcome) -> None:
        """Record a batch's outcome in a transaction of its own."""
        with self.transaction() as conn:
            self.record(conn, me, outcome)

    def record(self, conn: Connection, me: str, outcome: Outcome) -> None:
        """Record the outcome of deliveries leased to ``me`` on ``conn``, in its transaction.

        See :class:`Outcome`.
        """
        table = self.tables.pending
        now = utcnow()
        done, failures = outcome.done, outcome.failures
        if done:
            conn.execute(self._delete, {"ids": self._ids(done)})
        dead = [failure for failure in failures if failure.dead]
        if dead:
            self._bury(conn, dead, now)
            conn.execute(delete(table).where(table.c.id.in_([f.row.id for f in dead])))
        for failure in failures:
            if not failure.dead:
                self._unlock(
                    conn,
                    me,
                    failure.row.id,
                    available_at=now + datetime.timedelta(seconds=failure.delay),
                    last_error=failure.error,
                    attempts=failure.row.attempts,
                )
        for row in outcome.released:
            self._unlock(conn, me, row.id, available_at=now, attempts=row.attempts - 1)
        for row, delay in outcome.postponed:
            self._unlock(
                conn,
                me,
                row.id,
                available_at=now + datetime.timedelta(seconds=delay),
                attempts=row.attempts - 1,
            )

    def _bury(self, conn: Connection, dead: Sequence[Failure], now: datetime.datetime) -> None:
        """Insert the dead letters of ``dead``."""
        if not dead:
            return
        conn.execute(
            insert(self.tables.dead),
            [
                {
                    "event_id": f.row.event_id,
                    "format": f.row.format,
                    "signal": f.row.signal,
                    "receiver": f.row.receiver,
                    "delivery": f.row.delivery,
                    "order_key": f.row.order_key,
                    "payload": f.row.payload,
                    "sent_at": f.row.sent_at,
                    "attempts": f.row.attempts,
                    "failed_at": now,
                    "error": f.error,
                    "traceback": f.traceback,
                }
                for f in dead
            ],
        )

    def _among(self) -> Any:
        """``id IN :ids`` (pass the ids through :meth:`_ids`).

        On PostgreSQL one array parameter, so the statement's text (and its prepared plan) is
        the same whatever the count.
        """
        table = self.tables.pending
        if self.postgresql:
            return table.c.id == any_(_id_array("ids"))
        return table.c.id.in_(bindparam("ids", expanding=True))

    def _ids(self, ids: Sequence[int]) -> Any:
        """The parameter of :meth:`_among` or of the claim's ``done`` for ``ids``.

        On PostgreSQL the text of an array: a Python list is dumped element by element, which
        for a batch costs more than building its claim.
        """
        if self.postgresql:
            return "{" + ",".join(map(str, ids)) + "}"
        return list(ids)

    def _unlock(self, conn: Connection, me: str, row_id: int, **values: Any) -> None:
        table = self.tables.pending
        mine = (table.c.id == row_id) & (table.c.locked_by == me)
        conn.execute(update(table).where(mine).values(locked_by=None, locked_until=None, **values))


def _id_array(name: str) -> Any:
    """A ``BIGINT[]`` parameter passed as the text of an array (see :meth:`Store._ids`)."""
    return cast(bindparam(name, type_=Text()), ARRAY(BigInteger()))
