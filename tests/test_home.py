"""The home view gathers what waits for a member across capabilities, each with a button
that acts on it (the Slack App Home and Teams `home` are tested in their adapter tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app import build_router
from bot.core.buttons import decode
from bot.core.effects import Reply, ShowForm
from bot.core.interaction import Interaction, Kind, Where
from storage import members
from storage.db import Store
from storage.models import (
    ApprovalRequest,
    ApprovalSignoff,
    FeedbackQuestion,
    FeedbackRecipient,
    FeedbackRequest,
    Insight,
    Member,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ROUTER = build_router()


def run(store: Store, who: Member, kind: Kind, name: str, **args: str) -> list[object]:
    interaction = Interaction(kind, name, who, Where("test"), args=args)
    return list(ROUTER.dispatch(store, interaction, NOW))


def test_home_shows_feedback_sign_offs_and_insights_that_wait(sqlite_store: Store) -> None:
    with sqlite_store.session() as s:
        carol = members.upsert_member(s, now=NOW, email="c@x.com", name="Carol", role="marketer")
        alice = members.upsert_member(s, now=NOW, email="a@x.com", name="Alice")
        request = FeedbackRequest(
            requester_id=carol.id or 0,
            about="asset",
            subject="Pricing one-pager",
            audience="all",
            deadline=NOW + timedelta(days=3),
            created_at=NOW,
        )
        s.add(request)
        s.flush()
        s.add(FeedbackQuestion(request_id=request.id or 0, kind="rating", text="Clear?"))
        s.add(FeedbackRecipient(request_id=request.id or 0, member_id=alice.id or 0))
        proposal = ApprovalRequest(subject="sla", proposed_by=carol.id, created_at=NOW)
        s.add(proposal)
        s.flush()
        s.add(ApprovalSignoff(request_id=proposal.id or 0, member_id=alice.id or 0, side="sales"))
        s.add(Insight(author_id=alice.id or 0, kind="question", text="SAP?", created_at=NOW))
    (reply,) = run(sqlite_store, alice, Kind.command, "home")
    assert isinstance(reply, Reply)
    card = reply.card
    assert card.text == "1 feedback request · 1 sign-off waiting · 1 open insight."
    lines = {f.label: f.value for f in card.fields}
    assert lines["Feedback to give"].startswith("Pricing one-pager (asked by Carol): 0 of 1")
    assert lines["Sign-offs"].startswith("#1: a new SLA proposed by Carol on Tue 24 Nov")
    assert lines["Insights"] == "“SAP?”: waiting for marketing"
    labels = [b.label for b in card.buttons]
    assert labels == ["Answer feedback #1", "Review #1", "Show my leads", "Refresh"]
    # The Review button opens the sign-off form; Answer opens the feedback form.
    review = card.buttons[1]
    (form,) = run(sqlite_store, alice, Kind.action, review.action, **decode(review.value))
    assert isinstance(form, ShowForm)
    answer = card.buttons[0]
    (form,) = run(sqlite_store, alice, Kind.action, answer.action, **decode(answer.value))
    assert isinstance(form, ShowForm)
    # Carol, the marketer, sees the insight as hers to answer.
    (reply,) = run(sqlite_store, carol, Kind.command, "home")
    assert isinstance(reply, Reply)
    assert "Answer insight #1" in [b.label for b in reply.card.buttons]
