"""Bulk writes of generated rows, a chunk at a time, in the session's transaction: COPY on
PostgreSQL, SQLAlchemy Core executemany elsewhere (SQLite).

Rows are plain tuples in a fixed column order, so a million of them cost no ORM
bookkeeping, and JSON values come already encoded (`json.dumps`, as SQLAlchemy would
store them), so repeated ones are encoded once. On PostgreSQL a chunk's COPYs run on a
worker thread while the caller computes the next chunk (`submit`, then `wait` before the
session is used again): the database and Python work side by side."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

from sqlalchemy import JSON, Column, MetaData, Table, Text, insert, text
from sqlmodel import Session

Row = tuple[Any, ...]
Batch = tuple[Table, Sequence[str], Sequence[Row]]  # a table, its columns, rows in that order


class BulkWriter:
    """Writes rows into tables through one session, without the ORM.

    `trusted` rows refer only to rows that exist or are written in the same transaction
    (ids the caller read or reserved): on PostgreSQL, where the role may, their foreign-key
    checks — one lookup per row and reference, most of a COPY's cost — are left out for
    the transaction (`session_replication_role = replica`, as `pg_restore
    --disable-triggers` does). Everywhere else every constraint is checked."""

    def __init__(self, session: Session, *, trusted: bool = False) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect.name
        self.trusted = trusted
        self._types: dict[str, dict[str, str]] = {}
        self._plain: dict[str, Table] = {}
        self._reserved: dict[str, int] = {}
        self._worker: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._may_skip_checks: bool | None = None

    def __enter__(self) -> BulkWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if error is None:
                self.wait()
        finally:
            if self._worker is not None:
                self._worker.shutdown(wait=True)

    # ---------------------------------------------------------------- writing

    def write(self, table: Table, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """Insert `rows` (values in the order of `columns`) into `table`, now."""
        self.submit([(table, columns, rows)])
        self.wait()

    def submit(self, batches: Sequence[Batch]) -> None:
        """Write these batches, in order: on PostgreSQL on the worker thread (the session
        must not be used until `wait`), elsewhere at once."""
        self.wait()
        if self.dialect != "postgresql":
            for table, columns, rows in batches:
                self._insert(table, columns, rows)
            return
        connection = self.session.connection().connection.driver_connection
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-copy")
        self._pending = self._worker.submit(self._copy_all, connection, batches)

    def wait(self) -> None:
        """Until the batches submitted are written (their error, if any, is raised here)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _insert(self, table: Table, columns: Sequence[str], rows: Sequence[Row]) -> None:
        if rows:
            self.session.connection().execute(
                insert(self._encoded(table)), [dict(zip(columns, r, strict=True)) for r in rows]
            )

    def _encoded(self, table: Table) -> Table:
        """`table` with its JSON columns as text, for values that are encoded already."""
        if table.name not in self._plain:
            columns = [
                Column(
                    c.name,
                    Text() if isinstance(c.type, JSON) else c.type,
                    primary_key=c.primary_key,
                )
                for c in table.columns
            ]
            self._plain[table.name] = Table(table.name, MetaData(), *columns)
        return self._plain[table.name]

    def _copy_all(self, connection: Any, batches: Sequence[Batch]) -> None:
        """Binary COPY of each batch (a second thread sends while this one formats)."""
        from psycopg.copy import QueuedLibpqWriter

        with connection.cursor() as cursor:
            if self.trusted and self._skip_checks(cursor):
                cursor.execute("SET LOCAL session_replication_role = replica")
            for table, columns, rows in batches:
                if not rows:
                    continue
                types = self._column_types(cursor, table)
                names = ", ".join(f'"{c}"' for c in columns)
                statement = f'COPY "{table.name}" ({names}) FROM STDIN (FORMAT BINARY)'
                with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
                    copy.set_types([types[c] for c in columns])
                    for row in rows:
                        copy.write_row(row)

    def _skip_checks(self, cursor: Any) -> bool:
        if self._may_skip_checks is None:
            cursor.execute("SELECT current_setting('is_superuser')")
            self._may_skip_checks = cursor.fetchone()[0] == "on"
        return self._may_skip_checks

    def _column_types(self, cursor: Any, table: Table) -> dict[str, str]:
        """The type to send each column's values as (binary COPY must name them exactly):
        the database's own, but JSON as text — json's binary form is its text, and the values
        are encoded already (psycopg's json dumper would encode them again)."""
        if table.name not in self._types:
            cursor.execute(
                "SELECT column_name, udt_name FROM information_schema.columns "
                "WHERE table_name = %s AND table_schema = current_schema()",
                (table.name,),
            )
            self._types[table.name] = {
                str(name): "text" if udt == "json" else str(udt) for name, udt in cursor.fetchall()
            }
        return self._types[table.name]

    # ---------------------------------------------------------------- ids and statistics

    def reserve_ids(self, table: Table, count: int) -> list[int]:
        """`count` new primary keys for `table`, ascending, for rows that others refer to:
        from the sequence on PostgreSQL; on SQLite (whose write lock the transaction holds)
        after the largest id written or reserved."""
        if count <= 0:
            return []
        self.wait()
        connection = self.session.connection()
        if self.dialect == "postgresql":
            found = connection.execute(
                text(
                    "SELECT nextval(pg_get_serial_sequence(:name, 'id')) "
                    "FROM generate_series(1, :count)"
                ),
                {"name": table.name, "count": count},
            )
            return sorted(int(value) for (value,) in found)
        largest = connection.execute(text(f'SELECT max(id) FROM "{table.name}"')).scalar()
        start = max(int(largest or 0), self._reserved.get(table.name, 0)) + 1
        self._reserved[table.name] = start + count - 1
        return list(range(start, start + count))

    def analyze(self, tables: Sequence[Table]) -> None:
        """Refresh the planner's statistics after a large load."""
        self.wait()
        connection = self.session.connection()
        if self.dialect == "postgresql":
            connection.execute(text("ANALYZE " + ", ".join(f'"{t.name}"' for t in tables)))
        else:
            for table in tables:
                connection.execute(text(f'ANALYZE "{table.name}"'))
