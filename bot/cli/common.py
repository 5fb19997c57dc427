"""What every `liaison` command shares: the console, settings, the store and the clock."""

from __future__ import annotations

import csv
import io
import json
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.core.logs import configure

if TYPE_CHECKING:
    from bot.core.business_time import Company
    from bot.core.delivery import Deliverer, Directory, Messenger
    from bot.core.router import Router
    from bot.core.settings import Settings
    from digests.scheduler import AsyncDueWork
    from handlers.ingest import Ingestor
    from storage.db import Store

    RouterFactory = Callable[[Company, dict[str, str]], Router]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)  # what went wrong, and what to do


def fail(message: str, code: int = 2) -> NoReturn:
    """One red line naming the problem, then exit with `code`."""
    err.print(f"[red]{escape(message)}[/red]")
    raise typer.Exit(code)


def now() -> datetime:
    return datetime.now(UTC)


def router_factory(ctx: typer.Context) -> RouterFactory:
    """The composition root's `build_router`, handed to the CLI as the context's object."""
    factory: RouterFactory = ctx.obj
    return factory


def load_settings() -> Settings:
    """The settings, or a clear message naming the bad variable (never a traceback)."""
    from pydantic import ValidationError

    from bot.core.settings import Settings

    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors(include_url=False, include_input=False):
            name = problem["loc"][0] if problem["loc"] else "settings"
            err.print(f"[red]{name}: {problem['msg'].removeprefix('Value error, ')}[/red]")
        raise typer.Exit(2) from None
    if teams := settings.teams_credentials_problem():
        fail(teams)
    if settings.log_format != "text":
        configure(settings.log_format, verbose=logging.getLogger().level == logging.DEBUG)
    return settings


def open_store(settings: Settings) -> Store:
    """The migrated store, disposed of when the command ends (so SQLite leaves no -wal/-shm
    files behind); without a database that answers, one line saying why and what to do."""
    from storage.db import Store, reason, safe_url, unavailable

    try:
        store = Store.open(settings.database_url)
    except Exception as error:
        if not unavailable(error):
            raise
        typer.echo(
            f"database unreachable at {safe_url(settings.database_url)}: {reason(error)}"
            f" — {database_fix(reason(error))}",
            err=True,
        )
        raise typer.Exit(1) from None
    weakref.finalize(store, store.engine.dispose)  # also at exit: SQLite then removes -wal/-shm
    return store


def database_fix(why: str) -> str:
    """What an operator can do about a database that does not answer, from the driver's words."""
    if "does not exist" in why:
        return "create it (e.g. `createdb NAME`) or correct LIAISON_DATABASE_URL"
    if "password authentication failed" in why or "no password supplied" in why:
        return "correct the user or password in LIAISON_DATABASE_URL"
    if "unable to open database file" in why:
        return "make the SQLite file's folder writable, or correct LIAISON_DATABASE_URL"
    return "start the database or correct LIAISON_DATABASE_URL"


def directories(messengers: list[Messenger]) -> list[Directory]:
    from bot.core.delivery import Directory

    return [m for m in messengers if isinstance(m, Directory)]


def deliverer(settings: Settings, store: Store) -> Deliverer:
    """A deliverer over every platform the settings enable, with their member directories."""
    from bot.core.delivery import Deliverer
    from bot.web.server import platform_messengers

    messengers = platform_messengers(settings, store)
    return Deliverer(store, messengers, directories(messengers))


def ingestor(settings: Settings, sender: Deliverer) -> Ingestor:
    """Lead ingestion as the webhook does it, delivering through `sender`."""
    from handlers.ingest import Ingestor

    return Ingestor(
        sender.store,
        sender,
        sender.directories,
        settings.default_channel("admin"),
        settings.company,
        threads=settings.ingest_threads,
    )


def lookups(settings: Settings, sender: Deliverer) -> list[AsyncDueWork]:
    """The scheduler's retries of failed owner lookups (leads waiting as `routing`)."""
    return [ingestor(settings, sender).retry_routing]


TABLE_FORMATS = ("table", "json", "csv")
FormatOption = Annotated[str, typer.Option("--format", help="table|json|csv")]


def print_rows(columns: Sequence[str], rows: Iterable[Sequence[str]], format_: str) -> None:
    """Rows as a table (at its full width when piped, never cut), a JSON list or CSV."""
    if format_ not in TABLE_FORMATS:
        fail(f"--format is one of {', '.join(TABLE_FORMATS)}.")
    if format_ == "json":
        typer.echo(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=2))
        return
    if format_ == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        typer.echo(buffer.getvalue(), nl=False)
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console = out if out.is_terminal else Console(width=WIDE, soft_wrap=True)
    console.print(table)


WIDE = 1_000  # columns of a piped table: wide enough that no cell is cut


@asynccontextmanager
async def one_session(sender: Deliverer, settings: Settings) -> AsyncIterator[None]:
    """All of a command's Slack Web API calls on one HTTP session (`shared_session`)."""
    from bot.slack.app import SlackMessenger
    from bot.slack.client import shared_session

    slack = sender.messengers.get("slack")
    if not isinstance(slack, SlackMessenger):
        yield
        return
    async with shared_session(slack.client, settings.call_timeout):
        yield
