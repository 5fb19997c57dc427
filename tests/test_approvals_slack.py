"""Approvals through Slack: signed slash commands, modals captured from `views.open`,
`view_submission`s built from them and button presses into the real Bolt app of
`liaison serve`; what people see is read back from the Web API stand-in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from storage import approvals
from storage import members as stored_members
from tests.slack_standin import SlackStandIn
from tests.support import LiveServer, eventually, fixture, slack_settings
from tests.test_slack import (
    interact,
    lead_payload,
    post_slack,
    posted_cards,
    press,
    send_leads,
    text_of,
)
from tests.test_slack import submit as view_submission

PEOPLE = (
    ("U0CAROL", "Carol Chen", "carol@example.com", "marketer"),
    ("U0BOB", "Bob Brown", "bob@example.com", "manager"),
    ("U0DAVE", "Dave Davis", "dave@example.com", "manager"),
    ("U0ALICE", "Alice Adams", "alice@example.com", "rep"),
)


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await SlackStandIn().start()
    for user_id, name, email, _role in PEOPLE:
        standin.add_user(user_id, name, email)
    yield standin
    await standin.stop()


@pytest.fixture
async def server(tmp_path: Path, slack: SlackStandIn) -> AsyncIterator[LiveServer]:
    """Bob signs for sales, Dave for marketing; Carol proposes; Alice is a rep."""
    settings = slack_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        slack,
    )
    live = await LiveServer(settings).start()
    now = datetime.now(UTC)
    with live.store.session() as session:
        members = {
            user_id: stored_members.upsert_member(
                session, now=now, email=email, name=name, role=role
            )
            for user_id, name, email, role in PEOPLE
        }
        approvals.set_approvers(session, side="sales", member_ids=[members["U0BOB"].id or 0])
        approvals.set_approvers(session, side="marketing", member_ids=[members["U0DAVE"].id or 0])
    yield live
    await live.stop()


async def slash(
    server: LiveServer, slack: SlackStandIn, user: str, command: str, text: str
) -> None:
    form = fixture("slack", "slash_command")
    form.update(
        user_id=user,
        user_name=user.lower(),
        command=command,
        text=text,
        response_url=slack.response_url(f"{user}-{len(slack.calls)}"),
        trigger_id=slack.trigger_id(),
    )
    status, _ = await post_slack(
        server, urlencode(form).encode(), "application/x-www-form-urlencoded"
    )
    assert status == 200
    await server.settle()


def answers(slack: SlackStandIn) -> list[str]:
    """What the bot said: through response_url, ephemeral messages, or in a DM (the answer
    to a modal goes to the person's DM)."""
    found = [text_of(p) for p in slack.of("response_url")]
    found += [text_of(p) for p in slack.of("chat.postEphemeral")]
    found += [text_of(p) for p in slack.of("chat.postMessage")]
    return found


def typed(name: str, value: str) -> dict[str, Any]:
    return {name: {name: {"type": "plain_text_input", "value": value}}}


def block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


async def decide(
    server: LiveServer,
    slack: SlackStandIn,
    user: str,
    card: dict[str, Any],
    action: str,
    comment: str,
) -> tuple[int, str]:
    await interact(server, press(slack, user, card, action))
    view = slack.of("views.open")[-1]["view"]
    assert view["callback_id"] == "approval.decide"
    return await interact(server, view_submission(user, view, typed("comment", comment)))


async def test_a_lead_definition_change_waits_for_both_sides_in_slack(
    server: LiveServer, slack: SlackStandIn
) -> None:
    await slash(server, slack, "U0CAROL", "/leaddef", "propose")
    view = slack.of("views.open")[-1]["view"]
    assert view["callback_id"] == "approval.propose_leaddef"
    initial = block(view, "criteria")["element"]["initial_value"]
    assert initial.splitlines()[0] == "budget: Budget confirmed or likely"
    assert block(view, "criteria")["element"]["multiline"] is True

    # A malformed line and an unchanged list are refused inside the modal.
    bad = {**typed("criteria", initial + "\nIn ICP: Matches"), **typed("note", "Tighter")}
    status, text = await interact(server, view_submission("U0CAROL", view, bad))
    assert status == 200 and json.loads(text)["response_action"] == "errors"
    assert "“In ICP” is not a short key" in json.loads(text)["errors"]["criteria"]
    same = {**typed("criteria", initial), **typed("note", "Tighter")}
    status, text = await interact(server, view_submission("U0CAROL", view, same))
    assert "Nothing changed" in json.loads(text)["errors"]["criteria"]

    edited = initial.replace("timing: Buying within the next two quarters\n", "")
    edited += "\nicp: Matches the ideal customer profile\nUses a CRM"  # a key is made
    good = {**typed("criteria", edited), **typed("note", "Timing never predicted a win")}
    status, text = await interact(server, view_submission("U0CAROL", view, good))
    assert status == 200 and text == ""
    assert any("Approval #1 is on its way to Bob Brown, Dave Davis" in a for a in answers(slack))

    # Both approvers get a DM with the diff and the two buttons.
    cards = {}
    for user in ("U0BOB", "U0DAVE"):
        (card,) = await eventually(lambda user=user: posted_cards(slack, user))
        assert "Sign-off needed: a new lead definition proposed by Carol Chen" in text_of(card)
        assert "*Added: icp*: Matches the ideal customer profile" in text_of(card)
        assert "*Added: uses_a_crm*: Uses a CRM" in text_of(card)
        assert "*Retired: timing*: Buying within the next two quarters" in text_of(card)
        labels = [
            e["text"]["text"]
            for b in card["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
        ]
        assert labels == ["Approve", "Reject"]
        cards[user] = card

    async def leaddef_shown() -> str:
        await slash(server, slack, "U0ALICE", "/leaddef", "")
        return text_of(slack.of("response_url")[-1])

    assert "Lead definition v1" in await leaddef_shown()
    status, text = await decide(server, slack, "U0BOB", cards["U0BOB"], "approval.approve", "OK")
    assert status == 200 and text == ""
    assert any(
        "You approved approval #1. Still waiting for Dave Davis" in a for a in answers(slack)
    )
    assert "Lead definition v1" in await leaddef_shown()
    progress = await eventually(
        lambda: [c for c in posted_cards(slack, "U0CAROL") if "approved your" in text_of(c)]
    )
    assert "Bob Brown approved your new lead definition (#1)" in text_of(progress[0])

    # Bob cannot decide twice; the last approval brings v2 into force.
    await interact(server, press(slack, "U0BOB", cards["U0BOB"], "approval.reject"))
    again = slack.of("response_url")[-1]
    assert again["response_type"] == "ephemeral"
    assert "You already approved approval #1" in text_of(again)
    await decide(server, slack, "U0DAVE", cards["U0DAVE"], "approval.approve", "")
    shown = await leaddef_shown()
    assert "Lead definition v2" in shown and "icp" in shown and "timing" not in shown
    done = await eventually(
        lambda: [c for c in posted_cards(slack, "U0CAROL") if "v2" in text_of(c)]
    )
    assert "Lead definition v2 is now in force" in text_of(done[0])

    # A new Not a fit form offers the criteria of v2.
    await send_leads(server, lead_payload("A-1", "Nia Novak"))
    (lead_card,) = await eventually(lambda: posted_cards(slack, "U0ALICE"))
    await interact(server, press(slack, "U0ALICE", lead_card, "lead.not_a_fit"))
    view = slack.of("views.open")[-1]["view"]
    options = [o["value"] for o in block(view, "criteria")["element"]["options"]]
    assert options == [
        "budget",
        "authority",
        "need",
        "territory",
        "valid_contact",
        "icp",
        "uses_a_crm",
    ]


async def test_a_rejection_in_slack_needs_a_comment_and_reaches_the_proposer(
    server: LiveServer, slack: SlackStandIn
) -> None:
    await slash(server, slack, "U0CAROL", "/liaison", "sla propose")
    view = slack.of("views.open")[-1]["view"]
    assert view["callback_id"] == "approval.propose_sla"
    values: dict[str, Any] = {}
    for b in view["blocks"]:
        if b["type"] == "input":
            values.update(typed(b["block_id"], b["element"].get("initial_value", "")))
    values.update({**typed("first_touch_hours", "-2"), **typed("note", "Faster")})
    status, text = await interact(server, view_submission("U0CAROL", view, values))
    assert json.loads(text)["errors"] == {
        "first_touch_hours": "Give a number, more than 0 and at most 720."
    }
    values.update(typed("first_touch_hours", "2"))
    status, text = await interact(server, view_submission("U0CAROL", view, values))
    assert status == 200 and text == ""
    (card,) = await eventually(lambda: posted_cards(slack, "U0DAVE"))
    assert "*First touch (business hours after handoff)*: 4 → 2" in text_of(card)

    status, text = await decide(server, slack, "U0DAVE", card, "approval.reject", "")
    assert "Say why you reject it" in json.loads(text)["errors"]["comment"]
    view = slack.of("views.open")[-1]["view"]
    reason = typed("comment", "Two hours is not enough <!channel>")
    status, text = await interact(server, view_submission("U0DAVE", view, reason))
    assert status == 200 and text == ""
    told = await eventually(
        lambda: [c for c in posted_cards(slack, "U0CAROL") if "rejected" in text_of(c)]
    )
    assert "Dave Davis rejected the new SLA (#1)" in text_of(told[0])
    assert "&lt;!channel&gt;" in text_of(told[0]) and "<!channel>" not in text_of(told[0])
    await slash(server, slack, "U0ALICE", "/liaison", "sla")
    assert "Service-level agreement v1" in text_of(slack.of("response_url")[-1])
    # A rep who tries is told why, privately.
    await slash(server, slack, "U0ALICE", "/leaddef", "propose")
    refusal = slack.of("response_url")[-1]
    assert refusal["response_type"] == "ephemeral" and "you are a rep" in text_of(refusal)


async def test_a_form_asked_for_in_the_dm_says_how_to_open_it(
    server: LiveServer, slack: SlackStandIn
) -> None:
    """A message typed in the DM carries no trigger_id, so Slack cannot open a modal."""
    event = fixture("slack", "event_message_im")
    event["event"].update(user="U0CAROL", text="leaddef propose", channel="D0CAROL")
    status, _ = await post_slack(server, json.dumps(event).encode(), "application/json")
    assert status == 200
    await server.settle()
    assert slack.of("views.open") == []
    (answer,) = [p for p in slack.of("chat.postMessage") if p["channel"] == "D0CAROL"]
    assert "type /liaison leaddef propose instead" in text_of(answer)
