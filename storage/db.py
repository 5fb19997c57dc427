"""Engine and session factory, and migrations to head."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, exc, make_url, text
from sqlmodel import Session, create_engine

from storage import arrays

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT = 10  # seconds to reach PostgreSQL before a connection attempt fails
# PostgreSQL error classes that mean "no database to talk to": connection exceptions,
# shutdown / not yet accepting connections, no such database, auth refused, too many clients.
UNAVAILABLE_SQLSTATES = ("08", "57P", "3D000", "28", "53300")
# SQLite's ways of saying the file cannot be used right now.
UNAVAILABLE_SQLITE = ("unable to open database", "disk i/o error", "database is locked")
READ_ONLY = "liaison_read_only"  # an execution option: a transaction that never writes


def make_engine(url: str, pool_size: int | None = None) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and foreign keys. `pool_size`
    caps its connections (SQLAlchemy's default otherwise: 5, and 10 more on demand)."""
    sizing: dict[str, Any] = {}
    if pool_size is not None:
        sizing = {"pool_size": pool_size, "max_overflow": pool_size}
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **sizing
        )

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
            if connection.get_execution_options().get(READ_ONLY):
                # Only reads (`Store.reading`): a WAL snapshot, no write lock to wait for.
                connection.exec_driver_sql("BEGIN")
                return
            # IMMEDIATE takes the write lock up front: two deferred transactions that read
            # and then write fail at once with "database is locked" (WAL snapshot upgrade),
            # while IMMEDIATE ones wait for each other within the busy timeout.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    connect_args = {}
    if make_url(url).get_backend_name() == "postgresql" and "connect_timeout" not in url:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **sizing)


def unavailable(error: BaseException) -> bool:
    """Whether `error` (or what caused it) says the database does not answer — down,
    unreachable, refusing connections, its file unusable — rather than a bad query."""
    return _database_error(error) is not None


def _database_error(error: BaseException) -> BaseException | None:
    """The error in `error`'s chain that says the database does not answer, if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _unavailable_here(current):
            return current
        current = current.__cause__ or current.__context__
    return None


def busy(error: BaseException) -> bool:
    """Whether `error` is SQLite's "database is locked": another writer holds the file for a
    moment (worth retrying at once), not a database that went away."""
    found = _database_error(error)
    return found is not None and "database is locked" in str(found).lower()


def _unavailable_here(error: BaseException) -> bool:
    if isinstance(error, exc.TimeoutError):  # no pooled connection came free in time
        return True
    if type(error).__module__.startswith("psycopg") and type(error).__name__ in (
        "OperationalError",
        "InterfaceError",
    ):
        # The driver's own error, deeper in the chain than SQLAlchemy's wrapper (a pool's
        # ping that found the socket closed, then failed to reset the connection).
        state = getattr(error, "sqlstate", None)
        return state is None or str(state).startswith(UNAVAILABLE_SQLSTATES)
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated or isinstance(error, exc.InterfaceError):
        return True
    if not isinstance(error, exc.OperationalError):
        return False
    original = error.orig
    if type(original).__module__.startswith("sqlite3"):
        return str(original).lower().startswith(UNAVAILABLE_SQLITE)
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    # Without an SQLSTATE the server never answered: the connection failed or broke.
    return state is None or str(state).startswith(UNAVAILABLE_SQLSTATES)


def reason(error: BaseException) -> str:
    """The driver's own words for a database error, on one line (no SQL, no parameters)."""
    error = _database_error(error) or error
    original = error.orig if isinstance(error, exc.DBAPIError) else error
    return " ".join(str(original).split())[:300] or type(original).__name__


def safe_url(url: str) -> str:
    """The database URL with its password masked, fit for a log line."""
    return make_url(url).render_as_string(hide_password=True)


def include_in_autogenerate(
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


class Outage:
    """Whether the database answered when the loops and the health check last asked: one
    log line when it stops answering, one when it answers again, nothing per retry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.since: float | None = None
        self._lock = threading.Lock()  # the console ticks from a thread of its own

    @property
    def down(self) -> bool:
        return self.since is not None

    def lost(self, error: BaseException) -> None:
        """The database did not answer (`error` says why)."""
        with self._lock:
            if self.since is not None:
                return
            self.since = self.clock()
        log.warning("database unreachable: %s, retrying", reason(error))

    def back(self) -> None:
        """The database answered."""
        with self._lock:
            if self.since is None:
                return
            seconds, self.since = self.clock() - self.since, None
        log.info("database reachable again after %.0f s", seconds)


class Store:
    """The database a process talks to: an engine and short-lived sessions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.outage = Outage()
        self._reader = engine.execution_options(**{READ_ONLY: True})

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
            if engine.dialect.name == "postgresql":
                with engine.connect() as connection:
                    arrays.learn_column_types(connection)
        return cls(engine)

    def share(self, pool_size: int) -> Store:
        """The same database through connections of its own (`pool_size`, as many again on
        demand), for work that must not wait behind a burst elsewhere: delivery and the
        clock. An in-memory SQLite database lives in one connection, so it is this store."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            return self
        shared = Store(make_engine(url.render_as_string(hide_password=False), pool_size))
        shared.outage = self.outage  # one line per outage, whichever pool saw it
        return shared

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

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session that only reads: on SQLite it neither takes nor waits for the write
        lock (a WAL snapshot), so a look-up never queues behind other transactions."""
        # Closing ends the transaction (the pool rolls it back) and keeps what was loaded.
        with Session(self._reader, expire_on_commit=False) as session:
            yield session

    def ping(self) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(text("SELECT 1")).scalar() == 1
