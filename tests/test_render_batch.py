"""Handoff cards of one outbox claim are drawn from facts read for the whole claim: each
card is the one rendering it alone from the database would give, drawing it runs no SQL,
and a lead that changed after the claim shows as it is when its card goes out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from bot.core import rendering
from bot.core.business_time import Company
from bot.core.delivery import Deliverer
from bot.core.messages import Card
from bot.core.owing import write_to_outbox
from bot.outbox.sender import FRESH_FOR, Sender
from handlers.ingest import LeadIn, store_leads
from storage import clocks as clock_store
from storage import leads as stored_leads
from storage import members
from storage.db import Store
from storage.models import Away, EventKind, Lead, Member
from storage.outbox import Claimed

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # a Wednesday
COMPANY = Company(start=time(9), end=time(17))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def statements(any_store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(any_store.engine, "before_cursor_execute", count)
    yield seen
    event.remove(any_store.engine, "before_cursor_execute", count)


def handed_off(store: Store, count: int) -> tuple[Member, Member, list[int]]:
    """A rep with `count` leads handed off (their cards owed), and a marketer."""
    with store.session() as session:
        rep = members.upsert_member(
            session, now=NOW, email="rep@x.com", name="Rita Rep", slack_user_id="U0REP"
        )
        marketer = members.upsert_member(
            session, now=NOW, email="mark@x.com", name="Mark Eter", slack_user_id="U0MARK"
        )
        session.add(  # the rep's calendar has time away: drawn cards must see it too
            Away(
                member_id=rep.id or 0,
                starts_at=NOW + timedelta(hours=1),
                until=NOW + timedelta(days=1),
                created_at=NOW,
            )
        )
        leads = [
            LeadIn(
                external_id=f"L-{n}",
                name=f"Buyer {n}",
                company="Acme",
                campaign="Webinar",
                owner_email="rep@x.com",
                employees=n,  # type: ignore[call-arg]
            )
            for n in range(count)
        ]
        outcomes, effects = store_leads(
            session, leads, now=NOW, admin_channel=None, company=COMPANY
        )
        write_to_outbox(session, effects, actor_id=None, now=NOW, company=COMPANY)
        return rep, marketer, [o.lead_id for o in outcomes]


def accept(store: Store, lead_id: int, by: Member, at: datetime) -> None:
    with store.session() as session:
        lead = session.get(Lead, lead_id)
        assert lead is not None
        stored_leads.record_verdict(session, lead=lead, member_id=by.id, now=at, accepted=True)
        lead.state = "accepted"
        session.add(lead)
        clock_store.on_accepted(session, lead, at, COMPANY)


async def claimed_cards(sender: Sender) -> dict[int, Claimed]:
    lanes = await sender._claim(NOW + timedelta(minutes=1), 100)
    return {c.message.lead_id or 0: c for lane in lanes.values() for c in lane}


def rendered_alone(store: Store, claimed: Claimed, now: datetime) -> Card:
    with store.session() as session:
        return rendering.card_of(
            session, claimed.message, member_id=claimed.message.member_id, now=now, company=COMPANY
        )


async def test_a_claims_cards_are_drawn_as_rendered_alone_without_sql(
    any_store: Store, statements: list[str]
) -> None:
    rep, marketer, ids = handed_off(any_store, 3)
    plain, busy, accepted = ids
    with any_store.session() as session:
        lead = session.get(Lead, busy)
        assert lead is not None
        stored_leads.record_attempt(
            session, lead=lead, member_id=rep.id, now=NOW, channel="call", outcome="no_answer"
        )
        clock_store.on_attempt(session, lead, NOW, COMPANY, "no_answer")
        stored_leads.add_event(
            session,
            lead_id=busy,
            kind=EventKind.info_requested,
            now=NOW,
            member_id=rep.id,
            data={"question_id": "q1", "question": "Budget?", "marketer_id": marketer.id},
        )
    accept(any_store, accepted, rep, NOW)
    sender = Sender(any_store, Deliverer(any_store, []), "test", clock=Clock(), company=COMPANY)
    cards = await claimed_cards(sender)
    assert set(cards) == {plain, busy, accepted}
    at = NOW + timedelta(minutes=2)
    statements.clear()
    drawn = {
        lead_id: await sender._card(c.message, c.message.member_id, at)
        for lead_id, c in cards.items()
    }
    assert statements == []
    for lead_id, claimed in cards.items():
        assert drawn[lead_id] == rendered_alone(any_store, claimed, at)
    text = " ".join(f.value for f in drawn[busy].fields)
    assert "Budget?" in text and "Mark Eter" in text and "No answer" in text
    assert "Accepted by Rita Rep" in drawn[accepted].text
    assert any(f.value.startswith("first touch: due") for f in drawn[plain].fields)


async def test_a_lead_that_changed_after_the_claim_shows_as_it_is_when_sent(
    any_store: Store, statements: list[str]
) -> None:
    rep, _, ids = handed_off(any_store, 2)
    clock = Clock()
    sender = Sender(any_store, Deliverer(any_store, []), "test", clock=clock, company=COMPANY)
    cards = await claimed_cards(sender)
    accept(any_store, ids[1], rep, NOW + timedelta(seconds=30))
    clock.now += FRESH_FOR + 0.1
    at = NOW + timedelta(minutes=2)
    first = await sender._card(cards[ids[0]].message, rep.id, at)
    second = await sender._card(cards[ids[1]].message, rep.id, at)
    assert "Accepted" not in first.text
    assert "Accepted by Rita Rep" in second.text
    assert second == rendered_alone(any_store, cards[ids[1]], at)
    assert second.buttons[0].action == "lead.not_a_fit"
