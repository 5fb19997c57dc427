"""Snoozing SLA clocks from a reminder card, the time left on the lead card, and leads
handed to someone who is away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from app import build_router
from bot.core.business_time import Company
from bot.core.effects import FormErrors, Notify, Reply, ShowForm
from bot.core.interaction import Interaction, Kind, Where
from bot.core.messages import card_from_dict
from digests import sla
from handlers.ingest import LeadIn, store_leads
from storage import members
from storage.db import Store
from storage.models import Clock, LeadEvent, Member, OutboxMessage
from tests import support

MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LONDON = Company("Europe/London")
router = build_router(LONDON)


@pytest.fixture
def people(sqlite_store: Store) -> dict[str, Member]:
    with sqlite_store.session() as s:
        dave = members.upsert_member(
            s,
            now=MONDAY_9,
            email="dave@x.com",
            name="Dave",
            role="manager",
            timezone="Europe/London",
        )
        alice = members.upsert_member(
            s,
            now=MONDAY_9,
            email="alice@x.com",
            name="Alice",
            timezone="Europe/London",
            manager_id=dave.id,
        )
        bob = members.upsert_member(s, now=MONDAY_9, email="bob@x.com", name="Bob")
    return {"alice": alice, "bob": bob, "dave": dave}


def hand_off(store: Store, at: datetime = MONDAY_9) -> list[object]:
    with store.session() as s:
        _, effects = store_leads(
            s,
            [LeadIn(external_id="L1", name="Jordan Patel", owner_email="alice@x.com")],  # type: ignore[call-arg]
            now=at,
            admin_channel=None,
            company=Company(),
        )
    return list(effects)


def act(
    store: Store,
    who: Member,
    kind: Kind,
    name: str,
    at: datetime,
    values: dict[str, list[str]] | None = None,
    **args: str,
) -> list[object]:
    return list(support.act(router, store, who, kind, name, at, values, **args))


def reminder(store: Store) -> dict[str, str]:
    with store.session() as s:
        message = s.exec(select(OutboxMessage).order_by(OutboxMessage.id)).first()
        assert message is not None
        card = card_from_dict(message.card)
    (button,) = card.buttons
    assert button.label == "Snooze"
    return dict(p.split("=") for p in button.value.split("&"))


def test_the_card_shows_the_business_time_left(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    (notify,) = hand_off(sqlite_store)
    assert isinstance(notify, Notify)
    sla_lines = [f.value for f in notify.card.fields if f.label == "SLA"]
    assert sla_lines == [
        "first touch: due Mon 23 Nov 13:00 GMT (4 h 00 min of business time left)",
        "verdict (accept or not a fit): due Wed 25 Nov 17:00 GMT "
        "(24 h 00 min of business time left)",
    ]
    effects = act(
        sqlite_store, people["alice"], Kind.command, "leads", MONDAY_9 + timedelta(hours=5)
    )
    (card,) = [e.card for e in effects if isinstance(e, Notify)]
    assert "first touch: was due Mon 23 Nov 13:00 GMT" in [f.value for f in card.fields]


def test_snooze_moves_the_deadline_and_is_recorded(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    hand_off(sqlite_store)
    sla.tick(sqlite_store, now=MONDAY_9 + timedelta(hours=3), company=LONDON)
    clock = reminder(sqlite_store)["clock"]
    (refused,) = act(
        sqlite_store,
        people["bob"],
        Kind.action,
        "clock.snooze",
        MONDAY_9 + timedelta(hours=3),
        clock=clock,
    )
    assert isinstance(refused, Reply) and "Only the person" in refused.card.text
    (form,) = act(
        sqlite_store,
        people["alice"],
        Kind.action,
        "clock.snooze",
        MONDAY_9 + timedelta(hours=3),
        clock=clock,
    )
    assert isinstance(form, ShowForm)
    at = MONDAY_9 + timedelta(hours=3, minutes=5)
    (no_reason,) = act(
        sqlite_store,
        people["alice"],
        Kind.form,
        "clock.snooze",
        at,
        {"for": ["1h"], "reason": [""]},
        **form.form.state,
    )
    assert isinstance(no_reason, FormErrors) and "reason" in no_reason.errors
    (too_long,) = act(
        sqlite_store,
        people["alice"],
        Kind.form,
        "clock.snooze",
        at,
        {"for": ["custom"], "until": ["2026-12-10 09:00"], "reason": ["trip"]},
        **form.form.state,
    )
    assert isinstance(too_long, FormErrors) and "week" in too_long.errors["until"]
    (done,) = act(
        sqlite_store,
        people["alice"],
        Kind.form,
        "clock.snooze",
        at,
        {"for": ["1h"], "reason": ["Buyer asked me to call after 14:00"]},
        **form.form.state,
    )
    assert isinstance(done, Reply) and "snoozed until Mon 23 Nov 13:05 GMT" in done.card.text
    # The one hour does not count: the deadline moves from 13:00 to 14:00.
    report = sla.tick(sqlite_store, now=MONDAY_9 + timedelta(hours=4, minutes=30), company=LONDON)
    assert report.keys == []
    report = sla.tick(sqlite_store, now=MONDAY_9 + timedelta(hours=5), company=LONDON)
    assert report.keys == [f"clock:{clock}:breach"]
    with sqlite_store.session() as s:
        event = s.exec(select(LeadEvent).where(LeadEvent.kind == "clock_snoozed")).one()
        assert event.data["reason"] == "Buyer asked me to call after 14:00"
        assert event.member_id == people["alice"].id


def test_snooze_until_tomorrow_means_the_next_working_morning(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    friday = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    hand_off(sqlite_store, friday)
    with sqlite_store.session() as s:
        clock = s.exec(select(Clock).where(Clock.kind == "first_touch")).one()
    (form,) = act(
        sqlite_store, people["alice"], Kind.action, "clock.snooze", friday, clock=str(clock.id)
    )
    assert isinstance(form, ShowForm)
    (done,) = act(
        sqlite_store,
        people["alice"],
        Kind.form,
        "clock.snooze",
        friday + timedelta(hours=1),
        {"for": ["tomorrow"], "reason": ["Waiting for the buyer's reply"]},
        **form.form.state,
    )
    assert isinstance(done, Reply) and "until Mon 30 Nov 09:00 GMT" in done.card.text


def test_a_lead_for_someone_away_is_flagged_to_their_manager(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    interaction = Interaction(
        Kind.command, "away", people["alice"], Where("test"), text="until 2026-11-30"
    )
    router.dispatch(sqlite_store, interaction, MONDAY_9)
    effects = hand_off(sqlite_store, MONDAY_9 + timedelta(hours=1))
    flags = [e for e in effects if isinstance(e, Notify) and e.member_id == people["dave"].id]
    (flag,) = flags
    assert "Alice is away" in flag.card.title and "until Mon 30 Nov 00:00 GMT" in flag.card.text
