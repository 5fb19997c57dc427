"""Field feedback over time: one reminder and the close at the deadline (the request and
its cards: handlers/feedback.py, handlers/feedback_cards.py).

A request is a row with two due times: `remind_at` (the midpoint between sending and the
deadline) and `deadline`. The pass claims the due requests (`FOR UPDATE SKIP LOCKED`), owes
one reminder to each person who has not answered — in their working hours and only if it can
reach them before the deadline — and at the deadline closes the request once and owes the
requester the summary. Nothing in Liaison waits on any of it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session

from bot.core.business_time import Company, next_working_moment
from bot.core.messages import Card, card_to_dict
from handlers.clocks import TickReport
from handlers.feedback_cards import ask_card, final_summary_card, remind_key, summary_key
from storage import feedback as records
from storage import outbox as stored_outbox
from storage.calendars import Calendars
from storage.db import Store
from storage.models import FeedbackRequest, Member, OutboxMessage

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- the scheduled pass


def tick(store: Store, *, now: datetime, company: Company, batch: int = 200) -> TickReport:
    """One pass over the requests due for their reminder or their close, a batch per
    transaction."""
    report = TickReport()
    while True:
        with store.session() as session:
            if not records.any_due_request(session, now=now):
                return report
            due = records.due_requests(session, now=now, limit=batch)
            calendars = Calendars(session, company)
            for request in due:
                if request.deadline <= now:
                    close_at_deadline(session, request, now, calendars, report)
                else:
                    remind(session, request, now, calendars, report)
            report.looked_at += len(due)
        if len(due) < batch:
            return report


def remind(
    session: Session,
    request: FeedbackRequest,
    now: datetime,
    calendars: Calendars,
    report: TickReport,
) -> None:
    """The one reminder, to each person who has not answered every question, owed for their
    working hours; someone whose next working moment is past the deadline is left alone."""
    request_id = request.id or 0
    questions = records.questions_of(session, request_id=request_id)
    reminded = []
    for recipient in records.not_fully_answered(session, request_id=request_id):
        member = session.get(Member, recipient.member_id)
        if member is None:
            continue
        try:
            not_before = next_working_moment(calendars.of(member), now)
        except ValueError:  # no working hours at all
            continue
        if not_before >= request.deadline:
            continue
        tz = member.timezone or calendars.company.tz
        card = ask_card(session, request, questions, tz, reminder=True)
        _owe(session, member, remind_key(request_id, member.id or 0), card, not_before, now, report)
        reminded.append(member.id or 0)
    records.mark_reminded(session, request_id=request_id, member_ids=reminded, now=now)


def close_at_deadline(
    session: Session,
    request: FeedbackRequest,
    now: datetime,
    calendars: Calendars,
    report: TickReport,
) -> None:
    """Close the request as of its deadline and owe the requester the summary."""
    closed = records.close_request(
        session, request_id=request.id or 0, at=request.deadline, by="deadline"
    )
    if closed is None:
        return
    requester = session.get(Member, closed.requester_id)
    if requester is None:
        log.info("feedback request %s closed; its requester no longer exists", closed.id)
        return
    card = final_summary_card(session, closed, calendars.company)
    try:
        not_before = next_working_moment(calendars.of(requester), now)
    except ValueError:
        not_before = now
    _owe(session, requester, summary_key(closed.id or 0), card, not_before, now, report)


def _owe(
    session: Session,
    member: Member,
    key: str,
    card: Card,
    not_before: datetime,
    now: datetime,
    report: TickReport,
) -> None:
    """Write one DM to the outbox under its stable key (a second pass owes nothing)."""
    message = OutboxMessage(
        key=key, member_id=member.id, card=card_to_dict(card), not_before=not_before, created_at=now
    )
    if stored_outbox.enqueue(session, message=message):
        report.messages += 1
        report.keys.append(key)
