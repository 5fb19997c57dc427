"""Pending approvals remind the approvers who have not decided: one business day after the
proposal, then once per business day, at most three times, each in the approver's own
working hours. The scheduled pass runs with an injected `now`, as `liaison tick --at` does."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bot.core.business_time import Company
from bot.core.delivery import Deliverer
from bot.core.messages import card_from_dict
from digests import approvals as reminders
from digests.scheduler import DUE_WORK, Scheduler
from storage import approvals, away
from storage.db import Store
from storage.models import Member, OutboxMessage
from tests.support import owed
from tests.test_approvals import command, company, decide, propose_leaddef, submit, the_form

MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
TUESDAY_10 = MONDAY_10 + timedelta(days=1)
OFFICE = Company()  # 09:00-17:00 UTC, Monday to Friday


@pytest.fixture
def people(any_store: Store) -> dict[str, Member]:
    """Sam (sales) works in New York; Bob (sales) in London, Dave (marketing) in UTC."""
    found = company(any_store)
    with any_store.session() as s:
        for key, tz in (("sam", "America/New_York"), ("bob", "Europe/London")):
            member = s.get(Member, found[key].id)
            assert member is not None
            member.timezone = tz
            s.add(member)
            found[key] = member
    return found


def tick(store: Store, at: datetime) -> list[str]:
    """One pass of the approvals work at `at`: the keys of the reminders it owed."""
    return reminders.tick(store, now=at, company=OFFICE).keys


def reminded(store: Store) -> list[OutboxMessage]:
    return [m for m in owed(store) if ":remind:" in m.key]


def test_undecided_approvers_are_reminded_once_a_business_day_three_times(
    any_store: Store, people: dict[str, Member]
) -> None:
    bob, sam, dave = people["bob"], people["sam"], people["dave"]
    propose_leaddef(any_store, people["carol"])  # Monday 10:00 (as in test_approvals)
    with any_store.session() as s:
        request = approvals.get_request(s, request_id=1)
        assert request is not None and request.remind_at == TUESDAY_10
    decide(any_store, dave, 1, "approve", at=MONDAY_10 + timedelta(hours=1))

    assert tick(any_store, MONDAY_10 + timedelta(hours=7)) == []
    assert tick(any_store, TUESDAY_10 - timedelta(minutes=1)) == []
    first = tick(any_store, TUESDAY_10)
    assert sorted(first) == sorted(
        [f"approval:1:remind:1:{bob.id}", f"approval:1:remind:1:{sam.id}"]
    )
    # Exactly once that day, however often the scheduler looks.
    assert tick(any_store, TUESDAY_10) == []
    assert tick(any_store, TUESDAY_10 + timedelta(hours=6)) == []
    # Each waits for its approver's working hours: London is on UTC in November, New York
    # starts at 14:00 UTC; Dave, who approved, is not reminded.
    due = {m.member_id: m.not_before for m in reminded(any_store)}
    assert due == {bob.id: TUESDAY_10, sam.id: TUESDAY_10.replace(hour=14)}
    card = card_from_dict(reminded(any_store)[0].card)
    assert card.title.startswith("Reminder: your sign-off on the new lead definition")
    assert "Reminder 1 of 3" in card.text
    assert [b.label for b in card.buttons] == ["Approve", "Reject"]

    decide(any_store, bob, 1, "approve", at=TUESDAY_10 + timedelta(hours=2))
    assert tick(any_store, TUESDAY_10 + timedelta(days=1)) == [f"approval:1:remind:2:{sam.id}"]
    assert tick(any_store, TUESDAY_10 + timedelta(days=2)) == [f"approval:1:remind:3:{sam.id}"]
    # At most three reminders.
    for days in (3, 6, 7, 30):
        assert tick(any_store, TUESDAY_10 + timedelta(days=days)) == []
    with any_store.session() as s:
        request = approvals.get_request(s, request_id=1)
        assert request is not None and (request.reminders, request.remind_at) == (3, None)
    assert len(reminded(any_store)) == 4
    assert [m.member_id for m in reminded(any_store)].count(dave.id) == 0


def test_business_days_skip_weekends_and_holidays(
    any_store: Store, people: dict[str, Member]
) -> None:
    friday_15 = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    with any_store.session() as s:
        away.add_holiday(s, day=date(2026, 11, 30), name="Company day")  # the Monday
    form = the_form(command(any_store, people["carol"], "leaddef propose", at=friday_15))
    criteria = "budget: Budget approved\nneed: A need we solve\n"
    submit(any_store, people["carol"], form, at=friday_15, criteria=criteria, note="Simpler")
    with any_store.session() as s:
        request = approvals.get_request(s, request_id=1)
        assert request is not None
        assert request.remind_at == datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # Tuesday
    assert tick(any_store, datetime(2026, 11, 30, 15, 0, tzinfo=UTC)) == []
    assert len(tick(any_store, datetime(2026, 12, 1, 15, 0, tzinfo=UTC))) == 3


def test_a_closed_request_reminds_nobody(any_store: Store, people: dict[str, Member]) -> None:
    propose_leaddef(any_store, people["carol"])
    decide(any_store, people["bob"], 1, "reject", "Not this quarter")
    assert tick(any_store, TUESDAY_10 + timedelta(days=1)) == []
    assert reminded(any_store) == []


async def test_the_scheduler_runs_the_approvals_pass(
    any_store: Store, people: dict[str, Member]
) -> None:
    assert reminders.tick in DUE_WORK
    propose_leaddef(any_store, people["carol"])
    jobs = Scheduler(any_store, Deliverer(any_store, []), OFFICE)
    report = await jobs.tick(TUESDAY_10)
    assert report.messages == 3 and len(report.keys) == 3
