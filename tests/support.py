"""Test helpers shared by the adapter tests: a live Liaison server and fixture loading."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlmodel import col, select

from app import build_router
from bot.core.effects import Effect
from bot.core.interaction import Interaction, Kind, Where
from bot.core.router import Router
from bot.core.settings import Settings
from bot.web.server import BACKGROUND, SCHEDULER, build_web_app
from bot.web.webhook import signature
from storage.db import Store
from storage.models import Member, OutboxMessage
from tests.loopback import serve_on_loopback
from tests.slack_standin import SlackStandIn

FIXTURES = Path(__file__).parent / "fixtures"
WEBHOOK_SECRET = "test-webhook-secret"
SIGNING_SECRET = "test-signing-secret"
# The Slack workspace's people, by first name: user id, real name, email.
SLACK_PEOPLE = {
    "alice": ("U0ALICE", "Alice Adams", "alice@example.com"),
    "bob": ("U0BOB", "Bob Brown", "bob@example.com"),
    "carol": ("U0CAROL", "Carol Chen", "carol@example.com"),
}


def fixture(platform: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / platform / f"{name}.json").read_text())
    return data


def make_settings(db_url: str, **overrides: str) -> Settings:
    """Test settings: a company that works round the clock, so DMs are never held for the
    morning by the wall clock the tests happen to run at (tests of holding set hours)."""
    values = {
        "LIAISON_DATABASE_URL": db_url,
        "LIAISON_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "LIAISON_WORK_HOURS": "00:00-24:00",
        "LIAISON_WORKDAYS": "mon-sun",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def slack_settings(db_url: str, slack: SlackStandIn, **overrides: str) -> Settings:
    """Test settings with Slack on: the stand-in's Web API and bot token, and the signing
    secret the tests sign requests with."""
    values = {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
    }
    return make_settings(db_url, **{**values, **overrides})


async def slack_with(*people: str) -> SlackStandIn:
    """A started Slack stand-in whose workspace has these people (keys of SLACK_PEOPLE)."""
    standin = await SlackStandIn().start()
    for person in people:
        standin.add_user(*SLACK_PEOPLE[person])
    return standin


def teams_settings(db_url: str, **overrides: str) -> Settings:
    """Teams in emulator mode (asked for explicitly: no app id, no authentication; loopback
    connectors only), Slack off."""
    values = {
        "SLACK_BOT_TOKEN": "",
        "MICROSOFT_APP_ID": "",
        "MICROSOFT_APP_PASSWORD": "",
        "LIAISON_TEAMS_EMULATOR": "1",
    }
    return make_settings(db_url, **{**values, **overrides})


class LiveServer:
    """`liaison serve`'s aiohttp app on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store.open(settings.database_url)
        router = build_router(settings.company, settings.channels())
        self.app = build_web_app(settings, self.store, router)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> LiveServer:
        self.runner, self.url = await serve_on_loopback(self.app)
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        self.store.engine.dispose()

    async def settle(self) -> None:
        """Wait until the work started after the last ack has finished and the outbox
        has delivered what it owed."""
        await self.app[BACKGROUND].drain()
        await asyncio.wait_for(self.app[SCHEDULER].settled(), timeout=10)


def signed_lead_headers(
    body: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-Liaison-Timestamp": ts,
        "X-Liaison-Signature": signature(secret, ts, body),
    }


async def eventually(check: Callable[[], Any | Awaitable[Any]], timeout: float = 5.0) -> Any:
    """Poll `check` until it returns something truthy (bounded), then return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within timeout")
        await asyncio.sleep(0.02)


def about(moment: datetime, expected: datetime, slack: float = 1.0) -> bool:
    """`moment` is `expected`, or up to `slack` seconds later (the outbox counts retry delays
    from when the platform answered, a few milliseconds into the pass)."""
    return expected <= moment <= expected + timedelta(seconds=slack)


def owed(store: Store, member_id: int | None = None) -> list[OutboxMessage]:
    """What the outbox owes (to one member), oldest first."""
    with store.session() as session:
        query = select(OutboxMessage).order_by(col(OutboxMessage.id))
        if member_id is not None:
            query = query.where(OutboxMessage.member_id == member_id)
        return list(session.exec(query).all())


def act(
    router: Router,
    store: Store,
    who: Member,
    kind: Kind,
    name: str,
    at: datetime,
    values: dict[str, list[str]] | None = None,
    request_id: str = "",
    **args: str,
) -> list[Effect]:
    """What `who` doing `name` at `at` produces, through the router, in one transaction."""
    interaction = Interaction(
        kind, name, who, Where("test"), args=args, values=values or {}, request_id=request_id
    )
    return list(router.dispatch(store, interaction, at))
