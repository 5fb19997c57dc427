"""A field-feedback request as people see it: the card each person asked gets (asked, and
reminded by digests/feedback.py), the requester's summary, the outbox keys they are owed
under, and when the one reminder is due."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session

from bot.core.business_time import Company
from bot.core.messages import Button, Card, Fact, Style
from bot.core.text import text_for, when
from storage import feedback as records
from storage.models import Campaign, FeedbackQuestion, FeedbackRequest, Member, QuestionKind

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
