"""Approvals through Teams: activities posted to `/api/messages` of `liaison serve`
(the Agents SDK in emulator mode) by the people of a personal chat, cards and forms read back
from the Bot Framework connector stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storage import approvals
from storage import members as stored_members
from tests.support import LiveServer, teams_settings
from tests.teams_standin import Call, TeamsStandIn, connector_with
from tests.test_teams import ALICE, BOB, CAROL, DAVE, Teams, card_text, titles

ROLES = {ALICE: "rep", BOB: "manager", CAROL: "marketer", DAVE: "manager"}


@pytest.fixture
async def standin() -> AsyncIterator[TeamsStandIn]:
    connector = await connector_with(ROLES)
    yield connector
    await connector.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    """Bob signs for sales, Dave for marketing; Carol proposes; Alice is a rep."""
    settings = teams_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
    )
    live = await LiveServer(settings).start()
    now = datetime.now(UTC)
    with live.store.session() as session:
        members = {
            person: stored_members.upsert_member(
                session, now=now, email=person.email, name=person.name, role=role
            )
            for person, role in ROLES.items()
        }
        approvals.set_approvers(session, side="sales", member_ids=[members[BOB].id or 0])
        approvals.set_approvers(session, side="marketing", member_ids=[members[DAVE].id or 0])
    yield live
    await live.stop()


@pytest.fixture
async def chat(server: LiveServer, standin: TeamsStandIn) -> AsyncIterator[Teams]:
    async with aiohttp.ClientSession() as http:
        teams = Teams(server, standin, http)
        for person in ROLES:
            await teams.meet(person)
        yield teams


def value_of(form: Call, input_id: str) -> str:
    element = next(e for e in form.card["body"] if e.get("id") == input_id)
    return str(element.get("value", ""))


async def typed(chat: Teams, person: Any, text: str) -> Call:
    return await chat.reply_to(await chat.say(person, text))


async def test_a_lead_definition_change_waits_for_both_sides_in_teams(chat: Teams) -> None:
    form = await typed(chat, CAROL, "leaddef propose")
    current = value_of(form, "criteria")
    assert current.splitlines()[0] == "budget: Budget confirmed or likely"
    criteria = next(e for e in form.card["body"] if e.get("id") == "criteria")
    assert criteria["isMultiline"] is True and criteria["isRequired"] is True

    # Duplicate keys: named, and the form stays usable.
    twice = current + "\nbudget: Budget approved"
    refused = await chat.submit(CAROL, form, {"criteria": twice, "note": "Tighter"})
    problem = card_text((await chat.reply_to(refused)).card)
    assert "Please fix: Criteria (key: text, one per line) — Line 7: the key budget" in problem

    edited = current.replace("Budget confirmed or likely", "Budget approved this year")
    edited += "\nicp: Matches the ideal customer profile"
    sent = await chat.submit(CAROL, form, {"criteria": edited, "note": "After the review"})
    assert "Approval #1 is on its way to Bob Brown, Dave Davis" in card_text(
        (await chat.reply_to(sent)).card
    )
    assert "Saved" in card_text(chat.answered(sent))  # the form card, replaced

    asks = {person: await chat.handoff_card(person, "Sign-off needed") for person in (BOB, DAVE)}
    for ask in asks.values():
        assert titles(ask.card) == ["Approve", "Reject"]
        text = card_text(ask.card)
        assert "Added: icp" in text and "Matches the ideal customer profile" in text
        assert "Budget confirmed or likely → Budget approved this year" in text

    decide = await chat.reply_to(await chat.press(BOB, asks[BOB], "Approve"))
    await chat.submit(BOB, decide, {"comment": "Good for sales"})
    assert "Lead definition v1" in card_text((await typed(chat, ALICE, "leaddef")).card)
    progress = await chat.handoff_card(CAROL, "Bob Brown approved")
    assert "Still waiting for Dave Davis" in card_text(progress.card)

    # An outsider's press is refused privately; the last approval brings v2 into force.
    data = next(a["data"] for a in asks[DAVE].card["actions"] if a["title"] == "Approve")
    outsider = chat.activity("card_submit", ALICE, value=data)
    await chat.post(outsider)
    assert "Only the approvers approval #1 was sent to" in card_text(
        (await chat.reply_to(outsider)).card
    )
    decide = await chat.reply_to(await chat.press(DAVE, asks[DAVE], "Approve"))
    done = await chat.submit(DAVE, decide, {"comment": ""})
    assert "Lead definition v2 is now in force" in card_text((await chat.reply_to(done)).card)
    shown = card_text((await typed(chat, ALICE, "leaddef")).card)
    assert "Lead definition v2" in shown and "icp" in shown
    assert "Budget approved this year" in shown
    await chat.handoff_card(CAROL, "v2 is now in force")
    await chat.handoff_card(BOB, "v2 is now in force")

    # A new Not a fit form offers the new criteria.
    await chat.lead(external_id="T-1", name="Tara Tan", owner_email=ALICE.email)
    card = await chat.handoff_card(ALICE, "Tara Tan")
    not_a_fit = await chat.reply_to(await chat.press(ALICE, card, "Not a fit"))
    choices = next(e for e in not_a_fit.card["body"] if e.get("id") == "criteria")["choices"]
    assert "icp" in [c["value"] for c in choices]

    history = card_text((await typed(chat, CAROL, "approvals 1")).card)
    assert "approved, v2 in force" in history and "Good for sales" in history
    overview = card_text((await typed(chat, BOB, "approvals")).card)
    assert "Nothing waits for your sign-off" in overview
    assert "Sales approvers" in overview and "Bob Brown" in overview


async def test_an_sla_proposal_and_a_rejection_in_teams(chat: Teams) -> None:
    form = await typed(chat, CAROL, "sla propose")
    answers = {
        e["id"]: str(e.get("value", "")) for e in form.card["body"] if e.get("type") == "Input.Text"
    }
    assert answers["acceptance_rate"] == "60%" and answers["attempts"] == "5"
    refused = await chat.submit(CAROL, form, {**answers, "attempts": "many", "note": "More"})
    assert "Give a whole number, at least 1 and at most 50" in card_text(
        (await chat.reply_to(refused)).card
    )
    await chat.submit(CAROL, form, {**answers, "attempts": "7", "note": "More attempts"})
    ask = await chat.handoff_card(BOB, "Sign-off needed")
    assert "Follow-up attempts (at least)\n5 → 7" in card_text(ask.card)
    reject = await chat.reply_to(await chat.press(BOB, ask, "Reject"))
    no_reason = await chat.submit(BOB, reject, {"comment": ""})
    assert "Say why you reject it" in card_text((await chat.reply_to(no_reason)).card)
    await chat.submit(BOB, reject, {"comment": "Seven is too many for small accounts"})
    told = await chat.handoff_card(CAROL, "rejected")
    assert "Bob Brown rejected the new SLA (#1)" in card_text(told.card)
    assert "Seven is too many for small accounts" in card_text(told.card)
    assert "Service-level agreement v1" in card_text((await typed(chat, ALICE, "sla")).card)
    assert "you are a rep" in card_text((await typed(chat, ALICE, "sla propose")).card)
