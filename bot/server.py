"""The one aiohttp server of `liaison serve`: Slack, Teams, the lead webhook and health."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot.delivery import Bot, Deliverer, Directory, Messenger
from bot.router import Router
from bot.settings import Settings
from bot.tasks import Background
from bot.webhook import make_handler
from digests.metrics import CONTENT_TYPE, OutboxMetrics
from digests.outbox import depth
from digests.scheduler import Clockwork, for_settings
from handlers.ingest import Ingestor
from storage.db import Store

log = logging.getLogger(__name__)
BACKGROUND = web.AppKey("background", Background)
CLOCKWORK = web.AppKey("clockwork", Clockwork)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def platform_messengers(settings: Settings, store: Store) -> list[Messenger]:
    """The Slack and Teams senders this configuration allows (Slack first, when on)."""
    from bot import slack, teams

    adapter = teams.make_adapter(settings)
    messengers: list[Messenger] = [teams.TeamsMessenger(adapter, settings, store)]
    if settings.slack_enabled:
        messengers.insert(0, slack.SlackMessenger.from_settings(settings, store))
    return messengers


def build_web_app(
    settings: Settings, store: Store, router: Router, *, scheduler: bool = False
) -> web.Application:
    """Routes: POST /slack/events, POST /api/messages, POST /api/leads, GET /healthz,
    GET /metrics."""
    from bot import slack, teams

    background = Background()
    messengers = platform_messengers(settings, store)
    adapter = next(m for m in messengers if isinstance(m, teams.TeamsMessenger)).adapter
    slack_messenger = next((m for m in messengers if isinstance(m, slack.SlackMessenger)), None)
    directories: list[Directory] = [m for m in messengers if isinstance(m, Directory)]
    directories.append(teams.TeamsDirectory(store))
    deliverer = Deliverer(store, messengers, directories)
    bot = Bot(store, router, deliverer)
    ingestor = Ingestor(
        store, deliverer, directories, settings.default_channel("admin"), settings.company
    )
    clockwork = for_settings(settings, store, deliverer)
    deliverer.on_owed = clockwork.wake

    app = web.Application(client_max_size=6 * 1024 * 1024)
    app[BACKGROUND] = background
    app[CLOCKWORK] = clockwork
    if slack_messenger is not None:
        slack_app = slack.build_bolt_app(settings, slack_messenger.client, store, bot, background)
        app.router.add_post("/slack/events", slack.make_route(settings, slack_app))
    else:
        app.router.add_post("/slack/events", _slack_off)
    app.router.add_post("/api/messages", teams.make_route(adapter, store, bot))
    app.router.add_post("/api/leads", make_handler(settings, ingestor, background))
    app.router.add_get("/healthz", _health(store))
    app.router.add_get("/metrics", _metrics(store, clockwork.sender.metrics))

    async def _start(_: web.Application) -> None:
        # Everything built so far lives as long as the process: keep it out of the
        # garbage collector's full passes, which otherwise pause the server ~100 ms
        # (measured by bench/ack.py as the whole of the p99 gap against bare Bolt).
        gc.collect()
        gc.freeze()
        # Handler work runs in threads; a shorter GIL switch interval (default 5 ms) lets
        # the event loop take the GIL back sooner to ack the next request.
        sys.setswitchinterval(0.001)
        if slack_messenger is not None:
            # slack_sdk applies its own timeout only to sessions it makes: this shared one
            # carries it, so no Web API call outlives an outbox lease.
            timeout = aiohttp.ClientTimeout(total=settings.call_timeout)
            slack_messenger.client.session = aiohttp.ClientSession(timeout=timeout)
        # Delivery always runs; `scheduler` adds the SLA tick (off with --no-scheduler).
        clockwork.start(ticks=scheduler)

    async def _drain(_: web.Application) -> None:
        clockwork.stop()
        await background.drain()

    async def _close(_: web.Application) -> None:
        if slack_messenger is not None and slack_messenger.client.session is not None:
            await slack_messenger.client.session.close()

    app.on_startup.append(_start)
    app.on_shutdown.append(_drain)
    app.on_cleanup.append(_close)
    return app


async def _slack_off(_: web.Request) -> web.Response:
    return web.json_response({"error": "Slack is not configured: set SLACK_BOT_TOKEN"}, status=404)


def _metrics(store: Store, metrics: OutboxMetrics) -> Handler:
    """GET /metrics: the outbox counters, and its depth read now, in Prometheus' format."""

    def read_depth() -> dict[str, int]:
        with store.session() as session:
            return depth(session)

    async def scrape(_: web.Request) -> web.Response:
        try:
            metrics.set_depth(await asyncio.to_thread(read_depth))
        except SQLAlchemyError as error:  # the counters still answer; the depth is the last seen
            log.warning("metrics: outbox depth not read (%s)", type(error).__name__)
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    return scrape


def _health(store: Store) -> Handler:
    async def health(_: web.Request) -> web.Response:
        try:
            ok = await asyncio.to_thread(store.ping)
        except Exception:  # any driver error means the database does not answer
            log.warning("health check: database unreachable", exc_info=True)
            ok = False
        body = {"status": "ok" if ok else "degraded", "database": "ok" if ok else "unreachable"}
        return web.json_response(body, status=200 if ok else 503)

    return health
