"""Two `liaison serve` processes on one PostgreSQL and a Slack slower than the outbox lease.

Slack takes each post at once but answers only after 4 s, longer than the 3 s lease. Each
call times out within the lease (`LIAISON_OUTBOX_LEASE_SECONDS` bounds it), the send's
outcome is unknown, and whichever process tries the message again first looks for it on
Slack by the outbox key in its metadata: every card reaches Slack once.

Needs PostgreSQL (the pg_url fixture skips with the reason, or fails under
LIAISON_REQUIRE_PG=1).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.db import Store
from tests.slack_standin import SlackStandIn
from tests.test_multi_instance import LEASE_SECONDS, Fleet, outbox, wait_until_all_sent
from tests.test_outbox_faults import owe_cards


@pytest.fixture
async def slow_slack() -> AsyncIterator[SlackStandIn]:
    standin = await SlackStandIn(post_delay=LEASE_SECONDS + 1.0).start()
    yield standin
    await standin.stop()


@pytest.fixture
def two(pg_url: str, slow_slack: SlackStandIn, tmp_path: Path) -> Iterator[Fleet]:
    group = Fleet(pg_url, slow_slack, tmp_path)
    try:
        yield group
    finally:
        group.stop()


def owe_titles(store: Store, count: int) -> set[str]:
    """One card to each of `count` reps on Slack, due now: one instance claims them all, and
    the other is free to take over any whose lease runs out."""
    owe_cards(store, count, at=datetime.now(UTC))
    return {f"Card {n}" for n in range(count)}


async def test_a_slack_slower_than_the_lease_gets_each_card_once_from_two_instances(
    pg_store: Store, slow_slack: SlackStandIn, two: Fleet
) -> None:
    cards = owe_titles(pg_store, 8)
    async with two.running(2):
        await wait_until_all_sent(pg_store, slow_slack, two, len(cards), timeout=90)
        await asyncio.sleep(LEASE_SECONDS + 2)  # anything sent twice would arrive now

        rows = outbox(pg_store)
        assert all(r.status == "sent" for r in rows)
        calls = Counter(str(p["text"]) for p in slow_slack.of("chat.postMessage"))
        assert set(calls) == cards
        twice = {k: n for k, n in calls.items() if n > 1}
        assert not twice, f"posted more than once: {twice}"
        # Every first answer came too late: each card was found again, not re-posted.
        assert len(slow_slack.of("conversations.history")) >= len(cards)
