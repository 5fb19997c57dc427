"""Which migration a database is at, read without changing it (for `liaison check`)."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from storage.db import alembic_config, make_engine


def revisions(url: str) -> tuple[str | None, str | None]:
    """The database's current migration (None: an empty database) and the latest there is."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return current, head
