"""Field feedback over time: one reminder, the close at the deadline, and the cards.

A request is a row with two due times: `remind_at` (the midpoint between sending and the
deadline) and `deadline`. The pass claims the due requests (`FOR UPDATE SKIP LOCKED`), owes
one reminder to each person who has not answered — in their working hours and only if it can
reach them before the deadline — and at the deadline closes the request once and owes the
requester the summary. Nothing in Liaison waits on any of it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session

from bot.core.business_time import Company, next_working_moment
from bot.core.messages import Button, Card, Fact, Style, card_to_dict
from bot.core.text import text_for, when
from handlers.clocks import TickReport
from storage import feedback as records
from storage import queries
from storage.calendars import Calendars
from storage.db import Store
from storage.models import (
    Campaign,
    FeedbackQuestion,
    FeedbackRequest,
    Member,
    OutboxMessage,
    QuestionKind,
)

log = logging.getLogger(__name__)
QUOTES_SHOWN = 5  # per question on a card; the summary itself keeps them all
QUOTE_LIMIT = 200


def ask_key(request_id: int, member_id: int) -> str:
    return f"feedback:{request_id}:ask:{member_id}"


def remind_key(request_id: int, member_id: int) -> str:
    return f"feedback:{request_id}:remind:{member_id}"


def summary_key(request_id: int) -> str:
    return f"feedback:{request_id}:summary"


def remind_at(sent: datetime, deadline: datetime) -> datetime:
    """When the one reminder is due: halfway between sending and the deadline."""
    return sent + (deadline - sent) / 2


# ---------------------------------------------------------------- cards


def about_words(session: Session, request: FeedbackRequest) -> str:
    campaign = session.get(Campaign, request.campaign_id) if request.campaign_id else None
    name = campaign.name if campaign else ""
    return text_for("feedback_about_words", about=request.about, campaign=name)


def ask_card(
    session: Session,
    request: FeedbackRequest,
    questions: Sequence[FeedbackQuestion],
    tz: str,
    *,
    reminder: bool = False,
) -> Card:
    """What a person asked sees: the subject, the questions and an Answer button."""
    requester = session.get(Member, request.requester_id)
    requester_name = requester.name if requester else "?"
    about = about_words(session, request)
    deadline = when(request.deadline, tz)
    if reminder:
        title = text_for("feedback_remind_title", subject=request.subject)
        text = text_for(
            "feedback_remind_text", requester=requester_name, about=about, deadline=deadline
        )
    else:
        title = text_for("feedback_ask_title", requester=requester_name, subject=request.subject)
        text = text_for("feedback_ask_text", about=about, deadline=deadline)
    fields = [Fact(text_for("feedback_label_link"), request.link)] if request.link else []
    if request.campaign_id and request.about != "campaign":
        campaign = session.get(Campaign, request.campaign_id)
        if campaign is not None:
            fields.append(Fact(text_for("label_campaign"), campaign.name))
    fields += [
        Fact(
            text_for("feedback_question_field", n=q.position),
            text_for("feedback_question_with_hint", text=q.text, kind=q.kind, options=q.options),
        )
        for q in questions
    ]
    return Card(
        title=title,
        text=text,
        fields=tuple(fields),
        context=text_for("feedback_ask_context", id=request.id),
        buttons=(
            Button(
                text_for("button_answer"), "feedback.answer", f"request={request.id}", Style.primary
            ),
        ),
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _answers_line(question: records.QuestionSummary) -> str:
    if not question.answered:
        return text_for("feedback_summary_none")
    if question.kind == QuestionKind.rating:
        return text_for(
            "feedback_summary_ratings",
            ratings=question.ratings,
            mean=question.mean or 0.0,
            answered=question.answered,
        )
    if question.kind == QuestionKind.choice:
        return text_for(
            "feedback_summary_choices", choices=question.choices, answered=question.answered
        )
    lines = [
        text_for("feedback_summary_quote", text=_cut(" ".join(q.split()), QUOTE_LIMIT))
        for q in question.quotes[:QUOTES_SHOWN]
    ]
    if len(question.quotes) > QUOTES_SHOWN:
        lines.append(text_for("feedback_summary_more", count=len(question.quotes) - QUOTES_SHOWN))
    return "\n".join(lines)


def summary_card(
    summary: records.FeedbackSummary,
    about: str,
    tz: str,
    *,
    now: datetime | None = None,
    actions: bool = False,
) -> Card:
    """The requester's view: response rate, then each question's figures or quotes
    (without names). Open until closed or, seen at `now`, until the deadline has passed;
    with `actions`, an open request offers Close now."""
    is_open = summary.closed_at is None and (now is None or now < summary.deadline)
    rate = summary.response_rate
    fields = [Fact(text_for("feedback_label_link"), summary.link)] if summary.link else []
    fields += [
        Fact(text_for("feedback_summary_question", n=q.position, text=q.text), _answers_line(q))
        for q in summary.questions
    ]
    buttons: tuple[Button, ...] = ()
    if actions and is_open:
        value = f"request={summary.request_id}"
        buttons = (Button(text_for("feedback_button_close"), "feedback.close", value),)
    return Card(
        title=text_for(
            "feedback_summary_title",
            id=summary.request_id,
            subject=summary.subject,
            final=not is_open,
        ),
        text=text_for(
            "feedback_summary_text",
            responded=summary.responded,
            asked=summary.asked,
            percent=round((rate or 0) * 100),
            open=is_open,
            at=when(summary.deadline if is_open else summary.closed_at or summary.deadline, tz),
        ),
        fields=tuple(fields),
        context=text_for("feedback_summary_context", about=about),
        buttons=buttons,
    )


def final_summary_card(session: Session, request: FeedbackRequest, company: Company) -> Card:
    """The summary the requester receives when the request closes."""
    summary = records.summary(session, request_id=request.id or 0)
    assert summary is not None  # the request row exists: we hold it
    requester = session.get(Member, request.requester_id)
    tz = (requester.timezone if requester else None) or company.tz
    return summary_card(summary, about_words(session, request), tz)


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
    if queries.enqueue(session, message=message):
        report.messages += 1
        report.keys.append(key)
