"""The commands that run Liaison: `serve`, `socket`, `console`, `tick` and `db upgrade`."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket as socket_module
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from bot.cli.check import refuse_to_start
from bot.cli.common import (
    deliverer,
    fail,
    load_settings,
    lookups,
    now,
    one_session,
    open_store,
    out,
    router_factory,
)

if TYPE_CHECKING:
    from bot.console.chat import ConsoleMessenger
    from bot.core.delivery import Bot
    from digests.scheduler import PassReport

db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)


def serve(
    ctx: typer.Context,
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="0: any free port")] = 3000,
    no_scheduler: Annotated[bool, typer.Option("--no-scheduler")] = False,
) -> None:
    """HTTP server: /slack/events, /api/messages, /api/leads and /healthz."""
    from aiohttp import web

    from bot.teams.trust import emulator_bind_problem
    from bot.web.server import build_web_app

    settings = load_settings()
    if refused := emulator_bind_problem(settings.teams_mode, host):
        fail(refused)
    store = open_store(settings)
    refuse_to_start(settings, store)
    router = router_factory(ctx)(settings.company, settings.channels())
    try:
        sockets = listen_on(host, port)
    except OSError as error:
        fail(bind_problem(error, host, port), code=1)
    logging.getLogger("liaison").info("listening on http://%s:%d", host, port)
    web.run_app(
        build_web_app(settings, store, router, scheduler=not no_scheduler),
        sock=sockets,
        print=None,
    )


def listen_on(host: str, port: int) -> list[socket_module.socket]:
    """Listening sockets on every address `host` names (as asyncio binds them), made before
    the server starts so a bind failure is told apart from anything the server raises."""
    found = socket_module.getaddrinfo(
        host, port, type=socket_module.SOCK_STREAM, flags=socket_module.AI_PASSIVE
    )
    sockets: list[socket_module.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            listening = socket_module.socket(family, kind, proto)
            sockets.append(listening)
            listening.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_REUSEADDR, 1)
            if family == socket_module.AF_INET6:
                listening.setsockopt(socket_module.IPPROTO_IPV6, socket_module.IPV6_V6ONLY, 1)
            listening.bind(address)
            listening.listen(128)
            listening.setblocking(False)
    except OSError:
        for listening in sockets:
            listening.close()
        raise
    return sockets


def bind_problem(error: OSError, host: str, port: int) -> str:
    """Why `serve` could not listen on host:port, and what to do about it."""
    if error.errno == errno.EADDRINUSE:
        return f"Port {port} on {host} is in use: stop what listens there or pick --port."
    if error.errno == errno.EACCES:
        return f"Port {port} on {host} needs privileges: pick a port above 1023 with --port."
    if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(
        error, socket_module.gaierror
    ):
        return f"Cannot listen on {host}: it is not an address of this machine (--host)."
    return f"Cannot listen on {host}:{port}: {error.strerror or error}."


def socket(ctx: typer.Context) -> None:
    """Slack Socket Mode (needs SLACK_APP_TOKEN)."""
    from bot.core.delivery import Bot
    from bot.outbox.click_updates import ClickUpdates
    from bot.slack.app import SlackMessenger, run_socket_mode
    from digests.scheduler import for_settings

    settings = load_settings()
    if settings.slack_app_token is None or not settings.slack_enabled:
        fail("Socket Mode needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN (xapp-…).")
    store = open_store(settings)
    refuse_to_start(settings, store, socket_mode=True)
    sender = deliverer(settings, store)
    bot = Bot(store, router_factory(ctx)(settings.company, settings.channels()), sender)
    slack = next(m for m in sender.messengers.values() if isinstance(m, SlackMessenger))

    async def run() -> None:
        jobs = for_settings(settings, store, sender, lookups(settings, sender))
        sender.on_owed = jobs.wake
        sender.updates = ClickUpdates(jobs.sender, jobs.wake)
        jobs.start()
        try:
            await run_socket_mode(settings, slack.client, store, bot)
        finally:
            jobs.stop()

    asyncio.run(run())


def console(
    ctx: typer.Context,
    as_: Annotated[str | None, typer.Option("--as", help="Start as this member")] = None,
) -> None:
    """A local chat in the terminal: act as any member, press buttons, fill forms."""
    from bot.console.chat import run_console
    from bot.core.delivery import Bot, Deliverer
    from digests.scheduler import for_settings

    settings = load_settings()
    store = open_store(settings)
    router = router_factory(ctx)(settings.company, settings.channels())

    def make_bot(messenger: ConsoleMessenger) -> tuple[Bot, Callable[[datetime], Any]]:
        sender = Deliverer(store, [messenger])
        jobs = for_settings(settings, store, sender)
        jobs.start_in_background()
        return Bot(store, router, sender), jobs.run_once

    before = quiet_logging(CONSOLE_LOG)
    asyncio.run(run_console(store, make_bot, Console(), as_))  # wrapping, unlike `out`
    if CONSOLE_LOG.exists() and CONSOLE_LOG.stat().st_size > before:
        out.print(f"Warnings of this session were written to {CONSOLE_LOG}.")


CONSOLE_LOG = Path("liaison-console.log")


def quiet_logging(path: Path) -> int:
    """Log lines go to `path` (warnings and worse; the file is made at the first), never into
    the chat; returns the file's size before."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(path, delay=True, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    return path.stat().st_size if path.exists() else 0


def tick(
    at: Annotated[str | None, typer.Option(help="ISO-8601 time to act as if it were")] = None,
) -> None:
    """One scheduler pass: SLA reminders, breaches, escalations, then outbox delivery."""
    from digests.scheduler import for_settings

    moment = now()
    if at:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            fail(f"--at {at!r} is not an ISO-8601 time (e.g. 2026-11-24T14:00Z).")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    settings = load_settings()
    store = open_store(settings)
    sender = deliverer(settings, store)
    jobs = for_settings(settings, store, sender, lookups(settings, sender))

    async def run() -> PassReport:
        async with one_session(sender, settings):
            return await jobs.run_once(moment)

    result = asyncio.run(run())
    out.print(
        f"Tick at {moment.isoformat()}: {result.tick.looked_at} due items looked at "
        "(SLA clocks, feedback, approvals, digests, owner lookups), "
        f"{result.tick.messages} messages owed; {result.sent.sent} sent, "
        f"{result.sent.retried} to retry, {result.sent.failed} failed."
    )


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations to head (also done on every start)."""
    open_store(load_settings())
    out.print("Database is at the latest schema.")
