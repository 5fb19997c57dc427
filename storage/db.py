"""Engine and session factory, and migrations to head."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, text
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, start transactions, so that SAVEPOINTs and
            # rollbacks behave (see SQLAlchemy's "Serializable isolation / Savepoints").
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            # IMMEDIATE takes the write lock up front: two deferred transactions that read
            # and then write fail at once with "database is locked" (WAL snapshot upgrade),
            # while IMMEDIATE ones wait for each other within the busy timeout.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def hand_made_search_left_out(
    obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any
) -> bool:
    """Autogenerate's filter: the database's own full-text machinery (FTS5 tables on SQLite,
    the tsvector column and its GIN index on PostgreSQL) is made by hand in migration 0005."""
    if kind == "table" and name and name.startswith("content_fts"):
        return False
    return not (name in ("search", "ix_content_search") and kind in ("column", "index"))


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Apply Alembic migrations to head on this engine's database."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Store:
    """The database a process talks to: an engine and short-lived sessions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(text("SELECT 1")).scalar() == 1
