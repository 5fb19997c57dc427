"""PostgreSQL multi-row INSERTs of one fixed shape: a parameter per column holding that
column's values as an array, `unnest`ed in the order given.

A multi-row VALUES statement has a parameter per value, so its text changes with the number
of rows and runs to tens of kilobytes: psycopg converts it again on every call (it caches
only statements under 4 KB and 50 parameters) and the server parses and plans it again.
The text here depends only on the table and columns, so psycopg caches it and prepares it
once per connection (after its `prepare_threshold` uses). The arrays go in binary (`%b`):
their text form would have every quote of every JSON value escaped, in Python."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlmodel import Session

# The type of each column as PostgreSQL names it (`udt_name`), by table: the schema comes
# from the migrations, the same in every database this process opens.
_TYPES: dict[str, dict[str, str]] = {}
_STATEMENTS: dict[tuple[str, tuple[str, ...], tuple[str, ...] | None, tuple[str, ...]], str] = {}


def learn_column_types(connection: Connection) -> None:
    """Every table's column types at once, when a store opens at the latest migration, so no
    bulk insert (nor a test counting a tick's statements) reads them in the middle of its
    work; a table not known yet is read when first written (`_column_types`)."""
    if _TYPES:
        return
    rows = connection.exec_driver_sql(
        "SELECT table_name, column_name, udt_name FROM information_schema.columns "
        "WHERE table_schema = current_schema()"
    )
    for table, name, udt in rows.all():
        _TYPES.setdefault(str(table), {})[str(name)] = str(udt)


def _column_types(session: Session, table: Table) -> dict[str, str]:
    if table.name not in _TYPES:
        rows = session.connection().exec_driver_sql(
            "SELECT column_name, udt_name FROM information_schema.columns "
            "WHERE table_name = %(name)s AND table_schema = current_schema()",
            {"name": table.name},
        )
        _TYPES[table.name] = {str(name): str(udt) for name, udt in rows.all()}
    return _TYPES[table.name]


def _statement(
    session: Session,
    table: Table,
    columns: Sequence[str],
    conflict: Sequence[str] | None,
    returning: Sequence[str],
) -> str:
    on = None if conflict is None else tuple(conflict)
    key = (table.name, tuple(columns), on, tuple(returning))
    if key not in _STATEMENTS:
        types = _column_types(session, table)
        names = ", ".join(f'"{c}"' for c in columns)
        # JSON arrives encoded, as text (json[] would be parsed element by element).
        arrays = ", ".join(
            f"CAST(%(c{n})b AS {'text' if types[c] in ('json', 'jsonb') else types[c]}[])"
            for n, c in enumerate(columns)
        )
        values = ", ".join(
            f'"{c}"::{types[c]}' if types[c] in ("json", "jsonb") else f'"{c}"' for c in columns
        )
        sql = (
            f'INSERT INTO "{table.name}" ({names}) SELECT {values} '
            f"FROM unnest({arrays}) WITH ORDINALITY AS rows ({names}, position) "
            "ORDER BY position"
        )
        if conflict is not None:
            target = f" ({', '.join(conflict)})" if conflict else ""
            sql += f" ON CONFLICT{target} DO NOTHING"
        if returning:
            sql += " RETURNING " + ", ".join(f'"{c}"' for c in returning)
        _STATEMENTS[key] = sql
    return _STATEMENTS[key]


def _encoded(value: Any) -> str:
    """`value` as JSON text, as SQLAlchemy would store it (None too: JSON null); the empty
    values many rows hold (a new clock's snoozes) without the encoder."""
    if value is None:
        return "null"
    if not value and isinstance(value, list | dict):
        return "[]" if isinstance(value, list) else "{}"
    return json.dumps(value)


def insert_rows(
    session: Session,
    *,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    conflict: Sequence[str] | None = None,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert `rows` (values in the order of `columns`; JSON columns as Python values) into
    `table` on PostgreSQL, in that order, in one statement whose text is the same for any
    number of rows. `conflict`: ON CONFLICT (these columns, or `()` any) DO NOTHING. The
    `returning` columns of the rows written, in the order written."""
    if not rows:
        return []
    types = _column_types(session, table)
    arrays: dict[str, list[Any]] = {}
    for n, column in enumerate(columns):
        values = [row[n] for row in rows]
        if types[column] in ("json", "jsonb"):
            values = [_encoded(v) for v in values]
        arrays[f"c{n}"] = values
    result = session.connection().exec_driver_sql(
        _statement(session, table, columns, conflict, returning), arrays
    )
    return [tuple(row) for row in result.all()] if returning else []
