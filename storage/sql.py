"""Statement helpers the storage modules share: inserts that skip or name conflicts,
IN lists in chunks."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session


def add_once(session: Session, row: Any) -> bool:
    """Insert `row` in a savepoint; False when a unique constraint says it already exists
    (a concurrent writer got there first). Callers check for the row beforehand, cheaply."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True


@cache
def insert_ignoring_conflicts(dialect: str, table: Any) -> Insert:
    """`INSERT … ON CONFLICT DO NOTHING RETURNING id` on `table`, built once per dialect:
    a row a concurrent writer already made (any unique column) is left alone, and no id
    comes back, so the caller reads the row that won instead."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing().returning(table.c.id)


def insert_or_none(session: Session, table: Any, values: dict[str, Any]) -> int | None:
    """Insert one row unless a unique column already holds its value; its id, or None."""
    connection = session.connection()
    statement = insert_ignoring_conflicts(connection.dialect.name, table)
    new_id: int | None = connection.execute(statement, values).scalar()
    return new_id


# Rows named in one IN list at most: well under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 2000


def chunks(values: Sequence[Any], size: int = IN_CHUNK) -> list[Sequence[Any]]:
    return [values[start : start + size] for start in range(0, len(values), size)]
