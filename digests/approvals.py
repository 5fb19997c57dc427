"""The scheduled pass that reminds approvers who have not decided on an approval request
(the request and its card: handlers/approvals.py, handlers/approval_cards.py).

A pending request carries `remind_at`: one business day (the company's working week, without
holidays) after it was proposed, then once per business day, at most `MAX_REMINDERS` times.
The pass claims due requests (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and owes each
undecided approver a reminder in the outbox, not before their next working moment, under a
key that makes it impossible to owe the same reminder twice.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session

from bot.core.business_time import Company, next_working_moment
from bot.core.messages import card_to_dict
from handlers.approval_cards import MAX_REMINDERS, ask_card
from handlers.clocks import TickReport
from storage import approvals
from storage import outbox as stored_outbox
from storage.calendars import Calendars, one_business_day_after
from storage.db import Store
from storage.models import ApprovalRequest, Member, OutboxMessage

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- the scheduled pass


def tick(store: Store, *, now: datetime, company: Company, batch: int = 200) -> TickReport:
    """Remind the undecided approvers of every request whose reminder is due at `now`."""
    report = TickReport()
    while True:
        with store.session() as session:
            due = approvals.due_reminders(session, now=now, limit=batch)
            calendars = Calendars(session, company)
            for request in due:
                remind(session, request, now, company, calendars, report)
            report.looked_at += len(due)
        if len(due) < batch:
            return report


def remind(
    session: Session,
    request: ApprovalRequest,
    now: datetime,
    company: Company,
    calendars: Calendars,
    report: TickReport,
) -> None:
    """One reminder to each approver still to decide; the next one a business day later."""
    request.reminders += 1
    for member in approvals.undecided(session, request_id=request.id or 0):
        _owe(session, request, member, now, calendars, report)
    last = request.reminders >= MAX_REMINDERS
    approvals.remind_again(
        session, request=request, at=None if last else one_business_day_after(session, now, company)
    )


def _owe(
    session: Session,
    request: ApprovalRequest,
    member: Member,
    now: datetime,
    calendars: Calendars,
    report: TickReport,
) -> None:
    key = f"approval:{request.id}:remind:{request.reminders}:{member.id}"
    tz = member.timezone or calendars.company.tz
    card = ask_card(session, request, tz=tz, reminder=request.reminders)
    try:
        not_before = next_working_moment(calendars.of(member), now)
    except ValueError:  # no working time at all: better late at night than never
        not_before = now
    if stored_outbox.enqueue(
        session,
        message=OutboxMessage(
            key=key,
            member_id=member.id,
            card=card_to_dict(card),
            not_before=not_before,
            created_at=now,
        ),
    ):
        report.messages += 1
        report.keys.append(key)
