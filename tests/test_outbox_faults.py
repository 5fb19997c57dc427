"""The outbox under faults: a busy database after a send, a slow or hanging Slack, an outage.

Messages go through the real SlackMessenger (slack_sdk over HTTP) to the Slack stand-in;
database faults are injected with a SQLAlchemy event on the store's own engine."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import select

from bot import teams
from bot.core.business_time import Company, parse_hours, parse_workdays
from bot.core.delivery import Deliverer
from bot.core.messages import Card, card_to_dict
from bot.core.owing import write_to_outbox
from bot.outbox.sender import Sender
from bot.slack.app import SlackMessenger
from handlers.ingest import LeadIn, store_leads
from storage import members
from storage import outbox as stored_outbox
from storage.db import Store
from storage.models import Member, OutboxMessage
from storage.outbox import LEASE
from tests.slack_standin import SlackStandIn
from tests.support import make_settings
from tests.teams_standin import TeamsStandIn

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ALWAYS = Company("UTC", *parse_hours("00:00-24:00"), parse_workdays("mon-sun"))


def slack_deliverer(store: Store, slack: SlackStandIn, **overrides: str) -> Deliverer:
    settings = make_settings(
        str(store.engine.url), SLACK_BOT_TOKEN=slack.token, SLACK_API_URL=slack.api_url, **overrides
    )
    messenger = SlackMessenger.from_settings(settings, store)
    return Deliverer(store, [messenger], [messenger])


def owe_cards(store: Store, count: int, at: datetime = NOW) -> None:
    """`count` cards, one to each of `count` reps known on Slack."""
    with store.session() as s:
        for n in range(count):
            member = members.upsert_member(
                s, now=at, email=f"rep{n}@x.com", name=f"Rep {n}", slack_user_id=f"U0REP{n:03d}"
            )
            s.flush()
            stored_outbox.enqueue(
                s,
                message=OutboxMessage(
                    key=f"card:{n}",
                    member_id=member.id,
                    card=card_to_dict(Card(title=f"Card {n}")),
                    not_before=at,
                    created_at=at,
                ),
            )


def rows(store: Store) -> list[OutboxMessage]:
    with store.session() as s:
        return list(s.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())  # type: ignore[arg-type]


def posted_titles(slack: SlackStandIn) -> list[str]:
    return [str(p["text"]) for p in slack.of("chat.postMessage")]


@pytest.fixture
def locked_mark_sent(sqlite_store: Store) -> Iterator[dict[str, int]]:
    """The database is busy for the first `left` writes that mark a row sent: SQLite's own
    `database is locked`, raised where the driver would raise it."""
    state = {"left": 3, "refused": 0}

    def busy(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        marking = statement.lstrip().upper().startswith("UPDATE OUTBOX") and "sent" in str(params)
        if marking and state["left"] > 0:
            state["left"] -= 1
            state["refused"] += 1
            raise sqlite3.OperationalError("database is locked")

    event.listen(sqlite_store.engine, "before_cursor_execute", busy)
    yield state
    event.remove(sqlite_store.engine, "before_cursor_execute", busy)


async def test_a_busy_database_after_the_send_neither_kills_the_lane_nor_resends(
    sqlite_store: Store,
    slack: SlackStandIn,
    locked_mark_sent: dict[str, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    owe_cards(sqlite_store, 2)
    sender = Sender(sqlite_store, slack_deliverer(sqlite_store, slack), "a")
    with caplog.at_level(logging.WARNING):
        await sender.drain(NOW)
        # Long after any lease: a row left "sending" would be claimed and sent again.
        await sender.drain(NOW + 3 * LEASE)
    assert locked_mark_sent["refused"] == 3
    assert sorted(posted_titles(slack)) == ["Card 0", "Card 1"]
    assert [r.status for r in rows(sqlite_store)] == ["sent", "sent"]
    assert all(r.message_id for r in rows(sqlite_store))
    assert "Task exception was never retrieved" not in caplog.text


async def test_a_lane_that_fails_unexpectedly_says_so_and_the_others_go_on(
    sqlite_store: Store, slack: SlackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    with sqlite_store.session() as s:
        rep = members.upsert_member(s, now=NOW, email="r@x.com", name="R", slack_user_id="U0R")
        s.flush()
        for n in range(3):  # one conversation: one lane, in order
            stored_outbox.enqueue(
                s,
                message=OutboxMessage(
                    key=f"card:{n}",
                    member_id=rep.id,
                    card=card_to_dict(Card(title=f"Card {n}")),
                    not_before=NOW,
                    created_at=NOW,
                ),
            )
    deliverer = slack_deliverer(sqlite_store, slack)
    sender = Sender(sqlite_store, deliverer, "a")
    original = sender._sent
    calls = {"n": 0}

    def broken_once(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the bookkeeping")
        original(*args, **kwargs)

    sender._sent = broken_once  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        await sender.drain(NOW)
    assert len(posted_titles(slack)) == 3
    assert sum(r.status == "sent" for r in rows(sqlite_store)) == 2
    assert "a bug in the bookkeeping" in caplog.text
    assert "Task exception was never retrieved" not in caplog.text
    # The card whose bookkeeping failed is on Slack: once its lease has run out, a sender
    # finds it there by its outbox key and records it, instead of posting it again.
    await Sender(sqlite_store, deliverer, "b").drain(NOW + 3 * LEASE)
    assert len(posted_titles(slack)) == 3
    assert [r.status for r in rows(sqlite_store)] == ["sent", "sent", "sent"]
    assert len(slack.of("conversations.history")) == 1


async def test_a_hanging_slack_times_out_within_the_lease_and_is_retried_once(
    sqlite_store: Store, slack: SlackStandIn
) -> None:
    owe_cards(sqlite_store, 1)
    lease = timedelta(seconds=4)
    deliverer = slack_deliverer(sqlite_store, slack, LIAISON_OUTBOX_LEASE_SECONDS="4")
    sender = Sender(sqlite_store, deliverer, "a", lease=lease)
    slack.hang_posts = 1
    started = time.monotonic()
    report = await asyncio.wait_for(sender.drain(NOW), timeout=lease.total_seconds())
    assert time.monotonic() - started < lease.total_seconds()
    assert report.retried == 1
    unsure = rows(sqlite_store)[0]
    assert (unsure.status, unsure.attempts) == ("pending", 1)
    assert unsure.sending_since is not None  # the hung send's outcome is unknown
    # The retry looks first (nothing there: the hung post never landed), then posts.
    await sender.drain(NOW + timedelta(minutes=1))
    await sender.drain(NOW + timedelta(minutes=30))
    assert len(slack.of("chat.postMessage")) == 2  # the hung one and one retry, no more
    assert len(slack.of("conversations.history")) == 1
    assert [m["text"] for m in slack.posted_in("U0REP000")] == ["Card 0"]
    sent = rows(sqlite_store)[0]
    assert (sent.status, sent.sending_since) == ("sent", None)


async def test_a_ten_minute_outage_parks_then_delivers_everything_once_and_tells_the_admin(
    any_store: Store, slack: SlackStandIn
) -> None:
    owe_cards(any_store, 3)
    with any_store.session() as s:
        members.upsert_member(
            s, now=NOW, email="admin@x.com", name="Ada", slack_user_id="U0ADMIN", role="admin"
        )
    deliverer = slack_deliverer(any_store, slack)
    sender = Sender(any_store, deliverer, "a", admin_channel="slack:C0ADMIN")
    slack.down = True
    at = NOW
    while at < NOW + timedelta(minutes=10):  # a pass every 30 s through the outage
        await sender.drain(at)
        at += timedelta(seconds=30)
    assert not slack.of("chat.postMessage")
    parked = [r for r in rows(any_store) if r.key.startswith("card:")]
    assert all(r.status == "failed" and r.parked_at for r in parked), parked
    assert any(c.method == "auth.test" for c in slack.refused)  # the probe asked meanwhile

    slack.down = False
    # The next pass's probe (auth.test) finds Slack back: everything parked goes at once,
    # not when each one's backoff (up to 15 minutes) has passed.
    await sender.drain(at)
    assert sorted(t for t in posted_titles(slack) if t.startswith("Card")) == [
        "Card 0",
        "Card 1",
        "Card 2",
    ]
    assert slack.of("auth.test")
    while at < NOW + timedelta(minutes=40):
        await sender.drain(at)
        at += timedelta(seconds=30)

    cards = Counter(t for t in posted_titles(slack) if t.startswith("Card"))
    assert cards == {"Card 0": 1, "Card 1": 1, "Card 2": 1}
    assert all(r.status == "sent" for r in rows(any_store))
    for admin in ("U0ADMIN", "C0ADMIN"):  # privately, and in the admin channel
        told = [m["text"] for m in slack.posted_in(admin)]
        assert len(told) == 2, told
        # As many as were parked when it was noticed (jitter spreads the parking).
        assert re.fullmatch(r"[123] messages? could not be delivered yet", told[0]), told
        assert told[1] == "3 delayed messages delivered", told
    # Nothing more to say once it is over.
    await sender.drain(at + timedelta(hours=1))
    assert len(slack.posted_in("U0ADMIN")) == 2
    assert not [r for r in rows(any_store) if r.status != "sent"]


async def test_a_slow_teams_connector_times_out_within_the_lease() -> None:
    connector = await TeamsStandIn(send_delay=4.0).start()
    connector.add_conversation("a:alice")
    try:
        settings = make_settings(
            "sqlite://",
            SLACK_BOT_TOKEN="",
            MICROSOFT_APP_ID="",
            MICROSOFT_APP_PASSWORD="",
            LIAISON_TEAMS_EMULATOR="1",
            LIAISON_OUTBOX_LEASE_SECONDS="3",
        )
        messenger = teams.TeamsMessenger(teams.make_adapter(settings), settings)
        alice = Member(
            id=1,
            name="Alice",
            handle="alice",
            teams_reference={
                "channelId": "msteams",
                "serviceUrl": connector.service_url,
                "conversation": {"id": "a:alice"},
                "bot": {"id": "28:liaison"},
                "user": {"id": "29:alice"},
            },
        )
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await messenger.send(alice, Card(title="Hello"))
        assert time.monotonic() - started < 3  # within the lease: 1.5 s, half of it
    finally:
        await connector.stop()


async def test_a_thread_reply_whose_send_was_not_recorded_is_found_in_its_thread(
    sqlite_store: Store, slack: SlackStandIn
) -> None:
    with sqlite_store.session() as s:
        members.upsert_member(s, now=NOW, email="r@x.com", name="R", slack_user_id="U0R")
    with sqlite_store.session() as s:
        lead = LeadIn(external_id="L1", name="Jordan Patel", owner_email="r@x.com")  # type: ignore[call-arg]
        _, effects = store_leads(s, [lead], now=NOW, admin_channel=None, company=ALWAYS)
        write_to_outbox(s, effects, actor_id=None, now=NOW, company=ALWAYS)
    deliverer = slack_deliverer(sqlite_store, slack)
    await Sender(sqlite_store, deliverer, "a").drain(NOW)  # the handoff card
    [card] = slack.posted_in("U0R")
    with sqlite_store.session() as s:
        handoff = s.exec(select(OutboxMessage)).one()
        stored_outbox.enqueue(
            s,
            message=OutboxMessage(
                key="answer:1",
                member_id=handoff.member_id,
                lead_id=handoff.lead_id,
                purpose="answer",
                in_thread=True,
                card=card_to_dict(Card(title="The answer")),
                not_before=NOW,
                created_at=NOW,
            ),
        )
    sender = Sender(sqlite_store, deliverer, "b")
    original = sender._sent

    def unrecorded(message: OutboxMessage, *args: Any) -> None:
        if message.key == "answer:1":
            raise RuntimeError("the database went away")
        original(message, *args)

    sender._sent = unrecorded  # type: ignore[method-assign]
    await sender.drain(NOW + timedelta(seconds=5))
    assert [m["text"] for m in slack.posted_in("U0R")] == ["Jordan Patel", "The answer"]

    await Sender(sqlite_store, deliverer, "c").drain(NOW + 3 * LEASE)
    replies = slack.of("conversations.replies")
    assert [r["ts"] for r in replies] == [card["ts"]]  # looked in the card's thread
    assert [m["text"] for m in slack.posted_in("U0R")] == ["Jordan Patel", "The answer"]
    assert all(r.status == "sent" for r in rows(sqlite_store))


async def test_messages_refused_for_good_are_told_to_the_admin_once_per_batch(
    any_store: Store, slack: SlackStandIn
) -> None:
    """Slack refuses two cards (the rep's DM is gone): they are not retried on their own,
    and the admin hears once, privately and in the admin channel, not at every pass."""
    owe_cards(any_store, 2)
    with any_store.session() as s:
        members.upsert_member(
            s, now=NOW, email="admin@x.com", name="Ada", slack_user_id="U0ADMIN", role="admin"
        )
    deliverer = slack_deliverer(any_store, slack)
    sender = Sender(any_store, deliverer, "a", admin_channel="slack:C0ADMIN")
    slack.refusing = {"U0REP000": "channel_not_found", "U0REP001": "channel_not_found"}
    at = NOW
    while at < NOW + timedelta(hours=2):
        await sender.drain(at)
        at += timedelta(minutes=5)
    refused = [r for r in rows(any_store) if r.key.startswith("card:")]
    assert all(r.status == "failed" and r.parked_at is None for r in refused), refused
    assert not [t for t in posted_titles(slack) if t.startswith("Card")]
    for admin in ("U0ADMIN", "C0ADMIN"):
        assert [m["text"] for m in slack.posted_in(admin)] == ["2 messages could not be delivered"]
    told = next(m for m in slack.of("chat.postMessage") if m["channel"] == "U0ADMIN")
    assert "channel_not_found" in json.dumps(told["blocks"])
    assert "liaison outbox retry" in json.dumps(told["blocks"])
    assert len(slack.of("chat.postMessage")) == 2  # the two notices, nothing for the cards

    owe_cards(any_store, 3, at=at)  # a later card to a third rep is refused too
    slack.refusing["U0REP002"] = "channel_not_found"
    for _ in range(30):
        await sender.drain(at)
        at += timedelta(minutes=5)
    assert [m["text"] for m in slack.posted_in("U0ADMIN")] == [
        "2 messages could not be delivered",
        "1 message could not be delivered",
    ]
