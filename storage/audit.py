"""The audit trail as records for BI tools and backups: lead events (verdicts with their
reasons among them), SLA clocks, approvals with their sign-offs, feedback requests and
answers. Each kind is read in time order, a batch at a time, and the kinds are merged by
time, so an export of years holds one batch per kind in memory, never the whole history."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from storage.models import (
    ApprovalRequest,
    ApprovalSignoff,
    Campaign,
    Clock,
    ClockStage,
    FeedbackAnswer,
    FeedbackQuestion,
    FeedbackRequest,
    Lead,
    LeadEvent,
    Member,
)

BATCH = 1_000
Record = dict[str, Any]
KINDS = ("lead_event", "sla_clock", "approval", "feedback_request", "feedback_answer")


def _when(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, to the microsecond: one shape, so the text sorts as the time does."""
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def _rows(session: Session, query: Select[*tuple[Any, ...]]) -> Iterator[Any]:
    """The rows of `query`, fetched a batch at a time (a server-side cursor on PostgreSQL)."""
    yield from session.execute(query.execution_options(yield_per=BATCH))


def lead_events(session: Session, *, since: datetime) -> Iterator[Record]:
    who = aliased(Member)
    query = (
        select(
            LeadEvent,
            col(Lead.source),
            col(Lead.external_id),
            col(Campaign.name),
            col(who.email),
            col(who.name),
        )
        .join(Lead, col(Lead.id) == col(LeadEvent.lead_id))
        .join(Campaign, col(Campaign.id) == col(Lead.campaign_id), isouter=True)
        .join(who, col(who.id) == col(LeadEvent.member_id), isouter=True)
        .where(col(LeadEvent.at) >= since)
        .order_by(col(LeadEvent.at), col(LeadEvent.id))
    )
    for event, source, external_id, campaign, email, name in _rows(session, query):
        yield {
            "type": "lead_event",
            "at": _when(event.at),
            "id": event.id,
            "lead_id": event.lead_id,
            "lead": {"source": source, "external_id": external_id, "campaign": campaign},
            "kind": event.kind,
            "member": email or name,
            "data": event.data or {},
        }


def sla_clocks(session: Session, *, since: datetime) -> Iterator[Record]:
    query = (
        select(Clock, col(Member.email), col(Member.name))
        .join(Member, col(Member.id) == col(Clock.owner_id))
        .where(col(Clock.started_at) >= since)
        .order_by(col(Clock.started_at), col(Clock.id))
    )
    for clock, email, name in _rows(session, query):
        yield {
            "type": "sla_clock",
            "at": _when(clock.started_at),
            "id": clock.id,
            "lead_id": clock.lead_id,
            "kind": clock.kind,
            "member": email or name,
            "policy_version": clock.policy_version,
            "budget_seconds": clock.budget_seconds,
            "stage": ClockStage(clock.stage).name,
            "closed_at": _when(clock.closed_at),
            "outcome": clock.outcome,
            "business_seconds": clock.business_seconds,
        }


def approvals(session: Session, *, since: datetime) -> Iterator[Record]:
    proposer = aliased(Member)
    query = (
        select(ApprovalRequest, col(proposer.email))
        .join(proposer, col(proposer.id) == col(ApprovalRequest.proposed_by), isouter=True)
        .where(col(ApprovalRequest.created_at) >= since)
        .order_by(col(ApprovalRequest.created_at), col(ApprovalRequest.id))
    )
    for request, email in _rows(session, query):
        signed = session.execute(
            select(ApprovalSignoff, col(Member.email))
            .join(Member, col(Member.id) == col(ApprovalSignoff.member_id))
            .where(ApprovalSignoff.request_id == request.id)
            .order_by(col(ApprovalSignoff.side), col(Member.email))
        )
        yield {
            "type": "approval",
            "at": _when(request.created_at),
            "id": request.id,
            "subject": request.subject,
            "status": request.status,
            "version": request.version,
            "member": email or request.proposer_label,
            "note": request.note,
            "payload": request.payload,
            "decided_at": _when(request.decided_at),
            "signoffs": [
                {
                    "member": signer,
                    "side": s.side,
                    "decision": s.decision,
                    "comment": s.comment,
                    "decided_at": _when(s.decided_at),
                }
                for s, signer in signed
            ],
        }


def feedback_requests(session: Session, *, since: datetime) -> Iterator[Record]:
    query = (
        select(FeedbackRequest, col(Member.email))
        .join(Member, col(Member.id) == col(FeedbackRequest.requester_id))
        .where(col(FeedbackRequest.created_at) >= since)
        .order_by(col(FeedbackRequest.created_at), col(FeedbackRequest.id))
    )
    for request, email in _rows(session, query):
        questions = session.execute(
            select(col(FeedbackQuestion.kind), col(FeedbackQuestion.text))
            .where(FeedbackQuestion.request_id == request.id)
            .order_by(col(FeedbackQuestion.position))
        )
        yield {
            "type": "feedback_request",
            "at": _when(request.created_at),
            "id": request.id,
            "member": email,
            "about": request.about,
            "subject": request.subject,
            "audience": request.audience,
            "deadline": _when(request.deadline),
            "closed_at": _when(request.closed_at),
            "questions": [{"kind": kind, "text": text} for kind, text in questions],
        }


def feedback_answers(session: Session, *, since: datetime) -> Iterator[Record]:
    query = (
        select(FeedbackAnswer, col(FeedbackQuestion.text), col(Member.email))
        .join(FeedbackQuestion, col(FeedbackQuestion.id) == col(FeedbackAnswer.question_id))
        .join(Member, col(Member.id) == col(FeedbackAnswer.member_id))
        .where(col(FeedbackAnswer.answered_at) >= since)
        .order_by(col(FeedbackAnswer.answered_at), col(FeedbackAnswer.id))
    )
    for answer, question, email in _rows(session, query):
        yield {
            "type": "feedback_answer",
            "at": _when(answer.answered_at),
            "id": answer.id,
            "request_id": answer.request_id,
            "member": email,
            "question": question,
            "value": answer.value,
        }


def trail(session: Session, *, since: datetime) -> Iterator[Record]:
    """Every record from `since` on, in time order (ties: by kind, then id)."""
    readers = (lead_events, sla_clocks, approvals, feedback_requests, feedback_answers)
    return heapq.merge(
        *(reader(session, since=since) for reader in readers),
        key=lambda r: (r["at"], KINDS.index(r["type"]), r["id"]),
    )


def trail_size(session: Session, *, since: datetime) -> int:
    """How many records `trail` yields (for a progress bar)."""
    counted = (
        (LeadEvent, LeadEvent.at),
        (Clock, Clock.started_at),
        (ApprovalRequest, ApprovalRequest.created_at),
        (FeedbackRequest, FeedbackRequest.created_at),
        (FeedbackAnswer, FeedbackAnswer.answered_at),
    )
    total = 0
    for model, at in counted:
        counting = select(func.count()).select_from(model).where(col(at) >= since)
        total += int(session.execute(counting).scalar_one())
    return total
