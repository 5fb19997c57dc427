"""Alembic environment: runs on the connection handed in, or on the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from storage.db import include_in_autogenerate

config = context.config
target_metadata = SQLModel.metadata


def migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=include_in_autogenerate,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    """On the connection handed in by `storage.db.upgrade`, or on the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        migrate(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        migrate(connection)


run()
