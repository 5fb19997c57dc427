"""Which clocks run when, for both sides: handoff, verdicts, attempts, questions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from app import build_router
from bot.core.business_time import Company
from bot.core.effects import ShowForm
from bot.core.interaction import Kind
from digests import sla
from handlers.ingest import LeadIn, store_leads
from storage import campaigns, members
from storage.db import Store
from storage.models import Clock, Member, OutboxMessage
from tests import support

MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TZ = "Europe/London"
router = build_router(Company(TZ))


@pytest.fixture
def people(sqlite_store: Store) -> dict[str, Member]:
    with sqlite_store.session() as s:
        dave = members.upsert_member(
            s, now=MONDAY_9, email="dave@x.com", name="Dave", role="manager", timezone=TZ
        )
        maya = members.upsert_member(
            s, now=MONDAY_9, email="maya@x.com", name="Maya", role="manager", timezone=TZ
        )
        alice = members.upsert_member(
            s, now=MONDAY_9, email="alice@x.com", name="Alice", timezone=TZ, manager_id=dave.id
        )
        carol = members.upsert_member(
            s,
            now=MONDAY_9,
            email="carol@x.com",
            name="Carol",
            role="marketer",
            timezone=TZ,
            manager_id=maya.id,
        )
        campaign = campaigns.ensure_campaign(s, name="Webinar")
        campaign.marketer_id = carol.id
        s.add(campaign)
        store_leads(
            s,
            [
                LeadIn(
                    external_id="L1", name="Jordan", campaign="Webinar", owner_email="alice@x.com"
                )
            ],  # type: ignore[call-arg]
            now=MONDAY_9,
            admin_channel=None,
            company=Company(),
        )
    return {"alice": alice, "carol": carol, "dave": dave, "maya": maya}


def clocks(store: Store) -> dict[str, tuple[str | None, int]]:
    with store.session() as s:
        return {c.kind: (c.outcome, c.stage) for c in s.exec(select(Clock)).all()}


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


def submit(
    store: Store, who: Member, action: str, at: datetime, values: dict[str, list[str]], **args: str
) -> list[object]:
    (form,) = act(store, who, Kind.action, action, at, **args)
    assert isinstance(form, ShowForm)
    return act(store, who, Kind.form, action, at, values, **form.form.state)


def test_handoff_starts_first_touch_and_verdict(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    assert clocks(sqlite_store) == {"first_touch": (None, 0), "verdict": (None, 0)}


def test_accepting_stops_the_verdict_clock_and_starts_attempts(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    act(
        sqlite_store,
        people["alice"],
        Kind.action,
        "lead.accept",
        MONDAY_9 + timedelta(hours=1),
        lead_id="1",
    )
    assert clocks(sqlite_store) == {
        "first_touch": (None, 0),
        "verdict": ("met", 0),
        "attempts": (None, 0),
    }
    for n in range(1, 6):
        submit(
            sqlite_store,
            people["alice"],
            "lead.log_attempt",
            MONDAY_9 + timedelta(hours=1 + n),
            {"channel": ["call"], "outcome": ["no_answer"]},
            lead_id="1",
        )
        if n == 1:
            # The first attempt is the first touch, 2 h after handoff: within 4 h.
            assert clocks(sqlite_store)["first_touch"] == ("met", 0)
            assert clocks(sqlite_store)["attempts"] == (None, 0)
    assert clocks(sqlite_store)["attempts"] == ("met", 0)


def test_a_late_verdict_is_recorded_as_missed(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    # 24 business hours from Monday 09:00 end Wednesday 17:00.
    act(
        sqlite_store,
        people["alice"],
        Kind.action,
        "lead.accept",
        datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
        lead_id="1",
    )
    assert clocks(sqlite_store)["verdict"] == ("missed", 0)


def test_not_a_fit_cancels_the_other_sales_clocks(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    submit(
        sqlite_store,
        people["alice"],
        "lead.not_a_fit",
        MONDAY_9 + timedelta(hours=1),
        {"criteria": ["budget"]},
        lead_id="1",
    )
    assert clocks(sqlite_store) == {"first_touch": ("cancelled", 0), "verdict": ("met", 0)}
    report = sla.tick(sqlite_store, now=MONDAY_9 + timedelta(days=7), company=Company(TZ))
    assert report.keys == []


def test_an_unanswered_question_escalates_to_the_marketers_manager(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    submit(
        sqlite_store,
        people["alice"],
        "lead.need_info",
        MONDAY_9,
        {"question": ["Which office?"]},
        lead_id="1",
    )
    # Alice made a first touch, so only Carol's answer clock (4 business hours) matters here.
    submit(
        sqlite_store,
        people["alice"],
        "lead.log_attempt",
        MONDAY_9,
        {"channel": ["email"], "outcome": ["left_message"]},
        lead_id="1",
    )
    keys = []
    for hours in (3, 4, 8):
        report = sla.tick(sqlite_store, now=MONDAY_9 + timedelta(hours=hours), company=Company(TZ))
        keys += report.keys
    answer_clock = [k for k in keys if "verdict" not in k]
    with sqlite_store.session() as s:
        info = s.exec(select(Clock).where(Clock.kind == "info_answer")).one()
        owed = {m.key: m.member_id for m in s.exec(select(OutboxMessage)).all()}
    assert answer_clock == [
        f"clock:{info.id}:reminder",
        f"clock:{info.id}:breach",
        f"clock:{info.id}:escalation",
    ]
    assert owed[f"clock:{info.id}:reminder"] == people["carol"].id
    assert owed[f"clock:{info.id}:escalation"] == people["maya"].id
    # Answering stops it, as missed (after its deadline).
    submit(
        sqlite_store,
        people["carol"],
        "question.answer",
        MONDAY_9 + timedelta(hours=9),
        {"answer": ["Berlin"]},
        question=f"1:{info.ref}",
    )
    assert clocks(sqlite_store)["info_answer"] == ("missed", 3)


def test_a_buyers_answer_ends_the_follow_up_before_the_attempts(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    alice, at = people["alice"], MONDAY_9 + timedelta(hours=1)
    act(sqlite_store, alice, Kind.action, "lead.accept", at, lead_id="1")
    submit(
        sqlite_store,
        alice,
        "lead.log_attempt",
        at + timedelta(hours=1),
        {"channel": ["call"], "outcome": ["no_answer"]},
        lead_id="1",
    )
    assert clocks(sqlite_store)["attempts"] == (None, 0)
    submit(
        sqlite_store,
        alice,
        "lead.log_attempt",
        at + timedelta(hours=2),
        {"channel": ["call"], "outcome": ["meeting_booked"]},
        lead_id="1",
    )
    # Two attempts, then a meeting: the follow-up ended, neither met nor missed.
    assert clocks(sqlite_store)["attempts"] == ("ended", 0)


def test_a_follow_up_window_that_runs_out_is_missed_as_of_its_end(
    sqlite_store: Store, people: dict[str, Member]
) -> None:
    alice = people["alice"]
    act(sqlite_store, alice, Kind.action, "lead.accept", MONDAY_9, lead_id="1")
    # 10 business days of 8 hours from Monday 09:00 end Friday 4 Dec 17:00; the manager
    # hears 4 business hours later (Monday 7 Dec 13:00): the window closes then, as missed.
    window_end = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
    sla.tick(sqlite_store, now=window_end, company=Company(TZ))
    assert clocks(sqlite_store)["attempts"] == (None, 2)
    report = sla.tick(
        sqlite_store, now=datetime(2026, 12, 7, 13, 0, tzinfo=UTC), company=Company(TZ)
    )
    assert any(key.endswith(":escalation") for key in report.keys)
    with sqlite_store.session() as s:
        clock = s.exec(select(Clock).where(Clock.kind == "attempts")).one()
    assert (clock.outcome, clock.closed_at, clock.stage) == ("missed", window_end, 3)
    assert clock.business_seconds == 10 * 8 * 3600
    # Nothing more to do for it: a later tick does not look at it again.
    again = sla.tick(
        sqlite_store, now=datetime(2026, 12, 14, 13, 0, tzinfo=UTC), company=Company(TZ)
    )
    assert again.looked_at == 0
