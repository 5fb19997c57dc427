"""The one aiohttp server of `liaison serve`: Slack, Teams, the lead webhook and health."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Middleware
from sqlalchemy.exc import SQLAlchemyError

from bot.core.delivery import Bot, Deliverer, Directory, Messenger
from bot.core.logs import new_request_id
from bot.core.metrics import CONTENT_TYPE, OutboxMetrics, ServiceMetrics
from bot.core.router import Router
from bot.core.settings import Settings, TeamsMode
from bot.core.tasks import Background
from bot.core.text import text_for
from bot.outbox.click_updates import ClickUpdates
from bot.web.webhook import make_handler
from digests.scheduler import Scheduler, for_settings
from handlers.ingest import Ingestor
from storage.clocks import open_by_stage
from storage.db import Store, unavailable
from storage.outbox import depth, oldest_due

log = logging.getLogger(__name__)
BACKGROUND = web.AppKey("background", Background)
SCHEDULER = web.AppKey("scheduler", Scheduler)
INGESTOR = web.AppKey("ingestor", Ingestor)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RETRY_AFTER_SECONDS = 60  # what a client is told to wait while the database does not answer


def platform_messengers(settings: Settings, store: Store) -> list[Messenger]:
    """The Slack and Teams senders this configuration allows (Slack first, when on)."""
    from bot import teams
    from bot.slack import app as slack

    messengers: list[Messenger] = []
    if settings.slack_enabled:
        messengers.append(slack.SlackMessenger.from_settings(settings, store))
    if settings.teams_mode is not TeamsMode.off:
        messengers.append(teams.TeamsMessenger(teams.make_adapter(settings), settings, store))
    return messengers


def build_web_app(
    settings: Settings, store: Store, router: Router, *, scheduler: bool = False
) -> web.Application:
    """Routes: POST /slack/events, POST /api/messages (Teams on), POST /api/leads, GET /healthz,
    GET /metrics."""
    from bot import teams
    from bot.slack import app as slack
    from bot.slack.client import shared_session

    background = Background()
    messengers = platform_messengers(settings, store)
    teams_messenger = next((m for m in messengers if isinstance(m, teams.TeamsMessenger)), None)
    slack_messenger = next((m for m in messengers if isinstance(m, slack.SlackMessenger)), None)
    directories: list[Directory] = [m for m in messengers if isinstance(m, Directory)]
    if teams_messenger is not None:
        directories.append(teams.TeamsDirectory(store))
    deliverer = Deliverer(store, messengers, directories)
    bot = Bot(store, router, deliverer)
    ingestor = Ingestor(
        store,
        deliverer,
        directories,
        settings.default_channel("admin"),
        settings.company,
        threads=settings.ingest_threads,
        queue_limit=settings.ingest_queue_limit,
    )
    jobs = for_settings(settings, store, deliverer, lookups=[ingestor.retry_routing])
    deliverer.on_owed = jobs.wake
    deliverer.updates = ClickUpdates(jobs.sender, jobs.wake)  # a click's card at once

    app = web.Application(
        client_max_size=6 * 1024 * 1024,
        middlewares=[_request_ids, _measured(jobs.metrics), _database_down(store)],
    )
    app[BACKGROUND] = background
    app[SCHEDULER] = jobs
    app[INGESTOR] = ingestor
    if slack_messenger is not None:
        slack_app = slack.build_bolt_app(settings, slack_messenger.client, store, bot, background)
        app.router.add_post("/slack/events", slack.make_route(settings, slack_app))
    else:
        app.router.add_post("/slack/events", _slack_off)
    if teams_messenger is not None:
        app.router.add_post("/api/messages", teams.make_route(teams_messenger.adapter, store, bot))
    else:
        app.router.add_post("/api/messages", _teams_off)
    app.router.add_post("/api/leads", make_handler(settings, ingestor, background))
    app.router.add_get("/healthz", _health(store))
    app.router.add_get("/metrics", _metrics(store, jobs.sender.metrics, jobs.metrics))

    async def _start(_: web.Application) -> None:
        # Everything built so far lives as long as the process: keep it out of the
        # garbage collector's full passes, which otherwise pause the server ~100 ms
        # (measured by bench/ack.py as the whole of the p99 gap against bare Bolt).
        gc.collect()
        gc.freeze()
        # Handler work runs in threads; a shorter GIL switch interval (default 5 ms) lets
        # the event loop take the GIL back sooner to ack the next request.
        sys.setswitchinterval(0.001)
        # Delivery always runs; `scheduler` adds the SLA tick (off with --no-scheduler).
        jobs.start(ticks=scheduler)

    async def _drain(_: web.Application) -> None:
        jobs.stop()
        await background.drain()

    async def _close(_: web.Application) -> None:
        ingestor.close()
        if teams_messenger is not None:
            await teams_messenger.adapter.connector_clients.close()

    if slack_messenger is not None:
        # One HTTP session for every Web API call while the server runs (opened before
        # `_start` starts the scheduler, closed after `_drain`).
        client = slack_messenger.client

        async def _slack_session(_: web.Application) -> AsyncIterator[None]:
            async with shared_session(client, settings.call_timeout):
                yield

        app.cleanup_ctx.append(_slack_session)
    app.on_startup.append(_start)
    app.on_shutdown.append(_drain)
    app.on_cleanup.append(_close)
    return app


async def _slack_off(_: web.Request) -> web.Response:
    return web.json_response({"error": "Slack is not configured: set SLACK_BOT_TOKEN"}, status=404)


def database_down_response() -> web.Response:
    """503 with `Retry-After`: the request needed the database, which does not answer."""
    return web.json_response(
        {"error": text_for("database_down")},
        status=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


@web.middleware
async def _request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request gets an id (the proxy's X-Request-Id, else a new one): on each log line
    written while handling it, and in the answer's X-Request-Id."""
    rid = new_request_id(request.headers.get("X-Request-Id"))
    response = await handler(request)
    if not response.prepared:
        response.headers["X-Request-Id"] = rid
    return response


def _database_down(store: Store) -> Middleware:
    """Any route whose work fails because the database does not answer answers 503 (the
    work's transaction rolled back, so nothing was stored), never a 500 with a traceback."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as error:
            if not unavailable(error):
                raise
            store.outage.lost(error)
            log.info("%s %s: database unreachable, answered 503", request.method, request.path)
            return database_down_response()

    return guard


async def _teams_off(_: web.Request) -> web.Response:
    """Teams is off: nothing in the request is read, nobody is met, nothing is called."""
    return web.json_response({"error": "Teams is not configured: set MICROSOFT_APP_ID"}, status=404)


def _metrics(store: Store, outbox: OutboxMetrics, service: ServiceMetrics) -> Handler:
    """GET /metrics: the counters, and the outbox's depth and the open SLA clocks read now,
    in Prometheus' format."""

    def read_now() -> tuple[dict[str, int], float, dict[str, int]]:
        now = datetime.now(UTC)
        with store.reading() as session:
            oldest = oldest_due(session, now=now)
            waited = 0.0
            if oldest is not None:  # SQLite gives it back without its zone (it was UTC)
                waited = (now - oldest.replace(tzinfo=oldest.tzinfo or UTC)).total_seconds()
            return depth(session), max(0.0, waited), open_by_stage(session)

    async def scrape(_: web.Request) -> web.Response:
        try:
            by_status, oldest, clocks = await asyncio.to_thread(read_now)
            outbox.set_depth(by_status, oldest)
            service.set_clocks(clocks)
        except SQLAlchemyError as error:  # the counters still answer; the gauges: last seen
            log.warning("metrics: gauges not read (%s)", type(error).__name__)
        body = outbox.render() + service.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return scrape


PLATFORMS = {"/slack/events": "slack", "/api/messages": "teams", "/api/leads": "webhook"}


def _measured(metrics: ServiceMetrics) -> Middleware:
    """Every answer counted and timed, by endpoint (the route, not the raw path) and platform."""

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        resource = request.match_info.route.resource
        endpoint = resource.canonical if resource is not None else "unmatched"
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as refused:
            status = refused.status
            raise
        finally:
            seconds = time.perf_counter() - started
            metrics.answered(endpoint, PLATFORMS.get(endpoint, "-"), status, seconds)

    return measure


def _health(store: Store) -> Handler:
    async def health(_: web.Request) -> web.Response:
        try:
            ok = await asyncio.to_thread(store.ping)
        except Exception as error:  # any driver error means the database does not answer
            if unavailable(error):
                store.outage.lost(error)
            else:
                log.warning("health check: database unreachable", exc_info=True)
            ok = False
        if ok:
            store.outage.back()
        body = {"status": "ok" if ok else "degraded", "database": "ok" if ok else "unreachable"}
        return web.json_response(body, status=200 if ok else 503)

    return health
