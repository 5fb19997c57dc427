"""Shared fixtures: a migrated SQLite file per test and, where available, real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage.db import Store
from tests.slack_standin import SlackStandIn

PG_ADMIN_URL = os.environ.get(
    "LIAISON_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    """Slack's Web API, as strict as Slack (tests/slack_standin.py), for one test."""
    standin = await SlackStandIn().start()
    yield standin
    await standin.stop()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path / 'liaison.db'}")
    yield store
    store.engine.dispose()


def _pg_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    import psycopg

    try:
        with psycopg.connect(_plain(PG_ADMIN_URL), connect_timeout=3):
            return None
    except psycopg.Error as error:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {error}".strip()


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    reason = _pg_available()
    if reason is not None:
        if os.environ.get("LIAISON_REQUIRE_PG"):
            pytest.fail(reason)  # CI must run the PostgreSQL tests, not skip them
        pytest.skip(reason)
    name = f"liaison_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_plain(PG_ADMIN_URL), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(_plain(PG_ADMIN_URL), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    store = Store.open(pg_url)
    yield store
    store.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest) -> Store:
    """The same test on SQLite and on PostgreSQL."""
    fixture_name = "sqlite_store" if request.param == "sqlite" else "pg_store"
    store: Store = request.getfixturevalue(fixture_name)
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh SQLite file, then of a fresh PostgreSQL database (for tests that
    start their own server or process on it)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'liaison.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url
