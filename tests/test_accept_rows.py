"""Accept in plain statements (`storage.verdicts`): the card it renders is the card
`lead_card` draws from what it recorded, and its facts are those of a verdict (the event,
the verdict time, the verdict clock closed, the attempts clock started), on SQLite and
PostgreSQL; a press it may not take changes nothing and is answered as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from app import build_router
from bot.core.business_time import Company
from bot.core.effects import Owed, Reply, UpdateCards
from bot.core.interaction import Interaction, Kind, Where
from bot.core.owing import UpdateLease
from handlers.cards import lead_card
from handlers.ingest import LeadIn, store_leads
from storage import away as stored_away
from storage import members, places
from storage.db import Store
from storage.models import CardLocation, Clock, Lead, LeadEvent, Member

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday
router = build_router()


def _company(store: Store) -> tuple[dict[str, Member], list[int]]:
    """A manager and three reps (one in Paris, one starting at 08:00 and away on Tuesday),
    a holiday on Wednesday, and one handed-off lead per rep with its card posted."""
    with store.session() as s:
        boss = members.upsert_member(s, now=NOW, email="boss@x.com", name="Boss")
        reps = {}
        for i, (tz, start) in enumerate(((None, None), ("Europe/Paris", None), (None, "08:00"))):
            rep = members.upsert_member(s, now=NOW, email=f"r{i}@x.com", name=f"Rep {i}")
            rep.manager_id, rep.timezone, rep.work_start = boss.id, tz, start
            s.add(rep)
            reps[f"r{i}"] = rep
        stored_away.add_holiday(s, day=(NOW + timedelta(days=2)).date(), name="Holiday")
    with store.session() as s:
        stored_away.set_away(
            s, member_id=reps["r2"].id or 0, until=NOW + timedelta(days=1, hours=8), now=NOW
        )
        outcomes, _ = store_leads(
            s,
            [
                LeadIn(
                    external_id=f"A{i}",
                    name=f"Lead {i}",
                    company="Acme",
                    campaign="Webinar" if i % 2 else None,
                    owner_email=f"r{i % 3}@x.com",
                    industry="software",
                    seats=40 + i,
                )  # type: ignore[call-arg]
                for i in range(6)
            ],
            now=NOW,
            admin_channel=None,
            company=Company(),
        )
        ids = [outcome.lead_id for outcome in outcomes]
        for lead_id in ids:
            places.record_location(
                s,
                location=CardLocation(
                    lead_id=lead_id,
                    platform="slack",
                    channel="D1",
                    message_id=f"{lead_id}.000100",
                    created_at=NOW,
                ),
            )
    return {"boss": boss, **reps}, ids


def _press(store: Store, who: Member, lead_id: int, at: datetime) -> list[object]:
    interaction = Interaction(
        Kind.action, "lead.accept", who, Where("slack", "D1"), {"lead_id": str(lead_id)}
    )
    return list(router.dispatch(store, interaction, at, UpdateLease("test-sender", 60)))


def test_the_card_of_an_accept_is_the_card_of_what_it_recorded(any_store: Store) -> None:
    people, ids = _company(any_store)
    for i, lead_id in enumerate(ids):
        with any_store.session() as s:
            lead = s.get(Lead, lead_id)
            assert lead is not None and lead.owner_id is not None
            owner = s.get(Member, lead.owner_id)
        assert owner is not None
        who = people["boss"] if i == 3 else owner  # the manager may accept too
        # On time for the first three (within the first day), late for the others.
        at = NOW + (timedelta(hours=i) if i < 3 else timedelta(days=10, hours=i))
        effects = _press(any_store, who, lead_id, at)
        (update,) = [e for e in effects if isinstance(e, UpdateCards)]
        assert [type(e) for e in effects] == [UpdateCards, Owed]
        assert len(update.leased) == 1  # the click's task sends it

        with any_store.session() as s:
            stored = s.get(Lead, lead_id)
            assert stored is not None
            assert update.card == lead_card(s, stored, at, Company())
            assert stored.state == "accepted" and stored.verdict_at == at
            events = s.exec(
                select(LeadEvent).where(LeadEvent.lead_id == lead_id, LeadEvent.kind == "accepted")
            ).all()
            assert [(e.member_id, e.at) for e in events] == [(who.id, at)]
            clocks = {c.kind: c for c in s.exec(select(Clock).where(Clock.lead_id == lead_id))}
            assert clocks["verdict"].closed_at == at
            assert clocks["verdict"].outcome == ("met" if i < 3 else "missed")
            assert clocks["verdict"].business_seconds is not None
            assert clocks["attempts"].closed_at is None and clocks["attempts"].owner_id == owner.id
        assert f"Accepted by {who.name}" in update.card.text

        again = _press(any_store, who, lead_id, at)
        assert [type(e) for e in again] == [Reply]
        assert "already accepted" in again[0].card.text  # type: ignore[attr-defined]


def test_a_press_it_may_not_take_changes_nothing(any_store: Store) -> None:
    people, ids = _company(any_store)
    stranger = people["r1"]  # not the owner of lead 0, nor its owner's manager
    (reply,) = _press(any_store, stranger, ids[0], NOW)
    assert isinstance(reply, Reply) and "belongs to" in reply.card.text
    (unknown,) = _press(any_store, stranger, 999_999, NOW)
    assert isinstance(unknown, Reply)
    with any_store.session() as s:
        lead = s.get(Lead, ids[0])
        assert lead is not None and lead.state == "handed_off" and lead.verdict_at is None
        assert not s.exec(select(LeadEvent).where(LeadEvent.kind == "accepted")).all()
