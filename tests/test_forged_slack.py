"""Forged Slack payloads: correctly signed requests (a replay, a compromised client) that
name someone else's object or a foreign channel. Each is re-checked against the actor on
the server, changes nothing, shows nothing of the object and is answered to the actor
only, through the live Bolt app and the Slack stand-in."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import SQLModel, func, select

from storage import approvals, campaigns, members
from storage import feedback as records
from storage.models import ApprovalSignoff, FeedbackAnswer, Insight, Lead, LeadEvent, Member
from tests.slack_standin import SlackStandIn
from tests.support import LiveServer, eventually, fixture, slack_settings, slack_with
from tests.test_slack import (
    interact,
    lead_payload,
    posted_cards,
    send_leads,
    text_of,
)

LEAD, COMPANY = "Jordan Patel", "Globex"


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await slack_with("alice", "carol", "bob")
    yield standin
    await standin.stop()


@pytest.fixture
async def server(tmp_path: Path, slack: SlackStandIn) -> AsyncIterator[LiveServer]:
    settings = slack_settings(
        f"sqlite:///{tmp_path / 'liaison.db'}",
        slack,
    )
    live = await LiveServer(settings).start()
    now = datetime.now(UTC)
    with live.store.session() as session:
        carol = members.upsert_member(
            session,
            now=now,
            email="carol@example.com",
            name="Carol Chen",
            role="marketer",
            slack_user_id="U0CAROL",
        )
        members.upsert_member(
            session, now=now, email="bob@example.com", name="Bob Brown", slack_user_id="U0BOB"
        )
        campaign = campaigns.ensure_campaign(session, name="Webinar")
        campaign.marketer_id = carol.id
        session.add(campaign)
    yield live
    await live.stop()


async def alice_lead(server: LiveServer, slack: SlackStandIn) -> tuple[int, dict[str, Any]]:
    """Alice's lead (Jordan Patel at Globex) and its handoff card in her DM."""
    await send_leads(server, lead_payload("F-1", LEAD))
    (card,) = await eventually(lambda: posted_cards(slack, "U0ALICE"))
    with server.store.session() as session:
        lead = session.exec(select(Lead).where(Lead.external_id == "F-1")).one()
        return lead.id or 0, card


def member_id(server: LiveServer, slack_user_id: str) -> int:
    with server.store.session() as session:
        member = members.member_by(session, slack_user_id=slack_user_id)
        assert member is not None
        return member.id or 0


def forged_press(
    slack: SlackStandIn, user: str, action_id: str, value: str, channel: str = "D0BOB"
) -> dict[str, Any]:
    """A signed block_actions payload: `user` pressed `action_id` with `value` (the button
    value of someone else's card, or one made up) in `channel`."""
    payload = fixture("slack", "block_actions")
    payload["user"] = {"id": user, "username": user.lower(), "name": user.lower()}
    payload["container"].update(channel_id=channel, message_ts="1700000000.999999")
    payload["channel"]["id"] = channel
    payload["response_url"] = slack.response_url(f"{user}-{action_id}")
    payload["trigger_id"] = f"trigger-{time.monotonic_ns()}"
    payload["actions"][0].update(action_id=action_id, value=value)
    return payload


def forged_submit(
    user: str, callback_id: str, metadata: dict[str, str], values: dict[str, Any]
) -> dict[str, Any]:
    """A signed view_submission of a modal `callback_id` with made-up private_metadata."""
    payload = fixture("slack", "view_submission")
    payload["user"] = {"id": user, "username": user.lower(), "name": user.lower()}
    payload["view"].update(
        id=f"V{time.monotonic_ns()}",
        callback_id=callback_id,
        private_metadata=json.dumps(metadata),
        state={"values": values},
    )
    return payload


def typed(**inputs: str) -> dict[str, Any]:
    return {
        name: {name: {"type": "plain_text_input", "value": value}} for name, value in inputs.items()
    }


def counts(server: LiveServer) -> dict[str, int]:
    """Rows in every table but the record of processed request ids."""
    with server.store.session() as session:
        return {
            table.name: session.exec(select(func.count()).select_from(table)).one()
            for table in SQLModel.metadata.sorted_tables
            if table.name != "processed_requests"
        }


def said_to(slack: SlackStandIn, channel_or_user: str) -> list[str]:
    """Messages posted into a DM: by channel id (D…) or by user id (Slack opens the DM)."""
    targets = {channel_or_user, "D" + channel_or_user[1:], "U" + channel_or_user[1:]}
    return [text_of(p) for p in slack.of("chat.postMessage") if p["channel"] in targets]


def everything_text_once(slack: SlackStandIn) -> str:
    methods = ("response_url", "chat.postMessage", "chat.postEphemeral", "views.open")
    return "\n".join(json.dumps(p) for m in methods for p in slack.of(m))


# ---------------------------------------------------------------- buttons


async def test_share_insight_on_someone_elses_lead_shows_nothing_of_it(
    server: LiveServer, slack: SlackStandIn
) -> None:
    lead_id, _ = await alice_lead(server, slack)
    before = counts(server)
    calls = len(slack.calls)
    status, _ = await interact(
        server, forged_press(slack, "U0BOB", "insight.share", f"lead_id={lead_id}")
    )
    assert status == 200
    assert not slack.of("views.open")
    (answer,) = slack.of("response_url")
    assert answer["response_type"] == "ephemeral"
    assert "not yours" in text_of(answer)
    said = json.dumps([c.params for c in slack.calls[calls:]])
    assert LEAD not in said and COMPANY not in said
    assert counts(server) == before


@pytest.mark.parametrize(
    "action_id", ["lead.accept", "lead.not_a_fit", "lead.need_info", "lead.log_attempt"]
)
async def test_a_forged_lead_button_neither_acts_nor_names_the_lead(
    server: LiveServer, slack: SlackStandIn, action_id: str
) -> None:
    lead_id, _ = await alice_lead(server, slack)
    before = counts(server)
    calls = len(slack.calls)
    await interact(server, forged_press(slack, "U0BOB", action_id, f"lead_id={lead_id}"))
    assert not slack.of("views.open") and not slack.of("chat.update")
    (answer,) = slack.of("response_url")
    assert answer["response_type"] == "ephemeral" and "belongs to Alice Adams" in text_of(answer)
    said = json.dumps([c.params for c in slack.calls[calls:]])
    assert LEAD not in said and COMPANY not in said
    assert counts(server) == before


async def test_forged_feedback_and_approval_buttons_are_refused(
    server: LiveServer, slack: SlackStandIn
) -> None:
    lead_id, _ = await alice_lead(server, slack)
    request_id, approval_id = _feedback_and_approval(server)
    before = counts(server)
    for action_id, value in [
        ("feedback.answer", f"request={request_id}"),  # Bob was not asked
        ("feedback.summary", f"request={request_id}"),  # nor did he ask
        ("feedback.close", f"request={request_id}"),
        ("approval.approve", f"request={approval_id}"),  # he is no approver
        ("approval.reject", f"request={approval_id}"),
        ("question.answer", f"question={lead_id}:q1"),
        ("insight.claim", "insight_id=1"),
    ]:
        await interact(server, forged_press(slack, "U0BOB", action_id, value))
        assert not slack.of("views.open"), action_id
        assert slack.of("response_url")[-1]["response_type"] == "ephemeral"
    assert len(slack.of("response_url")) == 7
    assert "Which slide" not in everything_text_once(slack)
    assert counts(server) == before


def _feedback_and_approval(server: LiveServer) -> tuple[int, int]:
    """A feedback request Carol sent to Alice only, and an approval Carol must sign."""
    now = datetime.now(UTC)
    with server.store.session() as session:
        carol = members.member_by(session, slack_user_id="U0CAROL")
        alice = members.member_by(session, slack_user_id="U0ALICE")
        assert carol is not None and alice is not None
        request = records.create_request(
            session,
            requester_id=carol.id or 0,
            about="campaign",
            subject="The webinar",
            link=None,
            campaign_id=None,
            audience="all",
            deadline=now + timedelta(days=3),
            remind_at=None,
            questions=[records.NewQuestion("text", "Which slide worked?", ())],
            recipients=[alice.id or 0],
            now=now,
        )
        approval = approvals.create_request(
            session,
            subject="sla",
            proposed_by=alice.id or 0,
            proposer_label=alice.name,
            payload={"base_version": 1, "fields": {"attempts": 5}, "changed": []},
            note="More attempts",
            signoffs=[(carol.id or 0, "marketing")],
            remind_at=None,
            now=now,
        )
        return request.id or 0, approval.id or 0


# ---------------------------------------------------------------- modal submissions


async def test_insight_about_someone_elses_lead_is_refused_privately(
    server: LiveServer, slack: SlackStandIn
) -> None:
    lead_id, _ = await alice_lead(server, slack)
    before = counts(server)
    payload = forged_submit(
        "U0BOB",
        "insight.new",
        {"lead_id": str(lead_id), "nonce": "n1", "channel": "D0ALICE"},
        {
            **typed(text="They ask about pricing"),
            "kind": {"kind": {"type": "static_select", "selected_option": {"value": "question"}}},
        },
    )
    status, text = await interact(server, payload)
    assert status == 200 and text == ""
    assert counts(server) == before
    with server.store.session() as session:
        assert not session.exec(select(Insight)).all()
    (answer,) = await eventually(lambda: said_to(slack, "U0BOB"))
    assert "not yours" in answer and LEAD not in answer
    assert not said_to(slack, "D0ALICE")[1:]  # only the handoff card is in Alice's DM


async def test_a_reply_never_goes_to_the_channel_named_in_the_metadata(
    server: LiveServer, slack: SlackStandIn
) -> None:
    """Alice's own question, with Bob's DM planted in the modal's metadata: the question is
    recorded, and her confirmation reaches her DM, nothing reaches Bob's."""
    lead_id, _ = await alice_lead(server, slack)
    payload = forged_submit(
        "U0ALICE",
        "lead.need_info",
        {"lead_id": str(lead_id), "nonce": "q1", "channel": "D0BOB"},
        typed(question="Which region is the buyer in?"),
    )
    status, _ = await interact(server, payload)
    assert status == 200
    with server.store.session() as session:
        assert session.exec(select(LeadEvent).where(LeadEvent.kind == "info_requested")).one()
    confirmation = await eventually(lambda: said_to(slack, "U0ALICE")[1:])
    assert "Carol Chen" in confirmation[-1]
    assert not said_to(slack, "D0BOB")
    assert not slack.of("chat.postEphemeral")


async def test_forged_feedback_and_approval_submissions_change_nothing(
    server: LiveServer, slack: SlackStandIn
) -> None:
    await alice_lead(server, slack)
    request_id, approval_id = _feedback_and_approval(server)
    before = counts(server)
    await interact(
        server,
        forged_submit(
            "U0BOB",
            "feedback.answer",
            {"request": str(request_id), "nonce": "f1", "channel": "D0ALICE"},
            typed(a1="The pricing slide"),
        ),
    )
    await interact(
        server,
        forged_submit(
            "U0BOB",
            "approval.decide",
            {
                "request": str(approval_id),
                "decision": "approved",
                "nonce": "a1",
                "channel": "D0CAROL",
            },
            typed(comment="Fine by me"),
        ),
    )
    assert counts(server) == before
    with server.store.session() as session:
        assert not session.exec(select(FeedbackAnswer)).all()
        (signoff,) = session.exec(select(ApprovalSignoff)).all()
        assert signoff.decision is None
    await eventually(lambda: len(said_to(slack, "U0BOB")) >= 2)
    answers = said_to(slack, "U0BOB")
    assert len(answers) == 2
    assert "Carol Chen" in answers[0]  # who asked, not what
    assert not said_to(slack, "D0ALICE")[1:] and not said_to(slack, "D0CAROL")


async def test_a_member_unknown_to_liaison_gets_no_lead_either(
    server: LiveServer, slack: SlackStandIn
) -> None:
    """Someone Liaison has never met (a fresh member) is no owner of anything."""
    lead_id, _ = await alice_lead(server, slack)
    slack.add_user("U0EVE", "Eve Evans", "eve@example.com")
    await interact(server, forged_press(slack, "U0EVE", "insight.share", f"lead_id={lead_id}"))
    (answer,) = slack.of("response_url")
    assert LEAD not in text_of(answer) and not slack.of("views.open")
    with server.store.session() as session:
        eve = session.exec(select(Member).where(Member.slack_user_id == "U0EVE")).one()
        assert eve.role == "rep"
