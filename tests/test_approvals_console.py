"""Approvals in the console, typed as a person would: a marketer proposes a new lead
definition line by line, both sides' approvers press Approve on the cards they got, and the
new version is in force."""

from __future__ import annotations

from datetime import UTC, datetime

from storage import approvals, members
from storage.db import Store
from tests.test_console import make_chat, number_of


def people(store: Store) -> None:
    now = datetime.now(UTC)
    with store.session() as s:
        found = {
            key: members.upsert_member(s, now=now, email=f"{key}@x.com", name=name, role=role)
            for key, name, role in (
                ("carol", "Carol Chen", "marketer"),
                ("bob", "Bob Brown", "manager"),
                ("dave", "Dave Davis", "manager"),
                ("alice", "Alice Adams", "rep"),
            )
        }
        approvals.set_approvers(s, side="sales", member_ids=[found["bob"].id or 0])
        approvals.set_approvers(s, side="marketing", member_ids=[found["dave"].id or 0])


async def test_a_proposal_is_typed_line_by_line_and_signed_off(sqlite_store: Store) -> None:
    people(sqlite_store)
    chat, screen, typist = make_chat(sqlite_store)
    chat.switch("carol")
    # Enter keeps the list as shown: nothing changed, so the form is asked again; /cancel.
    typist.lines.extend(["", "Just checking", "/cancel"])
    await chat.line("/leaddef propose")
    assert "budget: Budget confirmed or likely" in screen.getvalue()
    assert "Nothing changed: this is v1" in screen.getvalue()
    assert "Cancelled." in screen.getvalue()

    typist.lines.extend(
        [
            "budget: Budget approved",
            "need: A need our product solves",
            "icp: Matches the ideal customer profile",
            "",
            "Three criteria are easier to use",
        ]
    )
    await chat.line("/leaddef propose")
    text = screen.getvalue()
    assert "Approval #1 is on its way to Bob Brown, Dave Davis" in text
    assert "to Bob Brown (bob, manager) in a DM" in text and "Retired: timing" in text

    for approver in ("bob", "dave"):
        chat.switch(approver)
        await chat.line("/approvals")
        typist.lines.append("Fine")
        await chat.press(number_of(chat, "Approve", "request=1"))
    assert "Lead definition v2 is now in force" in screen.getvalue()
    chat.switch("alice")
    before = len(screen.getvalue())
    await chat.line("/leaddef")
    shown = screen.getvalue()[before:]
    assert "Lead definition v2" in shown and "icp" in shown and "timing" not in shown
