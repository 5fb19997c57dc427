"""GET /metrics on `liaison serve`: the outbox counters in Prometheus' text format, moved by
a real delivery through the Slack stand-in."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import build_router
from bot.core.messages import Card, card_to_dict
from bot.web.server import SCHEDULER, build_web_app
from digests.scheduler import Scheduler
from storage import members
from storage import outbox as stored_outbox
from storage.db import Store
from storage.models import OutboxMessage
from tests.loopback import serve_on_loopback
from tests.slack_standin import SlackStandIn
from tests.support import (
    SIGNING_SECRET,
    LiveServer,
    eventually,
    fixture,
    make_settings,
    signed_lead_headers,
)
from tests.teams_standin import connector_with
from tests.test_slack import slack_headers as signed_slack_headers
from tests.test_teams import ALICE


@pytest.fixture
async def server(tmp_path: Path, slack: SlackStandIn) -> AsyncIterator[LiveServer]:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        SLACK_BOT_TOKEN="xoxb-test-token",
        SLACK_SIGNING_SECRET="secret",
        SLACK_API_URL=slack.api_url,
        LIAISON_TICK_SECONDS="0.2",
    )
    live = await LiveServer(settings).start()
    yield live
    await live.stop()


async def scrape(server: LiveServer) -> dict[str, float]:
    """Every sample of GET /metrics by name (and status label, for the depth)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/metrics") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            status = sample.labels.get("status")
            samples[f"{sample.name}:{status}" if status else sample.name] = sample.value
    return samples


def owe_card(server: LiveServer) -> None:
    now = datetime.now(UTC)
    with server.store.session() as s:
        member = members.upsert_member(
            s, now=now, email="rep@x.com", name="Rep", slack_user_id="U0REP"
        )
        s.flush()
        stored_outbox.enqueue(
            s,
            message=OutboxMessage(
                key="card:1",
                member_id=member.id,
                card=card_to_dict(Card(title="Card 1")),
                not_before=now - timedelta(seconds=30),  # due for half a minute already
                created_at=now,
            ),
        )


async def test_a_delivery_and_a_retry_move_the_counters(
    server: LiveServer, slack: SlackStandIn
) -> None:
    before = await scrape(server)
    assert before["liaison_outbox_sent_total"] == 0
    assert before["liaison_outbox_retried_total"] == 0
    assert before["liaison_outbox_parked_total"] == 0
    assert before["liaison_outbox_recovered_total"] == 0

    slack.throttle("chat.postMessage", times=1, retry_after=0)
    owe_card(server)
    waiting = await scrape(server)
    assert waiting["liaison_outbox_depth:pending"] == 1
    assert waiting["liaison_outbox_oldest_waiting_seconds"] >= 30
    jobs: Scheduler = server.app[SCHEDULER]
    jobs.wake()
    await eventually(lambda: slack.of("chat.postMessage"), timeout=10)
    await server.settle()

    after = await scrape(server)
    assert after["liaison_outbox_throttled_total"] == 1
    assert after["liaison_outbox_retried_total"] == 1
    assert after["liaison_outbox_sent_total"] == 1
    assert after["liaison_outbox_parked_total"] == 0
    assert after["liaison_outbox_depth:pending"] == 0
    assert [p["text"] for p in slack.of("chat.postMessage")] == ["Card 1"]


async def test_a_slack_command_a_teams_message_a_lead_and_a_tick_show_in_the_scrape(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    """Requests counted and timed per endpoint and platform, by instance; the tick's time;
    the SLA clocks a handed-off lead opened; the age of the oldest message waiting."""
    connector = await connector_with([ALICE])
    settings = make_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        SLACK_BOT_TOKEN=slack.token,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.api_url,
        LIAISON_TEAMS_EMULATOR="1",
        LIAISON_TICK_SECONDS="0.2",
    )
    store = Store.open(settings.database_url)
    with store.session() as session:  # a rep Liaison knows, reachable on Slack
        members.upsert_member(
            session,
            now=datetime.now(UTC),
            email="rita@x.com",
            name="Rita Rep",
            slack_user_id="U0REP",
            role="rep",
        )
    app = build_web_app(settings, store, build_router(settings.company), scheduler=True)
    runner, url = await serve_on_loopback(app)
    try:
        command = {**fixture("slack", "slash_command"), "response_url": slack.response_url()}
        body = urlencode(command).encode()
        async with aiohttp.ClientSession() as http:
            slack_headers = signed_slack_headers(body, "application/x-www-form-urlencoded")
            async with http.post(f"{url}/slack/events", data=body, headers=slack_headers) as r:
                assert r.status == 200
            said = {
                **fixture("teams", "personal_message"),
                "serviceUrl": connector.service_url,
                "text": "help",
                "from": {"id": ALICE.user_id, "name": ALICE.name},
                "conversation": {"id": ALICE.conversation},
            }
            async with http.post(f"{url}/api/messages", json=said) as r:
                assert r.status in (200, 202)
            lead = json.dumps({"external_id": "M-1", "name": "Jo", "owner_email": "rita@x.com"})
            async with http.post(
                f"{url}/api/leads", data=lead.encode(), headers=signed_lead_headers(lead.encode())
            ) as r:
                assert r.status == 200
        await eventually(lambda: slack.of("chat.postMessage"), timeout=10)  # the handoff card
        jobs: Scheduler = app[SCHEDULER]
        ticks = jobs.metrics.registry
        await eventually(
            lambda: (ticks.get_sample_value("liaison_tick_duration_seconds_count") or 0) >= 2
        )

        async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as r:
            text = await r.text()
        found = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        me = f"{socket.gethostname()}:{os.getpid()}"

        def requests(endpoint: str, platform: str, status: str) -> float:
            labels = {"endpoint": endpoint, "platform": platform, "status": status, "instance": me}
            return found.get(("liaison_http_requests_total", tuple(sorted(labels.items()))), 0)

        assert requests("/slack/events", "slack", "200") == 1
        assert (
            requests("/api/messages", "teams", "200") + requests("/api/messages", "teams", "202")
            == 1
        )
        assert requests("/api/leads", "webhook", "200") == 1
        slack_latency = ("endpoint", "/slack/events"), ("platform", "slack")
        assert found[("liaison_http_request_duration_seconds_count", slack_latency)] == 1
        assert found[("liaison_slow_acks_total", (("instance", me), ("platform", "slack")))] == 0
        assert found[("liaison_tick_duration_seconds_count", ())] >= 2
        assert ("liaison_tick_lag_seconds", ()) in found
        running = found[("liaison_sla_clocks_open", (("stage", "running"),))]
        assert running >= 1  # the handed-off lead's first-touch and verdict clocks
        assert found[("liaison_outbox_sent_total", (("instance", me),))] >= 1
        assert found[("liaison_outbox_oldest_waiting_seconds", ())] == 0  # nothing waits
    finally:
        await runner.cleanup()
        store.engine.dispose()
        await connector.stop()
