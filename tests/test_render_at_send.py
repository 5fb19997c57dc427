"""Cards are rendered when they are sent, and updated through the outbox: a card that
waited shows the lead as it is when it goes out; an update Slack throttles is retried and
ends in the latest state; updates owed close together are coalesced into one. Signed
requests into the real Bolt app over HTTP, and the real Slack messenger against the Web
API stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from app import build_router
from bot.core.business_time import Company
from bot.core.delivery import Bot, Deliverer
from bot.core.effects import Owed, UpdateCards
from bot.core.interaction import Interaction, Kind, Where
from bot.core.messages import Card
from bot.core.owing import write_to_outbox
from bot.outbox.sender import HOLD_THROTTLED, Sender
from bot.slack.app import SlackMessenger
from handlers.ingest import Ingestor, LeadIn, store_leads
from storage import members, places
from storage.db import Store
from storage.models import CardLocation, Member, OutboxMessage
from tests.slack_standin import SlackStandIn
from tests.support import LiveServer, eventually, make_settings, slack_settings, slack_with
from tests.test_slack import interact, lead_payload, posted_cards, press, send_leads, text_of
from tests.test_slack_loops import slash

HOLD = int(HOLD_THROTTLED.total_seconds())

ALWAYS = Company(start=time(0), end=time.max, weekdays=frozenset(range(7)))  # never after hours


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await slack_with("alice", "carol")
    yield standin
    await standin.stop()


@pytest.fixture
async def server(tmp_path: Path, slack: SlackStandIn) -> AsyncIterator[LiveServer]:
    settings = slack_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        slack,
        LIAISON_TICK_SECONDS="0.2",
    )
    live = await LiveServer(settings).start()
    yield live
    await live.stop()


def buttons_of(params: dict[str, Any]) -> list[str]:
    return [
        e["text"]["text"]
        for b in params.get("blocks", [])
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def updates(slack: SlackStandIn, card: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat.update calls Slack accepted for this posted card."""
    return [
        u
        for u in slack.of("chat.update")
        if (u["channel"], u["ts"]) == (card["channel"], card["ts"])
    ]


async def test_a_handoff_card_that_waited_shows_the_lead_as_it_is_when_sent(
    server: LiveServer, slack: SlackStandIn
) -> None:
    # Slack turns the handoff card away for a while (longer than a lane waits with the card
    # claimed: it goes back in line); meanwhile Alice finds the lead in /leads and accepts it.
    slack.throttle("chat.postMessage", times=1, retry_after=HOLD + 1)
    status, _ = await send_leads(server, lead_payload("L-1", "Jordan Patel"))
    assert status == 200 and len(slack.refused) == 1
    await slash(server, slack, "U0ALICE", "", command="/leads")
    (listed,) = posted_cards(slack, "U0ALICE")
    assert "Accept" in buttons_of(listed)
    await interact(server, press(slack, "U0ALICE", listed, "lead.accept"))
    assert "Accepted by Alice Adams" in text_of(updates(slack, listed)[-1])

    # The handoff card goes out when Slack lets it: as the lead is now, not as it was.
    listed_and_handoff = await eventually(
        lambda: posted_cards(slack, "U0ALICE")[1:], timeout=HOLD + 10
    )
    (handoff,) = listed_and_handoff
    assert "Jordan Patel" in text_of(handoff)
    assert "Accepted by Alice Adams" in text_of(handoff)
    assert "Accept" not in buttons_of(handoff)
    assert buttons_of(handoff) == ["Not a fit", "Need info", "Log attempt", "Share insight"]


async def test_a_throttled_card_update_is_retried_and_ends_in_the_latest_state(
    server: LiveServer, slack: SlackStandIn
) -> None:
    await send_leads(server, lead_payload("L-2", "Priya Rossi"))
    (card,) = await eventually(lambda: posted_cards(slack, "U0ALICE"))
    slack.throttle("chat.update", times=1, retry_after=1)
    await interact(server, press(slack, "U0ALICE", card, "lead.accept"))
    assert [c.method for c in slack.refused] == ["chat.update"]

    (update,) = await eventually(lambda: updates(slack, card), timeout=10)
    assert "Accepted by Alice Adams" in text_of(update)
    assert "Accept" not in buttons_of(update)
    await server.settle()
    assert len(updates(slack, card)) == 1  # once
    with server.store.session() as session:
        (row,) = session.exec(select(OutboxMessage).where(OutboxMessage.location_id != None)).all()  # noqa: E711
        assert row.status == "sent" and "429" in (row.last_error or "")


def slack_bot(store: Store, slack: SlackStandIn, tmp_path: Path) -> tuple[Bot, Member]:
    """The bot, with the real Slack messenger, and Alice, a rep known in Slack."""
    url = f"sqlite:///{tmp_path / 'liaison.db'}"
    settings = make_settings(url, SLACK_BOT_TOKEN=slack.token, SLACK_API_URL=slack.api_url)
    messenger = SlackMessenger.from_settings(settings, store)
    deliverer = Deliverer(store, [messenger], [messenger])
    with store.session() as s:
        alice = members.upsert_member(
            s, now=datetime.now(UTC), email="alice@example.com", name="Alice"
        )
        alice.slack_user_id = "U0ALICE"
        s.add(alice)
    return Bot(store, build_router(ALWAYS), deliverer), alice


async def test_updates_owed_close_together_reach_slack_once_in_the_latest_state(
    sqlite_store: Store, slack: SlackStandIn, tmp_path: Path
) -> None:
    bot, alice = slack_bot(sqlite_store, slack, tmp_path)
    now = datetime.now(UTC)  # the bot decides at the real time
    sender = Sender(sqlite_store, bot.deliverer, "test")
    ingestor = Ingestor(sqlite_store, bot.deliverer, list(bot.deliverer.directories), None, ALWAYS)
    lead = LeadIn(external_id="L3", name="Aiko Tanaka", owner_email="alice@example.com")  # type: ignore[call-arg]
    (outcome,) = await ingestor.ingest([lead], now=now)
    await sender.drain(now)
    (card,) = posted_cards(slack, "U0ALICE")
    where = Where("slack", card["channel"])

    async def act(kind: Kind, name: str, **args: str) -> list[Any]:
        interaction = Interaction(kind, name, alice, where, args=args, values=values)
        effects = await bot.decide(interaction)
        await bot.deliverer.deliver(effects, None)
        return effects

    values: dict[str, list[str]] = {}
    await act(Kind.action, "lead.accept", lead_id=str(outcome.lead_id))
    (opened, *_) = await act(Kind.action, "lead.log_attempt", lead_id=str(outcome.lead_id))
    values = {"channel": ["call"], "outcome": ["no_answer"]}
    await act(Kind.form, "lead.log_attempt", **opened.form.state)
    assert updates(slack, card) == []  # both owed, the sender has not run yet

    await sender.drain(now + timedelta(seconds=1))
    (update,) = updates(slack, card)
    assert "Accepted by Alice" in text_of(update) and "1 so far" in text_of(update)
    await sender.drain(now + timedelta(minutes=1))
    assert len(updates(slack, card)) == 1


async def test_an_update_owed_while_one_is_in_flight_is_sent_after_it(
    sqlite_store: Store, slack: SlackStandIn, tmp_path: Path
) -> None:
    bot, alice = slack_bot(sqlite_store, slack, tmp_path)
    now = datetime.now(UTC)  # the bot decides at the real time
    sender = Sender(sqlite_store, bot.deliverer, "test")
    ingestor = Ingestor(sqlite_store, bot.deliverer, list(bot.deliverer.directories), None, ALWAYS)
    lead = LeadIn(external_id="L4", name="Tom Ito", owner_email="alice@example.com")  # type: ignore[call-arg]
    (outcome,) = await ingestor.ingest([lead], now=now)
    await sender.drain(now)
    (card,) = posted_cards(slack, "U0ALICE")
    where = Where("slack", card["channel"])

    async def act(kind: Kind, name: str, values: dict[str, list[str]], **args: str) -> list[Any]:
        interaction = Interaction(kind, name, alice, where, args=args, values=values)
        effects = await bot.decide(interaction)
        await bot.deliverer.deliver(effects, None)
        return effects

    (opened,) = await act(Kind.action, "lead.log_attempt", {}, lead_id=str(outcome.lead_id))
    await act(Kind.action, "lead.accept", {}, lead_id=str(outcome.lead_id))
    messenger = bot.deliverer.messengers["slack"]
    update = messenger.update

    async def update_while_the_lead_changes(location: Any, rendered: Any) -> None:
        # Slack has the accepted card; before the sender hears back, an attempt is logged.
        await update(location, rendered)
        messenger.update = update  # type: ignore[method-assign]
        values = {"channel": ["call"], "outcome": ["no_answer"]}
        await act(Kind.form, "lead.log_attempt", values, **opened.form.state)

    messenger.update = update_while_the_lead_changes  # type: ignore[method-assign]
    await sender.drain(now + timedelta(seconds=1))
    first, *rest = updates(slack, card)
    assert "Accepted by Alice" in text_of(first) and "so far" not in text_of(first)
    if not rest:  # the newer state was owed while the first was in flight: it goes next
        await sender.drain(now + timedelta(seconds=2))
    (latest,) = updates(slack, card)[1:]
    assert "Accepted by Alice" in text_of(latest) and "1 so far" in text_of(latest)
    await sender.drain(now + timedelta(minutes=1))
    assert len(updates(slack, card)) == 2


def test_updates_of_one_card_coalesce_into_one_row(any_store: Store) -> None:
    """On SQLite and PostgreSQL: waiting, a newer state joins the row; sent or parked, the
    row is due again; in flight, it stays in flight and its revision says a newer state came."""
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    with any_store.session() as s:
        members.upsert_member(s, now=now, email="alice@example.com", name="Alice")
        lead = LeadIn(external_id="L5", name="Ann Lee", owner_email="alice@example.com")  # type: ignore[call-arg]
        (outcome,), _ = store_leads(s, [lead], now=now, admin_channel=None, company=ALWAYS)
        places.record_location(
            s,
            location=CardLocation(
                lead_id=outcome.lead_id,
                member_id=1,
                platform="slack",
                channel="D0ALICE",
                message_id="1700000000.000001",
                created_at=now,
            ),
        )

    def owe_update(title: str, at: datetime) -> OutboxMessage:
        with any_store.session() as s:
            update = UpdateCards(outcome.lead_id, "handoff", Card(title=title))
            written = write_to_outbox(s, [update], actor_id=None, now=at, company=ALWAYS)
            assert written[-1] == Owed(1)
        with any_store.session() as s:
            (row,) = s.exec(select(OutboxMessage).where(OutboxMessage.location_id != None)).all()  # noqa: E711
            return row

    first = owe_update("first", now)
    assert (first.status, first.card["title"], first.revision, first.render) == (
        "pending",
        "first",
        0,
        "handoff",
    )
    waiting = owe_update("second", now + timedelta(seconds=1))
    assert (waiting.status, waiting.not_before, waiting.revision) == ("pending", now, 1)
    assert waiting.card["title"] == "second"

    for status in ("sent", "failed"):
        with any_store.session() as s:
            row = s.get(OutboxMessage, first.id)
            assert row is not None
            row.status, row.attempts = status, 5
            s.add(row)
        later = now + timedelta(minutes=5)
        again = owe_update("third", later)
        assert (again.status, again.not_before, again.attempts) == ("pending", later, 0)

    with any_store.session() as s:
        row = s.get(OutboxMessage, first.id)
        assert row is not None
        row.status, row.claimed_by = "sending", "other"
        s.add(row)
    in_flight = owe_update("fourth", now + timedelta(minutes=6))
    assert (in_flight.status, in_flight.claimed_by) == ("sending", "other")
    assert in_flight.revision == waiting.revision + 3


async def test_an_update_owed_during_a_paced_drain_does_not_wait_for_it(
    sqlite_store: Store, slack: SlackStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rep's click updates her card while the sender is pacing five new cards to another
    rep (Slack: one a second): the update goes out before that lane is done, not after."""
    bot, alice = slack_bot(sqlite_store, slack, tmp_path)
    with sqlite_store.session() as s:
        bob = members.upsert_member(s, now=datetime.now(UTC), email="bob@example.com", name="Bob")
        bob.slack_user_id = "U0BOB"
        s.add(bob)
    monkeypatch.setattr("bot.outbox.sender.POLL", 60.0)  # only a wake-up can end the wait early
    now = datetime.now(UTC)
    sender = Sender(sqlite_store, bot.deliverer, "test")
    ingestor = Ingestor(sqlite_store, bot.deliverer, list(bot.deliverer.directories), None, ALWAYS)
    mine = LeadIn(external_id="A1", name="Aiko Tanaka", owner_email="alice@example.com")  # type: ignore[call-arg]
    (outcome,) = await ingestor.ingest([mine], now=now)
    await sender.drain(now)
    (card,) = posted_cards(slack, "U0ALICE")

    bobs = [
        LeadIn(external_id=f"B{n}", name=f"Lead {n}", owner_email="bob@example.com")  # type: ignore[call-arg]
        for n in range(5)
    ]
    await ingestor.ingest(bobs, now=now)
    draining = asyncio.create_task(sender.drain(datetime.now(UTC)))
    await eventually(lambda: posted_cards(slack, "U0BOB"))  # Bob's lane is running
    interaction = Interaction(
        Kind.action,
        "lead.accept",
        alice,
        Where("slack", card["channel"]),
        args={"lead_id": str(outcome.lead_id)},
    )
    await bot.deliverer.deliver(await bot.decide(interaction), None)
    sender.owed()  # what Scheduler.wake does when a handler owed something
    await draining

    methods = [c.method for c in slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert methods.count("chat.postMessage") == 6 and methods.count("chat.update") == 1
    assert methods.index("chat.update") < len(methods) - 1  # before Bob's last card
    assert "Accepted by Alice" in text_of(updates(slack, card)[0])
