"""A marketer runs a feedback request to completion in the console: the form field by
field, the reps' DMs, an answer, the close and its summary."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import select

from storage.db import Store
from storage.demo.company import create_demo
from storage.models import FeedbackRequest
from tests.test_console import make_chat, number_of


async def test_a_feedback_request_from_form_to_summary(sqlite_store: Store) -> None:
    with sqlite_store.session() as s:
        create_demo(s, leads=12, seed=7, now=datetime.now(UTC))
    chat, screen, typist = make_chat(sqlite_store)
    chat.switch("carol")
    typist.lines.extend(
        [
            "2",  # about: an asset
            "Pricing one-pager",
            "https://example.com/pricing.pdf",
            "",  # no campaign
            "Is the pricing page clear to buyers?",
            "2",  # a 1-5 rating
            "",
            "",  # no second question
            "",
            "",
            "",  # no third
            "",
            "",
            "1",  # all reps
            "",  # the deadline offered
        ]
    )
    await chat.line("/feedback")
    text = screen.getvalue()
    assert "→ to Alice Adams" in text and "→ to Bob Brown" in text
    assert "Pricing one-pager" in text

    chat.switch("alice")
    typist.lines.append("4")
    await chat.press(number_of(chat, "Answer", "request="))
    assert "Thank you, your answers are saved" in screen.getvalue()

    with sqlite_store.session() as s:
        request = s.exec(
            select(FeedbackRequest).where(FeedbackRequest.subject == "Pricing one-pager")
        ).one()
    chat.switch("carol")
    before = len(screen.getvalue())
    await chat.line(f"/feedback close {request.id}")
    summary = screen.getvalue()[before:]
    assert "Pricing one-pager" in summary
    assert "1 of 2 answered (50%)" in summary
    assert "4: 1 · 5: 0 · mean 4.0 of 5 (1 answer)" in summary
