"""Every message the bot starts on its own is owed through the outbox: a handoff card goes
at once while Liaison's own nudges wait for working hours, it survives Slack throttling,
and one busy rep's messages do not hold up anyone else's. Through the real Slack messenger
against the Web API stand-in."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import aiohttp
import pytest
from rich.console import Console
from sqlmodel import select

from app import build_router
from bot.console.chat import ConsoleChat, ConsoleMessenger, ConsoleScreen
from bot.core.business_time import Company
from bot.core.delivery import Bot, Deliverer
from bot.core.messages import Card, card_to_dict
from bot.outbox.sender import Sender
from bot.slack.app import SlackMessenger
from digests.scheduler import Scheduler
from handlers.ingest import Ingestor, LeadIn
from storage import approvals, members
from storage import outbox as stored_outbox
from storage.db import Store
from storage.models import CardLocation, Lead, OutboxMessage
from tests.slack_standin import Pace, SlackStandIn
from tests.support import (
    LiveServer,
    eventually,
    make_settings,
    owed,
    signed_lead_headers,
)

FRIDAY_EVENING = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # 18:00 in London
MONDAY_MORNING = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # 09:00 in London
MONDAY_EVENING = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
TUESDAY_MORNING = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LONDON = Company("Europe/London")


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await SlackStandIn().start()
    standin.add_user("U0ALICE", "Alice Adams", "alice@example.com")
    standin.add_user("U0BOB", "Bob Brown", "bob@example.com")
    yield standin
    await standin.stop()


def slack_deliverer(store: Store, slack: SlackStandIn, tmp_path: Path) -> Deliverer:
    url = f"sqlite:///{tmp_path / 'liaison.db'}"
    settings = make_settings(url, SLACK_BOT_TOKEN=slack.token, SLACK_API_URL=slack.api_url)
    messenger = SlackMessenger.from_settings(settings, store)
    return Deliverer(store, [messenger], [messenger])


def cards_to(slack: SlackStandIn, channel: str) -> list[str]:
    return [p["text"] for p in slack.of("chat.postMessage") if p["channel"] == channel]


async def test_a_handoff_after_hours_goes_at_once_and_an_sla_reminder_waits_for_the_morning(
    sqlite_store: Store, slack: SlackStandIn, tmp_path: Path
) -> None:
    deliverer = slack_deliverer(sqlite_store, slack, tmp_path)
    ingestor = Ingestor(sqlite_store, deliverer, list(deliverer.directories), None, LONDON)
    lead = LeadIn(external_id="L1", name="Jordan Patel", owner_email="alice@example.com")  # type: ignore[call-arg]
    (outcome,) = await ingestor.ingest([lead], now=FRIDAY_EVENING)
    assert outcome.status == "created"
    jobs = Scheduler(sqlite_store, deliverer, LONDON)

    # A person caused it (the lead was handed over): Slack notifies on Alice's schedule.
    await jobs.run_once(FRIDAY_EVENING)
    assert cards_to(slack, "U0ALICE") == ["Jordan Patel"]
    (row,) = owed(sqlite_store)
    assert (row.key, row.not_before, row.status) == (
        f"handoff:{outcome.lead_id}",
        FRIDAY_EVENING,
        "sent",
    )
    with sqlite_store.session() as s:
        # Where the card lives is recorded, so Accept & co. update it in place.
        (location,) = s.exec(select(CardLocation)).all()
        assert (location.lead_id, location.purpose) == (outcome.lead_id, "handoff")

    # Liaison's own nudges wait: the clock ran out on Monday, the pass ran that evening.
    await jobs.run_once(MONDAY_EVENING)
    nudges = [m for m in owed(sqlite_store) if m.key.startswith("clock:")]
    assert nudges and all(m.not_before == TUESDAY_MORNING for m in nudges)
    assert all(m.status == "pending" for m in nudges)
    assert cards_to(slack, "U0ALICE") == ["Jordan Patel"]
    await jobs.run_once(TUESDAY_MORNING)
    assert len(cards_to(slack, "U0ALICE")) > 1
    assert cards_to(slack, "U0ALICE").count("Jordan Patel") == 1  # the card once


async def test_one_busy_rep_does_not_hold_up_the_others(
    sqlite_store: Store, slack: SlackStandIn, tmp_path: Path
) -> None:
    with sqlite_store.session() as s:
        alice = members.upsert_member(s, now=MONDAY_MORNING, email="a@x.com", name="Alice")
        bob = members.upsert_member(s, now=MONDAY_MORNING, email="b@x.com", name="Bob")
        alice.slack_user_id, bob.slack_user_id = "U0ALICE", "U0BOB"
        for n, member in enumerate([alice, alice, alice, alice, bob]):
            stored_outbox.enqueue(
                s,
                message=OutboxMessage(
                    key=f"m{n}",
                    member_id=member.id,
                    card=card_to_dict(Card(title=f"note {n}")),
                    not_before=MONDAY_MORNING,
                    created_at=MONDAY_MORNING,
                ),
            )
    slack.pace = Pace()  # Slack's pace as Liaison keeps it: a burst of 3, then 1/s
    sender = Sender(sqlite_store, slack_deliverer(sqlite_store, slack, tmp_path), "test")
    report = await sender.drain(MONDAY_MORNING)
    assert report.sent == 5
    assert slack.over_limit == 0
    posts = [c for c in slack.calls if c.method == "chat.postMessage"]
    to_alice = [c.at for c in posts if c.params["channel"] == "U0ALICE"]
    to_bob = [c.at for c in posts if c.params["channel"] == "U0BOB"]
    assert [c.params["text"] for c in posts if c.params["channel"] == "U0ALICE"] == [
        "note 0",
        "note 1",
        "note 2",
        "note 3",
    ]
    # Bob's note goes out beside Alice's first, not after her four (Slack: 1/s per channel).
    assert to_bob[0] < to_alice[1]
    # Alice's first three are a burst; the fourth waits its second.
    assert to_alice[3] - to_alice[0] >= 1.0


async def test_a_handoff_during_slack_throttling_arrives_once(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        SLACK_BOT_TOKEN=slack.token,
        SLACK_SIGNING_SECRET="s",
        SLACK_API_URL=slack.api_url,
        LIAISON_TICK_SECONDS="0.2",
    )
    server = await LiveServer(settings).start()
    try:
        slack.throttle("chat.postMessage", times=2, retry_after=1)
        body = json.dumps(
            {"external_id": "T1", "name": "Tess Ortiz", "owner_email": "alice@example.com"}
        ).encode()
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{server.url}/api/leads", data=body, headers=signed_lead_headers(body)
            ) as response,
        ):
            assert response.status == 200
        await eventually(lambda: cards_to(slack, "U0ALICE"), timeout=10)
        await server.settle()
        assert cards_to(slack, "U0ALICE") == ["Tess Ortiz"]
        assert len(slack.refused) == 2
        (row,) = owed(server.store)
        assert row.status == "sent" and row.attempts == 0 and "429" in (row.last_error or "")
    finally:
        await server.stop()


async def test_the_console_says_what_waits_for_someones_working_hours(
    sqlite_store: Store,
) -> None:
    now = datetime.now(UTC)
    tomorrow = (now.weekday() + 1) % 7
    with sqlite_store.session() as s:
        members.upsert_member(s, now=now, email="alice@x.com", name="Alice", role="rep")
        dave = members.upsert_member(s, now=now, email="dave@x.com", name="Dave", role="manager")
        # Carol works round the clock, but only tomorrow.
        carol = members.upsert_member(
            s,
            now=now,
            email="carol@x.com",
            name="Carol",
            role="marketer",
            timezone="UTC",
            work_start="00:00",
            work_end="24:00",
            workdays=str(tomorrow),
        )
        approvals.set_approvers(s, side="sales", member_ids=[dave.id or 0])
        approvals.set_approvers(s, side="marketing", member_ids=[carol.id or 0])
        s.add(
            Lead(
                external_id="Q1",
                name="Quinn Lee",
                owner_id=1,
                state="handed_off",
                definition_id=1,
                created_at=now,
                handed_off_at=now,
            )
        )
    buffer = io.StringIO()
    screen = ConsoleScreen(Console(file=buffer, width=160, color_system=None))
    chat: ConsoleChat
    deliverer = Deliverer(sqlite_store, [ConsoleMessenger(screen, lambda: chat.current())])
    always = Company(start=time(0), end=time.max, weekdays=frozenset(range(7)))
    jobs = Scheduler(sqlite_store, deliverer, always)
    answers = iter(
        [
            "Which office?",
            "budget: Budget approved",
            "need: A need our product solves",
            "",
            "Two criteria are easier to use",
        ]
    )
    chat = ConsoleChat(
        sqlite_store,
        Bot(sqlite_store, build_router(always), deliverer),
        screen,
        lambda _prompt: next(answers),
        jobs.run_once,
    )
    # Alice's question is for Carol now: a person caused it, so it goes at once.
    chat.switch("alice")
    await chat.line("/leads")
    need_info = max(n for n, b in screen.buttons.items() if b.label == "Need info")
    await chat.line(str(need_info))
    assert f"→ to Carol ({carol.handle}, marketer) in a DM" in buffer.getvalue()
    assert "Alice needs info about Quinn Lee" in buffer.getvalue()
    assert "⏸" not in buffer.getvalue()

    # An approval request is Liaison's own nudge: it waits for Carol's working hours.
    chat.switch("dave")
    before = len(buffer.getvalue())
    await chat.line("/leaddef propose")
    text = buffer.getvalue()[before:]
    morning = datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=UTC)
    iso = morning.strftime("%Y-%m-%dT%H:%MZ")
    assert "⏸ for Carol: “" in text
    assert f"waits for their working hours, {morning:%a %d %b} 00:00 UTC (/tick {iso}" in text
    assert "→ to Carol" not in text
    await chat.line(f"/tick {iso}")
    assert f"→ to Carol ({carol.handle}, marketer) in a DM" in buffer.getvalue()[before:]
