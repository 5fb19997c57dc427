"""The SLA tick reads and writes a batch of due clocks together, on SQLite and PostgreSQL:
its statements do not grow with the due rows, and each message is still written once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import col, select

from bot.core.business_time import Company
from digests import sla
from handlers.ingest import LeadIn, store_leads
from storage import away as stored_away
from storage import clocks as clock_store
from storage import leads as stored_leads
from storage import members
from storage import outbox as stored_outbox
from storage.db import Store
from storage.models import Away, Clock, ClockStage, Lead, Member, OutboxMessage
from storage.values import NewMessage

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
REPS = 10
ALWAYS = {
    "timezone": "UTC",
    "work_start": "00:00",
    "work_end": "24:00",
    "workdays": "0,1,2,3,4,5,6",
}


@contextmanager
def counting(store: Store) -> Iterator[list[str]]:
    """The SQL statements sent to the database inside the block."""
    sent: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        yield sent
    finally:
        event.remove(store.engine, "before_cursor_execute", before)


def make_reps(store: Store) -> None:
    """Ten reps working round the clock, two to each of five managers; one rep was away."""
    with store.session() as s:
        managers = [
            members.upsert_member(
                s, now=NOW, email=f"m{i}@x.com", name=f"Manager {i}", role="manager", **ALWAYS
            )
            for i in range(REPS // 2)
        ]
        for i in range(REPS):
            rep = members.upsert_member(
                s,
                now=NOW,
                email=f"r{i}@x.com",
                name=f"Rep {i}",
                manager_id=managers[i // 2].id,
                **ALWAYS,
            )
        s.add(
            Away(
                member_id=rep.id or 0,
                starts_at=NOW - timedelta(days=40),
                until=NOW - timedelta(days=39),
                created_at=NOW,
            )
        )


def hand_off(store: Store, first: int, count: int, accepted: int) -> None:
    """`count` leads handed to the reps in turn 30 days ago; the first `accepted` of them
    were accepted then (their attempts clock started) and have one attempt logged."""
    then = NOW - timedelta(days=30)
    items = [
        LeadIn(external_id=f"L{n}", name=f"Prospect {n}", owner_email=f"r{n % REPS}@x.com")
        for n in range(first, first + count)
    ]  # type: ignore[call-arg]
    with store.session() as s:
        outcomes, _ = store_leads(s, items, now=then, admin_channel=None, company=Company())
        for outcome in outcomes[:accepted]:
            lead = s.get(Lead, outcome.lead_id)
            assert lead is not None
            clock_store.on_accepted(s, lead, then, Company())
            stored_leads.record_attempt(
                s,
                lead=lead,
                member_id=lead.owner_id,
                now=then + timedelta(hours=1),
                channel="call",
                outcome="no_answer",
            )


def snooze_some(store: Store, count: int) -> None:
    """Snooze `count` escalated clocks, as a rep would: the next tick re-plans them."""
    with store.session() as s:
        open_escalated = (
            select(Clock)
            .where(Clock.stage == ClockStage.escalated, col(Clock.closed_at).is_(None))
            .order_by(col(Clock.id))
            .limit(count)
        )
        for clock in s.exec(open_escalated):
            rep = s.get(Member, clock.owner_id)
            assert rep is not None
            until, at = NOW + timedelta(days=1), NOW - timedelta(minutes=1)
            clock_store.snooze(s, clock, until=until, reason="travel", by=rep, now=at)


def test_a_tick_sends_as_many_statements_for_50_due_clocks_as_for_10(any_store: Store) -> None:
    make_reps(any_store)
    hand_off(any_store, 0, 5, accepted=2)  # 5 first touch, 3 verdict, 2 attempts clocks
    with counting(any_store) as few:
        report = sla.tick(any_store, now=NOW, company=Company())
    assert report.looked_at == 10 and report.messages == 20  # breach and escalation each
    hand_off(any_store, 5, 25, accepted=10)  # 25 + 15 + 10 clocks
    snooze_some(any_store, 3)  # re-planned with no step taken: other columns change
    with counting(any_store) as many:
        report = sla.tick(any_store, now=NOW, company=Company())
    assert report.looked_at == 53 and report.messages == 100
    assert len(many) == len(few) <= 12, many
    with any_store.session() as s:
        progress = [
            m.card["text"] for m in s.exec(select(OutboxMessage)).all() if m.key.endswith("breach")
        ]
    assert sum("1 of 5 attempts logged so far" in text for text in progress) == 12


def test_a_tick_in_batches_sends_statements_per_batch_not_per_clock(any_store: Store) -> None:
    make_reps(any_store)
    hand_off(any_store, 0, 25, accepted=0)
    with counting(any_store) as sent:
        report = sla.tick(any_store, now=NOW, company=Company(), batch=20)
    assert report.looked_at == 50 and report.messages == 100
    assert len(sent) <= 3 * 12, sent  # batches of 20, 20 and 10


def test_a_message_already_owed_is_not_written_or_reported_again(any_store: Store) -> None:
    make_reps(any_store)
    hand_off(any_store, 0, 1, accepted=0)
    with any_store.session() as s:
        first = s.exec(select(Clock).order_by(Clock.id)).first()
        assert first is not None
        key = f"clock:{first.id}:breach"
        assert stored_outbox.enqueue(
            s,
            message=OutboxMessage(
                key=key, member_id=1, card={"title": "x"}, not_before=NOW, created_at=NOW
            ),
        )
    report = sla.tick(any_store, now=NOW, company=Company())
    assert report.looked_at == 2 and report.messages == 3 and key not in report.keys
    with any_store.session() as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.key == key)).all()
        assert [row.card for row in rows] == [{"title": "x"}]
        clock = s.get(Clock, first.id)
        assert clock is not None and clock.stage == ClockStage.escalated


def test_a_failed_outbox_write_leaves_the_clocks_as_they_were(
    any_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_reps(any_store)
    hand_off(any_store, 0, 3, accepted=0)

    def refuse(*_: Any, **__: Any) -> list[str]:
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(stored_outbox, "enqueue_many", refuse)
    with pytest.raises(RuntimeError):
        sla.tick(any_store, now=NOW, company=Company())
    with any_store.session() as s:
        clocks = s.exec(select(Clock)).all()
        assert {(c.stage, c.next_at is not None) for c in clocks} == {(ClockStage.running, True)}
        assert s.exec(select(OutboxMessage)).all() == []


def owed(key: str, member_id: int, title: str) -> NewMessage:
    return NewMessage(
        key=key, member_id=member_id, card={"title": title}, not_before=NOW, created_at=NOW
    )


def row(key: str, member_id: int, title: str) -> OutboxMessage:
    return OutboxMessage(
        key=key, member_id=member_id, card={"title": title}, not_before=NOW, created_at=NOW
    )


def test_enqueue_many_writes_each_key_once_and_says_which(any_store: Store) -> None:
    make_reps(any_store)
    with any_store.session() as s:
        assert stored_outbox.enqueue(s, message=row("b", 1, "first b"))
    with any_store.session() as s, counting(any_store) as sent:
        written = stored_outbox.enqueue_many(
            s,
            messages=[
                owed("c", 1, "c"),
                owed("b", 2, "b again"),
                owed("a", 3, "a"),
                owed("c", 4, "c again"),
            ],
        )
    assert written == ["c", "a"]
    assert len([statement for statement in sent if "INSERT" in statement]) == 1
    with any_store.session() as s:
        rows = s.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        assert [(r.key, r.member_id, r.card["title"]) for r in rows] == [
            ("b", 1, "first b"),
            ("c", 1, "c"),
            ("a", 3, "a"),
        ]
        assert all(r.status == "pending" and r.attempts == 0 and r.purpose == "" for r in rows)
        assert all(r.not_before == NOW and r.sent_at is None for r in rows)
        assert not stored_outbox.enqueue(s, message=row("a", 5, "a once more"))
        assert stored_outbox.enqueue_many(s, messages=[]) == []


def test_batch_reads_answer_for_every_id_asked(any_store: Store) -> None:
    make_reps(any_store)
    hand_off(any_store, 0, 3, accepted=2)
    with any_store.session() as s:
        away = stored_away.away_spans_of(s, member_ids=[1, 15])
        assert away[1] == [] and away[15] == stored_away.away_spans(s, member_id=15) != []
        assert set(members.members_by_id(s, ids=[1, 2, 999])) == {1, 2}
        assert set(stored_leads.leads_by_id(s, ids=[3, 999])) == {3}
