"""What every `liaison` command shares: the console, settings, the store and the clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from bot.delivery import Deliverer, Directory, Messenger
    from bot.router import Router
    from bot.settings import Settings
    from digests.business_time import Company
    from digests.scheduler import AsyncDueWork
    from handlers.ingest import Ingestor
    from storage.db import Store

    RouterFactory = Callable[[Company, dict[str, str]], Router]

out = Console(soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One red line naming the problem, then exit with `code`."""
    out.print(f"[red]{escape(message)}[/red]")
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

    from bot.settings import Settings

    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors(include_url=False, include_input=False):
            name = problem["loc"][0] if problem["loc"] else "settings"
            out.print(f"[red]{name}: {problem['msg']}[/red]")
        raise typer.Exit(2) from None
    if teams := settings.teams_credentials_problem():
        fail(teams)
    return settings


def open_store(settings: Settings) -> Store:
    """The migrated store; without a database that answers, one line saying so and exit 1."""
    from storage.db import Store, reason, safe_url, unavailable

    try:
        return Store.open(settings.database_url)
    except Exception as error:
        if not unavailable(error):
            raise
        typer.echo(
            f"database unreachable at {safe_url(settings.database_url)}: {reason(error)}",
            err=True,
        )
        raise typer.Exit(1) from None


def directories(messengers: list[Messenger]) -> list[Directory]:
    from bot.delivery import Directory

    return [m for m in messengers if isinstance(m, Directory)]


def deliverer(settings: Settings, store: Store) -> Deliverer:
    """A deliverer over every platform the settings enable, with their member directories."""
    from bot.delivery import Deliverer
    from bot.server import platform_messengers

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
