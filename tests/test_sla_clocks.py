"""SLA clocks end to end: `liaison tick --at` as a real process, messages through the Slack
stand-in, at the right business times, privately, exactly once."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bot.core.business_time import Company
from handlers.ingest import LeadIn, store_leads
from storage import clocks as clock_store
from storage import leads, members
from storage.db import Store
from storage.models import Away, Clock, Lead, OutboxMessage
from tests.slack_standin import SlackStandIn

REPO = Path(__file__).parent.parent
MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 09:00 in London (GMT)


@pytest.fixture
def company(tmp_path: Path) -> Store:
    store = Store.open(f"sqlite:///{tmp_path / 'sla.db'}")
    with store.session() as s:
        dave = members.upsert_member(
            s,
            now=MONDAY_9,
            email="dave@x.com",
            name="Dave Dawson",
            role="manager",
            slack_user_id="U0DAVE",
            timezone="Europe/London",
        )
        members.upsert_member(
            s,
            now=MONDAY_9,
            email="alice@x.com",
            name="Alice Adams",
            slack_user_id="U0ALICE",
            timezone="Europe/London",
            manager_id=dave.id,
        )
        store_leads(
            s,
            [
                LeadIn(
                    external_id="L1",
                    name="Jordan Patel",
                    company="Globex",
                    owner_email="alice@x.com",
                )
            ],  # type: ignore[call-arg]
            now=MONDAY_9,
            admin_channel=None,
            company=Company(),
        )
    return store


async def tick(store: Store, slack: SlackStandIn, at: datetime) -> str:
    env = dict(
        os.environ,
        LIAISON_DATABASE_URL=str(store.engine.url),
        SLACK_BOT_TOKEN=slack.token,
        SLACK_API_URL=slack.api_url,
        LIAISON_TIMEZONE="Europe/London",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from app import main; main()",
        "tick",
        "--at",
        at.isoformat(),
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, output.decode()
    return output.decode()


def dms(slack: SlackStandIn) -> list[tuple[str, str]]:
    return [(p["channel"], p["text"]) for p in slack.of("chat.postMessage")]


async def test_reminder_breach_and_escalation_at_business_times(
    company: Store, slack: SlackStandIn
) -> None:
    await tick(company, slack, MONDAY_9 + timedelta(hours=2, minutes=59))
    assert dms(slack) == []
    # 75% of the 4 business-hour first-touch window: 12:00.
    await tick(company, slack, MONDAY_9 + timedelta(hours=3))
    assert dms(slack) == [("U0ALICE", "Reminder: first touch for Jordan Patel")]
    await tick(company, slack, MONDAY_9 + timedelta(hours=3, minutes=30))
    assert len(dms(slack)) == 1  # exactly once
    # The deadline, 13:00: a private note to Alice.
    await tick(company, slack, MONDAY_9 + timedelta(hours=4))
    assert dms(slack)[-1] == ("U0ALICE", "SLA window passed: first touch for Jordan Patel")
    # Four business hours later it is 17:00, closing time: Dave's note waits for his morning.
    output = await tick(company, slack, MONDAY_9 + timedelta(hours=8))
    assert "1 messages owed; 0 sent" in output
    assert [c for c, _ in dms(slack)] == ["U0ALICE", "U0ALICE"]
    await tick(company, slack, MONDAY_9 + timedelta(days=1))  # Tuesday 09:00
    channel, text = dms(slack)[-1]
    assert channel == "U0DAVE" and text == "Alice Adams: first touch past the SLA window"
    body = str(slack.of("chat.postMessage")[-1]["blocks"])
    assert "was due Mon 23 Nov 13:00 GMT" in body
    # Nothing went anywhere but the two people's DMs.
    assert {c for c, _ in dms(slack)} == {"U0ALICE", "U0DAVE"}


async def test_an_attempt_stops_the_first_touch_clock(company: Store, slack: SlackStandIn) -> None:
    with company.session() as s:
        lead = s.exec(select(Lead)).one()
        leads.record_attempt(
            s,
            lead=lead,
            member_id=lead.owner_id,
            now=MONDAY_9 + timedelta(hours=1),
            channel="call",
            outcome="no_answer",
        )
        clock_store.on_attempt(s, lead, MONDAY_9 + timedelta(hours=1), Company("Europe/London"))
    await tick(company, slack, MONDAY_9 + timedelta(hours=5))
    with company.session() as s:
        first_touch = s.exec(select(Clock).where(Clock.kind == "first_touch")).one()
        assert (first_touch.outcome, first_touch.next_at) == ("met", None)
    # The verdict clock (24 business hours = three working days) still runs: its reminder
    # comes at 75%, i.e. Wednesday 11:00.
    assert dms(slack) == []
    await tick(company, slack, datetime(2026, 11, 25, 11, 0, tzinfo=UTC))
    assert dms(slack) == [("U0ALICE", "Reminder: verdict (accept or not a fit) for Jordan Patel")]


async def test_time_away_pauses_the_clock(company: Store, slack: SlackStandIn) -> None:
    with company.session() as s:
        alice = members.member_by(s, email="alice@x.com")
        assert alice is not None
        # Away from Monday 10:00 until Wednesday: one hour of the window has run.
        s.add(
            Away(
                member_id=alice.id or 0,
                starts_at=MONDAY_9 + timedelta(hours=1),
                until=datetime(2026, 11, 25, 0, 0, tzinfo=UTC),
                created_at=MONDAY_9,
            )
        )
    await tick(company, slack, MONDAY_9 + timedelta(hours=4))
    assert dms(slack) == []
    # Back on Wednesday at 09:00: the remaining 2 hours to the reminder end at 11:00.
    await tick(company, slack, datetime(2026, 11, 25, 10, 59, tzinfo=UTC))
    assert dms(slack) == []
    await tick(company, slack, datetime(2026, 11, 25, 11, 0, tzinfo=UTC))
    assert dms(slack) == [("U0ALICE", "Reminder: first touch for Jordan Patel")]


async def test_throttled_messages_all_arrive_once(company: Store, slack: SlackStandIn) -> None:
    slack.throttle("chat.postMessage", times=3, retry_after=1)
    await tick(company, slack, MONDAY_9 + timedelta(hours=3))
    # The tick's lane waited out each Retry-After from when Slack answered, with the
    # reminder still claimed, and sent it once when Slack let it.
    assert dms(slack) == [("U0ALICE", "Reminder: first touch for Jordan Patel")]
    tries = [c.at for c in slack.refused] + [
        c.at for c in slack.calls if c.method == "chat.postMessage"
    ]
    assert len(tries) == 4
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(tries))
    with company.session() as s:
        (message,) = s.exec(select(OutboxMessage)).all()
        assert message.status == "sent" and message.attempts == 0
        assert "429" in (message.last_error or "")  # why it was late, for `liaison outbox`
    await tick(company, slack, MONDAY_9 + timedelta(hours=3, seconds=10))
    assert len(dms(slack)) == 1
