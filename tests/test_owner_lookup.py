"""A failed owner lookup is not "no such user": the lead waits as `routing` and the
scheduler retries the lookup until Slack answers.

Leads are POSTed, signed, over real HTTP to `liaison serve`'s app; the Slack stand-in
answers `users.lookupByEmail` with a 500, or not at all, then recovers. Scheduler passes
(`Scheduler.run_once`, what `liaison tick --at` runs) then hand the lead to the owner
found, with its card, or make it unassigned and tell the admin once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlmodel import select

from bot.web.server import SCHEDULER
from handlers.owners import LOOKUPS_AT_ONCE
from storage import members as stored_members
from storage.db import Store
from storage.models import Lead
from tests.slack_standin import Call, SlackStandIn
from tests.support import (
    WEBHOOK_SECRET,
    LiveServer,
    make_settings,
    signed_lead_headers,
    slack_settings,
)

LOOKUP = "users.lookupByEmail"
REPO = Path(__file__).parent.parent
SETTINGS = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_API_URL",
    "LIAISON_LOOKUP_TIMEOUT_SECONDS",
)


class FlakySlack(SlackStandIn):
    """The Slack stand-in, with `users.lookupByEmail` failing as `lookups` says: "500"
    (an outage), "hang" (no answer for 5 s) or "" (working)."""

    lookups: str = ""

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["method"] == LOOKUP and self.lookups:
            self.refused.append(Call(LOOKUP, dict(request.query)))
            if self.lookups == "hang":
                await asyncio.sleep(5)
            return web.Response(status=500, text="<html>Internal Server Error</html>")
        return await super()._api(request)


@pytest.fixture
async def slack() -> AsyncIterator[FlakySlack]:
    standin = FlakySlack()
    await standin.start()
    standin.add_user("U0ALICE", "Alice Adams", "alice@example.com")
    standin.add_user("U0ADMIN", "Ada Admin", "admin@example.com")
    yield standin
    await standin.stop()


@pytest.fixture
async def server(db_url: str, slack: FlakySlack) -> AsyncIterator[LiveServer]:
    settings = slack_settings(
        db_url,
        slack,
        LIAISON_LOOKUP_TIMEOUT_SECONDS="0.5",
    )
    live = await LiveServer(settings).start()
    with live.store.session() as session:
        stored_members.upsert_member(
            session,
            now=datetime.now(UTC),
            email="admin@example.com",
            name="Ada Admin",
            slack_user_id="U0ADMIN",
            role="admin",
        )
    yield live
    await live.stop()


async def send(server: LiveServer, leads: list[dict[str, Any]]) -> Any:
    body = json.dumps(leads).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/api/leads", data=body, headers=signed_lead_headers(body)) as r,
    ):
        assert r.status == 200, await r.text()
        data = await r.json()
    await server.settle()
    return data


def state_of(server: LiveServer, external_id: str) -> Lead:
    with server.store.session() as session:
        lead = session.exec(select(Lead).where(Lead.external_id == external_id)).one()
    return lead


def dms_to(slack: SlackStandIn, user_id: str) -> list[dict[str, Any]]:
    return [p for p in slack.of("chat.postMessage") if p.get("channel") == user_id]


async def tick(server: LiveServer) -> None:
    await server.app[SCHEDULER].run_once(datetime.now(UTC))
    await server.settle()


@pytest.mark.parametrize("outage", ["500", "hang"])
async def test_a_failed_lookup_waits_as_routing_then_reaches_its_owner(
    server: LiveServer, slack: FlakySlack, outage: str
) -> None:
    slack.lookups = outage
    data = await send(
        server, [{"external_id": "R1", "name": "Jordan", "owner_email": "alice@example.com"}]
    )
    assert data["leads"][0]["status"] == "created"
    assert state_of(server, "R1").state == "routing"
    assert dms_to(slack, "U0ALICE") == [] and dms_to(slack, "U0ADMIN") == []
    await tick(server)  # still down: still routing, still nobody told
    assert state_of(server, "R1").state == "routing"
    assert dms_to(slack, "U0ADMIN") == []
    slack.lookups = ""
    await tick(server)
    lead = state_of(server, "R1")
    assert lead.state == "handed_off" and lead.owner_id is not None
    (card,) = dms_to(slack, "U0ALICE")
    assert "Jordan" in json.dumps(card["blocks"])
    await tick(server)  # handed off once: no second card
    assert len(dms_to(slack, "U0ALICE")) == 1 and dms_to(slack, "U0ADMIN") == []


async def test_a_failed_lookup_of_nobody_ends_unassigned_and_the_admin_hears_once(
    server: LiveServer, slack: FlakySlack
) -> None:
    slack.lookups = "500"
    await send(
        server,
        [
            {"external_id": "N1", "name": "Sam", "owner_email": "nobody@example.com"},
            {"external_id": "N2", "name": "Kim", "owner_email": "nobody@example.com"},
        ],
    )
    assert {state_of(server, x).state for x in ("N1", "N2")} == {"routing"}
    slack.lookups = ""
    await tick(server)
    assert {state_of(server, x).state for x in ("N1", "N2")} == {"unassigned"}
    (notice,) = dms_to(slack, "U0ADMIN")
    assert "Sam" in json.dumps(notice["blocks"]) and "Kim" in json.dumps(notice["blocks"])
    await tick(server)
    assert len(dms_to(slack, "U0ADMIN")) == 1


async def test_an_outage_costs_one_timeout_not_one_per_owner(
    server: LiveServer, slack: FlakySlack
) -> None:
    """Twenty new owners while lookups hang: the answer comes after about one lookup
    timeout (not twenty), Slack is asked at most as many times as lookups run at once,
    and every lead waits as routing."""
    slack.lookups = "hang"
    leads = [
        {"external_id": f"H{n}", "name": f"Lead {n}", "owner_email": f"rep{n}@example.com"}
        for n in range(20)
    ]
    started = asyncio.get_running_loop().time()
    await send(server, leads)
    assert asyncio.get_running_loop().time() - started < 4  # one lookup is 20 × 0.5 s
    assert len(slack.refused) <= LOOKUPS_AT_ONCE  # the first to fail stopped the rest
    assert {state_of(server, f"H{n}").state for n in range(20)} == {"routing"}


async def test_a_known_miss_is_still_unassigned_at_once(
    server: LiveServer, slack: FlakySlack
) -> None:
    """Slack answered users_not_found: that is "no such user", no waiting."""
    await send(server, [{"external_id": "U1", "name": "Lee", "owner_email": "ghost@example.com"}])
    assert state_of(server, "U1").state == "unassigned"
    assert len(dms_to(slack, "U0ADMIN")) == 1


async def test_liaison_tick_retries_the_lookup(tmp_path: Path, slack: FlakySlack) -> None:
    """`liaison tick --at …`, a real process, runs the same retry: the lead that waited
    as routing through the outage reaches its owner."""
    url = f"sqlite:///{tmp_path / 'liaison.db'}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "MICROSOFT_", "LIAISON_"))
        and key.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    }
    env.update(
        LIAISON_DATABASE_URL=url,
        LIAISON_WEBHOOK_SECRET=WEBHOOK_SECRET,
        LIAISON_WORK_HOURS="00:00-24:00",
        LIAISON_WORKDAYS="mon-sun",
        SLACK_BOT_TOKEN="xoxb-test-token",
        SLACK_SIGNING_SECRET="test-signing-secret",
        SLACK_API_URL=slack.api_url,
        LIAISON_LOOKUP_TIMEOUT_SECONDS="0.5",
        PYTHONPATH=str(REPO),
    )
    live = await LiveServer(make_settings(url, **{k: env[k] for k in SETTINGS})).start()
    try:
        slack.lookups = "500"
        await send(
            live, [{"external_id": "T1", "name": "Jordan", "owner_email": "alice@example.com"}]
        )
        assert state_of(live, "T1").state == "routing"
    finally:
        await live.stop()
    slack.lookups = ""
    at = datetime.now(UTC).isoformat()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from app import main; main()",
        "tick",
        "--at",
        at,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()[-2000:]
    assert "1 sent" in out.decode(), out.decode()
    store = Store.open(url)
    try:
        with store.session() as session:
            lead = session.exec(select(Lead).where(Lead.external_id == "T1")).one()
    finally:
        store.engine.dispose()
    assert lead.state == "handed_off"
    assert len(dms_to(slack, "U0ALICE")) == 1


async def test_an_owner_set_up_during_the_outage_gets_the_lead(
    server: LiveServer, slack: FlakySlack
) -> None:
    """Slack still down, but an admin added the owner (`liaison members set`): the next
    pass hands the lead over without asking Slack."""
    slack.lookups = "500"
    await send(server, [{"external_id": "M1", "name": "Noor", "owner_email": "alice@example.com"}])
    with server.store.session() as session:
        stored_members.upsert_member(
            session,
            now=datetime.now(UTC),
            email="alice@example.com",
            name="Alice Adams",
            slack_user_id="U0ALICE",
        )
    asked = len(slack.refused)
    await tick(server)
    assert state_of(server, "M1").state == "handed_off"
    assert len(slack.refused) == asked and len(dms_to(slack, "U0ALICE")) == 1
