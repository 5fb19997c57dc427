"""Approval requests as people see them (the sign-off card, its changes), and the scheduled
pass that reminds approvers who have not decided.

A pending request carries `remind_at`: one business day (the company's working week, without
holidays) after it was proposed, then once per business day, at most `MAX_REMINDERS` times.
The pass claims due requests (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and owes each
undecided approver a reminder in the outbox, not before their next working moment, under a
key that makes it impossible to owe the same reminder twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from bot.core.business_time import Calendar, Company, add_business, next_working_moment
from bot.core.messages import Button, Card, Fact, Style, card_to_dict
from bot.core.text import text_for, when
from handlers.clocks import TickReport
from storage import approvals, queries
from storage.calendars import Calendars
from storage.db import Store
from storage.models import ApprovalRequest, ApprovalSubject, Member, OutboxMessage

log = logging.getLogger(__name__)
MAX_REMINDERS = 3
PERCENT_FIELDS = frozenset({"acceptance_rate"})

# ---------------------------------------------------------------- words for a request


def subject_name(subject: str) -> str:
    """`lead definition` or `SLA`."""
    return text_for(f"approvals_subject_{subject}")


def sla_value(name: str, value: Any) -> str:
    """A value of an SLA field as a person writes it in the form (60%, 4, 0.75)."""
    number = float(value)
    if name in PERCENT_FIELDS:
        return f"{number * 100:g}%"
    return f"{number:g}"


def change_fields(request: ApprovalRequest) -> tuple[Fact, ...]:
    """What the request changes against the version it was proposed on."""
    payload = request.payload
    if request.subject == ApprovalSubject.sla:
        return tuple(
            Fact(
                text_for(f"approvals_sla_{name}"),
                text_for("approvals_edited", old=sla_value(name, old), new=sla_value(name, new)),
            )
            for name, old, new in payload.get("changed", [])
        )
    fields = [
        Fact(text_for("approvals_label_added", key=key), text)
        for key, text in payload.get("added", [])
    ]
    fields += [
        Fact(
            text_for("approvals_label_edited", key=key),
            text_for("approvals_edited", old=old, new=new),
        )
        for key, old, new in payload.get("edited", [])
    ]
    fields += [
        Fact(text_for("approvals_label_retired", key=key), text)
        for key, text in payload.get("retired", [])
    ]
    return tuple(fields)


def proposer_of(session: Session, request: ApprovalRequest) -> str:
    if request.proposed_by is not None:
        member = session.get(Member, request.proposed_by)
        if member is not None:
            return member.name
    return request.proposer_label or "?"


def decision_buttons(request: ApprovalRequest) -> tuple[Button, ...]:
    value = f"request={request.id}"
    return (
        Button(text_for("approvals_button_approve"), "approval.approve", value, Style.primary),
        Button(text_for("approvals_button_reject"), "approval.reject", value, Style.danger),
    )


def ask_card(
    session: Session, request: ApprovalRequest, *, tz: str | None, reminder: int = 0
) -> Card:
    """The card an approver decides on: the change, why, who else signs, two buttons."""
    waiting = [m.name for m in approvals.undecided(session, request_id=request.id or 0)]
    title = "approvals_reminder_title" if reminder else "approvals_ask_title"
    return Card(
        title=text_for(
            title,
            id=request.id,
            subject=subject_name(request.subject),
            proposer=proposer_of(session, request),
        ),
        text=text_for(
            "approvals_ask_text",
            subject=subject_name(request.subject),
            base=request.payload.get("base_version"),
            note=request.note,
            at=when(request.created_at, tz),
            reminder=reminder,
            max_reminders=MAX_REMINDERS,
        ),
        fields=change_fields(request),
        context=text_for("approvals_ask_context", id=request.id, waiting=waiting),
        buttons=decision_buttons(request),
    )


# ---------------------------------------------------------------- when reminders are due


def company_calendar(session: Session, company: Company) -> Calendar:
    """The company's working week (its hours, weekdays and holidays) that business days of
    approvals are counted in."""
    return Calendar(
        tz=company.tz,
        start=company.start,
        end=company.end,
        weekdays=company.weekdays,
        holidays=frozenset(queries.holidays(session)),
    )


def one_business_day_after(session: Session, moment: datetime, company: Company) -> datetime:
    """The same time on the next business day (as business time: a working day's length)."""
    calendar = company_calendar(session, company)
    opens = timedelta(hours=calendar.start.hour, minutes=calendar.start.minute)
    closes = timedelta(
        hours=calendar.end.hour,
        minutes=calendar.end.minute,
        seconds=calendar.end.second,
        microseconds=calendar.end.microsecond,
    )
    try:
        return add_business(calendar, moment, (closes - opens).total_seconds())
    except ValueError:  # a company week without any working time: a calendar day then
        return moment + timedelta(days=1)


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
    if request.reminders >= MAX_REMINDERS:
        request.remind_at = None
    else:
        request.remind_at = one_business_day_after(session, now, company)
    session.add(request)


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
    if queries.enqueue(
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
