"""The feedback loop (non-blocking) and the approvals loop (blocking) never share a table or
a code path: each can be emptied without touching the other, and neither imports the other."""

from __future__ import annotations

import ast
import importlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete
from sqlmodel import SQLModel

from app import build_router
from bot.core.effects import Reply
from bot.core.interaction import Interaction, Kind, Where
from storage import approvals as approval_store
from storage import feedback as feedback_store
from storage import members
from storage.db import Store
from storage.models import (
    ApprovalRequest,
    ApprovalSignoff,
    Approver,
    FeedbackAnswer,
    FeedbackQuestion,
    FeedbackRecipient,
    FeedbackRequest,
    Member,
)

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
FEEDBACK = ("handlers.feedback", "handlers.feedback_cards", "storage.feedback", "digests.feedback")
APPROVALS = (
    "handlers.approvals",
    "handlers.approval_cards",
    "handlers.proposals",
    "storage.approvals",
    "digests.approvals",
)
FEEDBACK_TABLES = (FeedbackAnswer, FeedbackQuestion, FeedbackRecipient, FeedbackRequest)
APPROVAL_TABLES = (ApprovalSignoff, ApprovalRequest, Approver)


def imports_of(module: str) -> set[str]:
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def tables_of(module: str) -> set[str]:
    """The tables a module can reach: every table class among its names."""
    namespace = vars(importlib.import_module(module))
    return {
        value.__tablename__
        for value in namespace.values()
        if isinstance(value, type) and issubclass(value, SQLModel) and hasattr(value, "__table__")
    }


def test_neither_loop_imports_the_other() -> None:
    for module in FEEDBACK:
        assert not any("approval" in name or "proposal" in name for name in imports_of(module))
    for module in APPROVALS:
        assert not any("feedback" in name for name in imports_of(module))


def test_neither_loop_touches_the_others_tables() -> None:
    feedback = set().union(*(tables_of(m) for m in FEEDBACK))
    approvals = set().union(*(tables_of(m) for m in APPROVALS))
    assert {t.__tablename__ for t in FEEDBACK_TABLES} <= feedback
    assert "approval_requests" in approvals
    assert not {t for t in feedback if t.startswith("approv")}
    assert not {t for t in approvals if t.startswith("feedback")}


def both_loops(store: Store) -> tuple[Member, Member]:
    with store.session() as s:
        carol = members.upsert_member(s, now=NOW, email="c@x.com", name="Carol", role="marketer")
        alice = members.upsert_member(s, now=NOW, email="a@x.com", name="Alice")
        feedback_store.create_request(
            s,
            requester_id=carol.id or 0,
            about="message",
            subject="The new tagline",
            link=None,
            campaign_id=None,
            audience="all",
            deadline=NOW + timedelta(days=3),
            remind_at=None,
            questions=[feedback_store.NewQuestion("text", "Does it land?")],
            recipients=[alice.id or 0],
            now=NOW,
        )
        approval_store.create_request(
            s,
            subject="sla",
            proposed_by=carol.id or 0,
            proposer_label="",
            payload={"fields": {"attempts": 6}},
            note="more persistence",
            signoffs=[(alice.id or 0, "sales")],
            remind_at=None,
            now=NOW,
        )
    return carol, alice


def ask(store: Store, who: Member, command: str, text: str) -> str:
    interaction = Interaction(Kind.command, command, who, Where("test"), text=text)
    replies = [e for e in build_router().dispatch(store, interaction, NOW) if isinstance(e, Reply)]
    return " ".join(r.card.title + " " + r.card.text for r in replies)


def wipe(store: Store, tables: tuple[type[SQLModel], ...]) -> None:
    with store.session() as s:
        for table in tables:
            s.exec(delete(table))  # type: ignore[call-overload]


def test_emptying_feedback_leaves_approvals_whole(any_store: Store) -> None:
    _, alice = both_loops(any_store)
    wipe(any_store, FEEDBACK_TABLES)
    with any_store.session() as s:
        assert feedback_store.waiting_for(s, member_id=alice.id or 0, now=NOW) == []
        (waiting,) = approval_store.waiting_for(s, member_id=alice.id or 0)
        assert waiting.note == "more persistence"
    assert "#1" in ask(any_store, alice, "approvals", "1")


def test_emptying_approvals_leaves_feedback_whole(any_store: Store) -> None:
    carol, alice = both_loops(any_store)
    wipe(any_store, APPROVAL_TABLES)
    with any_store.session() as s:
        assert approval_store.waiting_for(s, member_id=alice.id or 0) == []
        (waiting,) = feedback_store.waiting_for(s, member_id=alice.id or 0, now=NOW)
        assert waiting.subject == "The new tagline"
    assert "The new tagline" in ask(any_store, carol, "feedback", "1")
