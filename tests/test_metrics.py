"""GET /metrics on `liaison serve`: the outbox counters in Prometheus' text format, moved by
a real delivery through the Slack stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.messages import Card, card_to_dict
from bot.server import CLOCKWORK
from digests.scheduler import Clockwork
from storage import queries
from storage.models import OutboxMessage
from tests.slack_standin import SlackStandIn
from tests.support import LiveServer, eventually, make_settings


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await SlackStandIn().start()
    yield standin
    await standin.stop()


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
        member = queries.upsert_member(
            s, now=now, email="rep@x.com", name="Rep", slack_user_id="U0REP"
        )
        s.flush()
        queries.enqueue(
            s,
            message=OutboxMessage(
                key="card:1",
                member_id=member.id,
                card=card_to_dict(Card(title="Card 1")),
                not_before=now,
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
    assert (await scrape(server))["liaison_outbox_depth:pending"] == 1
    clockwork: Clockwork = server.app[CLOCKWORK]
    clockwork.wake()
    await eventually(lambda: slack.of("chat.postMessage"), timeout=10)
    await server.settle()

    after = await scrape(server)
    assert after["liaison_outbox_throttled_total"] == 1
    assert after["liaison_outbox_retried_total"] == 1
    assert after["liaison_outbox_sent_total"] == 1
    assert after["liaison_outbox_parked_total"] == 0
    assert after["liaison_outbox_depth:pending"] == 0
    assert [p["text"] for p in slack.of("chat.postMessage")] == ["Card 1"]
