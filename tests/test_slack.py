"""Slack end to end: signed requests over real HTTP into the real Bolt app inside
`liaison serve`, Web API calls answered and recorded by a local stand-in."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlmodel import select

from storage import campaigns, members
from storage.models import EventKind, Lead, LeadEvent, Member
from tests.slack_standin import SlackStandIn
from tests.support import (
    SIGNING_SECRET,
    LiveServer,
    eventually,
    fixture,
    signed_lead_headers,
    slack_settings,
    slack_with,
)


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
    with live.store.session() as session:
        carol = members.upsert_member(
            session, now=_now(), email="carol@example.com", name="Carol Chen", role="marketer"
        )
        campaign = campaigns.ensure_campaign(session, name="Webinar")
        campaign.marketer_id = carol.id
        session.add(campaign)
    yield live
    await live.stop()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def slack_headers(
    body: bytes,
    content_type: str,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    **extra: str,
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = f"v0:{ts}:".encode() + body
    sig = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sig,
        **extra,
    }


async def post_slack(
    server: LiveServer, body: bytes, content_type: str, **headers: str
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/slack/events",
            data=body,
            headers=slack_headers(body, content_type, **headers),
        ) as response,
    ):
        return response.status, await response.text()


async def interact(server: LiveServer, payload: dict[str, Any]) -> tuple[int, str]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    status, text = await post_slack(server, body, "application/x-www-form-urlencoded")
    await server.settle()
    return status, text


def press(
    slack: SlackStandIn, user: str, message: dict[str, Any], action_id: str
) -> dict[str, Any]:
    """A block_actions payload: `user` pressed `action_id` on the posted `message`."""
    payload = fixture("slack", "block_actions")
    button = next(
        e
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == action_id
    )
    payload["user"] = {
        "id": user,
        "username": user.lower(),
        "name": user.lower(),
        "team_id": "T0CAG",
    }
    payload["container"].update(channel_id=message["channel"], message_ts=message["ts"])
    payload["channel"]["id"] = message["channel"]
    payload["response_url"] = slack.response_url(f"{user}-{action_id}")
    payload["trigger_id"] = slack.trigger_id()
    payload["actions"][0].update(action_id=action_id, value=button["value"], text=button["text"])
    return payload


def submit(user: str, view: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A view_submission payload for an opened modal with the given input values."""
    payload = fixture("slack", "view_submission")
    payload["user"] = {
        "id": user,
        "username": user.lower(),
        "name": user.lower(),
        "team_id": "T0CAG",
    }
    payload["view"].update(
        callback_id=view["callback_id"],
        private_metadata=view["private_metadata"],
        blocks=view["blocks"],
        state={"values": values},
    )
    return payload


def posted_cards(slack: SlackStandIn, channel: str) -> list[dict[str, Any]]:
    """Messages the bot posted (not in a thread), with the channel/ts the stand-in gave them."""
    return [
        dict(call.params, channel=call.answer["channel"], ts=call.answer["ts"])
        for call in slack.calls
        if call.method == "chat.postMessage"
        and call.params["channel"] == channel
        and "thread_ts" not in call.params
    ]


def text_of(params: dict[str, Any]) -> str:
    return json.dumps(params.get("blocks", []), ensure_ascii=False) + params.get("text", "")


async def send_leads(
    server: LiveServer, leads: list[dict[str, Any]] | dict[str, Any], **headers: str
) -> tuple[int, dict[str, Any]]:
    body = json.dumps(leads).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/api/leads", data=body, headers={**signed_lead_headers(body), **headers}
        ) as response,
    ):
        data = await response.json()
    await server.settle()
    return response.status, data


def lead_payload(
    external_id: str, name: str, owner: str = "alice@example.com", **extra: str
) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "name": name,
        "company": "Globex",
        "campaign": "Webinar",
        "owner_email": owner,
        "title": "VP Sales",
        **extra,
    }


def events(server: LiveServer, kind: EventKind) -> list[LeadEvent]:
    with server.store.session() as session:
        return list(session.exec(select(LeadEvent).where(LeadEvent.kind == kind.value)).all())


async def test_help_command_answers_privately(server: LiveServer, slack: SlackStandIn) -> None:
    form = fixture("slack", "slash_command")
    form.update(user_id="U0BOB", response_url=slack.response_url("help"))
    status, _ = await post_slack(
        server, urlencode(form).encode(), "application/x-www-form-urlencoded"
    )
    await server.settle()
    assert status == 200
    (answer,) = slack.of("response_url")
    assert answer["response_type"] == "ephemeral"
    assert "/liaison leaddef" in text_of(answer) and "/liaison help" in text_of(answer)


async def test_leaddef_shows_criteria(server: LiveServer, slack: SlackStandIn) -> None:
    form = fixture("slack", "slash_command")
    form.update(command="/leaddef", text="", response_url=slack.response_url("ld"))
    await post_slack(server, urlencode(form).encode(), "application/x-www-form-urlencoded")
    await server.settle()
    (answer,) = slack.of("response_url")
    assert "Lead definition v1" in text_of(answer) and "Budget confirmed" in text_of(answer)


async def test_the_whole_journey(server: LiveServer, slack: SlackStandIn) -> None:
    status, body = await send_leads(
        server, [lead_payload("L-1", "Jordan Patel"), lead_payload("L-2", "Priya Rossi")]
    )
    assert status == 200
    assert [lead["status"] for lead in body["leads"]] == ["created", "created"]
    assert len(slack.of("users.lookupByEmail")) == 1  # the owner is looked up once, then known
    first, second = await eventually(
        lambda: (cards := posted_cards(slack, "U0ALICE"))[1:] and cards[:2]
    )
    assert "Jordan Patel" in text_of(first)
    labels = [
        e["text"]["text"] for b in first["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert labels == ["Accept", "Not a fit", "Need info", "Log attempt", "Share insight"]

    # Accept: the same card is updated in place.
    await interact(server, press(slack, "U0ALICE", first, "lead.accept"))
    update = slack.of("chat.update")[-1]
    assert (update["channel"], update["ts"]) == (first["channel"], first["ts"])
    assert "Accepted by Alice Adams" in text_of(update)

    # Not a fit: a modal with the definition's criteria; at least one is required.
    await interact(server, press(slack, "U0ALICE", second, "lead.not_a_fit"))
    view = slack.of("views.open")[-1]["view"]
    options = [
        o["value"]
        for b in view["blocks"]
        if b.get("block_id") == "criteria"
        for o in b["element"]["options"]
    ]
    assert options == ["budget", "authority", "need", "timing", "territory", "valid_contact"]
    empty = {
        "criteria": {"criteria": {"type": "multi_static_select", "selected_options": []}},
        "comment": {"comment": {"type": "plain_text_input", "value": None}},
    }
    status, text = await interact(server, submit("U0ALICE", view, empty))
    assert status == 200 and json.loads(text)["response_action"] == "errors"
    assert "criteria" in json.loads(text)["errors"]
    picked = {
        "criteria": {
            "criteria": {
                "type": "multi_static_select",
                "selected_options": [
                    {"value": "budget", "text": {"type": "plain_text", "text": "Budget"}},
                    {"value": "timing", "text": {"type": "plain_text", "text": "Timing"}},
                ],
            }
        },
        "comment": {"comment": {"type": "plain_text_input", "value": "No budget <!channel>"}},
    }
    status, text = await interact(server, submit("U0ALICE", view, picked))
    assert status == 200 and text == ""
    (verdict,) = events(server, EventKind.not_a_fit)
    assert verdict.data["criteria"] == ["budget", "timing"]
    assert verdict.data["comment"] == "No budget <!channel>"
    update = slack.of("chat.update")[-1]
    assert update["ts"] == second["ts"] and "Not a fit" in text_of(update)
    assert "&lt;!channel&gt;" in text_of(update) and "<!channel>" not in text_of(update)
    # The same submission again (Slack retry / double submit) changes nothing.
    await interact(server, submit("U0ALICE", view, picked))
    assert len(events(server, EventKind.not_a_fit)) == 1

    # Need info: the question goes to the campaign's marketer, the answer comes back.
    await interact(server, press(slack, "U0ALICE", first, "lead.need_info"))
    view = slack.of("views.open")[-1]["view"]
    question = {
        "question": {
            "question": {"type": "plain_text_input", "value": "Which region is the buyer in?"}
        }
    }
    await interact(server, submit("U0ALICE", view, question))
    carol_card = (await eventually(lambda: posted_cards(slack, "U0CAROL")))[-1]
    assert "Which region is the buyer in?" in text_of(carol_card)
    await interact(server, press(slack, "U0CAROL", carol_card, "question.answer"))
    view = slack.of("views.open")[-1]["view"]
    answer = {"answer": {"answer": {"type": "plain_text_input", "value": "EMEA, Berlin office"}}}
    await interact(server, submit("U0CAROL", view, answer))
    thread = [p for p in slack.of("chat.postMessage") if p.get("thread_ts") == first["ts"]]
    assert len(thread) == 1 and "EMEA, Berlin office" in text_of(thread[0])
    assert "EMEA, Berlin office" in text_of(slack.of("chat.update")[-1])

    # Log attempt twice: the card counts them.
    for channel in ("call", "email"):
        await interact(server, press(slack, "U0ALICE", first, "lead.log_attempt"))
        view = slack.of("views.open")[-1]["view"]
        values = {
            "channel": {
                "channel": {"type": "static_select", "selected_option": {"value": channel}}
            },
            "outcome": {
                "outcome": {"type": "static_select", "selected_option": {"value": "no_answer"}}
            },
            "note": {"note": {"type": "plain_text_input", "value": None}},
        }
        await interact(server, submit("U0ALICE", view, values))
    assert len(events(server, EventKind.attempt_logged)) == 2
    last = slack.of("chat.update")[-1]
    assert last["ts"] == first["ts"] and "2 so far" in text_of(last)
    # Never posted twice: one card per lead in Alice's DM (beside the private answers to
    # her modals, which reach the same DM).
    cards = [c for c in posted_cards(slack, "U0ALICE") if "lead.accept" in json.dumps(c)]
    assert len(cards) == 2


async def test_only_the_owner_or_manager_may_act(server: LiveServer, slack: SlackStandIn) -> None:
    await send_leads(server, lead_payload("L-9", "Tom Ito"))
    (card,) = await eventually(lambda: posted_cards(slack, "U0ALICE"))
    await interact(server, press(slack, "U0BOB", card, "lead.accept"))
    (answer,) = slack.of("response_url")
    assert "belongs to Alice Adams" in text_of(answer) and answer["response_type"] == "ephemeral"
    assert not events(server, EventKind.accepted)
    # Alice's manager may act.
    with server.store.session() as session:
        bob = members.member_by(session, slack_user_id="U0BOB")
        alice = members.member_by(session, slack_user_id="U0ALICE")
        assert bob is not None and alice is not None
        alice.manager_id = bob.id
        session.add(alice)
    await interact(server, press(slack, "U0BOB", card, "lead.accept"))
    assert len(events(server, EventKind.accepted)) == 1


async def test_double_click_accept_acts_once(server: LiveServer, slack: SlackStandIn) -> None:
    await send_leads(server, lead_payload("L-3", "Aiko Tanaka"))
    (card,) = await eventually(lambda: posted_cards(slack, "U0ALICE"))
    payload = press(slack, "U0ALICE", card, "lead.accept")
    await interact(server, payload)
    await interact(server, payload)
    assert len(events(server, EventKind.accepted)) == 1
    assert "already accepted" in text_of(slack.of("response_url")[-1])


async def test_event_retries_act_once(server: LiveServer, slack: SlackStandIn) -> None:
    body = json.dumps(fixture("slack", "event_message_im")).encode()
    assert (await post_slack(server, body, "application/json"))[0] == 200
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert (await post_slack(server, body, "application/json", **retry))[0] == 200
    await server.settle()
    (answer,) = slack.of("chat.postMessage")
    assert answer["channel"] == "D0CA8" and "/liaison help" in text_of(answer)


async def test_mention_injection_in_lead_name_never_pings(
    server: LiveServer, slack: SlackStandIn
) -> None:
    await send_leads(server, lead_payload("L-4", "<!channel> & <@U0BOB>"))
    (card,) = await eventually(lambda: posted_cards(slack, "U0ALICE"))
    blocks = json.dumps(card["blocks"])
    assert "&lt;!channel&gt; &amp; &lt;@U0BOB&gt;" in blocks
    assert "<!channel>" not in blocks and "<@U0BOB>" not in blocks
    # The notification text is mrkdwn as well: escaped the same way.
    assert card["text"].startswith("&lt;!channel&gt; &amp; &lt;@U0BOB&gt;")


async def test_unknown_owner_is_kept_and_admins_told(
    server: LiveServer, slack: SlackStandIn
) -> None:
    slack.add_user("U0ERIN", "Erin Ellis", "erin@example.com")
    with server.store.session() as session:
        members.upsert_member(
            session,
            now=_now(),
            email="erin@example.com",
            name="Erin Ellis",
            role="admin",
            slack_user_id="U0ERIN",
        )
    status, body = await send_leads(
        server, lead_payload("L-5", "Noah Kim", owner="nobody@example.com")
    )
    assert status == 200 and body["leads"][0]["status"] == "created"
    with server.store.session() as session:
        lead = session.exec(select(Lead).where(Lead.external_id == "L-5")).one()
        assert lead.state == "unassigned" and lead.owner_id is None
    (notice,) = await eventually(lambda: posted_cards(slack, "U0ERIN"))
    assert "without an owner" in text_of(notice) and "nobody@example.com" in text_of(notice)


@pytest.mark.parametrize("mutate", ["no_signature", "bad_signature", "stale"])
async def test_unsigned_or_stale_requests_are_refused(server: LiveServer, mutate: str) -> None:
    body = json.dumps(fixture("slack", "event_message_im")).encode()
    headers = slack_headers(body, "application/json")
    if mutate == "no_signature":
        del headers["X-Slack-Signature"]
    elif mutate == "bad_signature":
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
    else:
        headers = slack_headers(body, "application/json", timestamp=int(time.time()) - 600)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/slack/events", data=body, headers=headers) as response,
    ):
        assert response.status == 401
        assert "signature" in (await response.json())["error"]


@pytest.mark.parametrize(
    "body,content_type",
    [
        (b"payload=%7Bnot-json", "application/x-www-form-urlencoded"),
        (b"[1, 2, 3]", "application/json"),
        (b'{"no": "type"}', "application/json"),
        (b"\xff\xfe garbage", "application/json"),
    ],
)
async def test_signed_but_malformed_bodies_get_400(
    server: LiveServer, body: bytes, content_type: str
) -> None:
    status, text = await post_slack(server, body, content_type)
    assert status == 400 and "error" in json.loads(text)
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as response:
        assert response.status == 200


async def test_members_met_in_slack_are_matched_by_email(
    server: LiveServer, slack: SlackStandIn
) -> None:
    form = fixture("slack", "slash_command")
    form.update(user_id="U0CAROL", response_url=slack.response_url("c"))
    await post_slack(server, urlencode(form).encode(), "application/x-www-form-urlencoded")
    await server.settle()
    with server.store.session() as session:
        carols = session.exec(select(Member).where(Member.name == "Carol Chen")).all()
        assert len(carols) == 1 and carols[0].slack_user_id == "U0CAROL"
        assert carols[0].role == "marketer"


async def test_the_home_tab_shows_what_waits_with_sla_time_left(
    server: LiveServer, slack: SlackStandIn
) -> None:
    await send_leads(server, [lead_payload("H-1", "Hana <!channel> Ito")])
    event = fixture("slack", "event_app_home_opened")
    event["event"].update(user="U0ALICE", channel="D0ALICE")
    status, _ = await post_slack(server, json.dumps(event).encode(), "application/json")
    assert status == 200
    await server.settle()
    (published,) = slack.of("views.publish")
    assert published["user_id"] == "U0ALICE" and published["view"]["type"] == "home"
    home = text_of(published["view"])
    assert "Alice Adams, here is what waits for you" in home
    assert "1 lead." in home
    assert "Hana &lt;!channel&gt; Ito (Globex): waiting for your verdict" in home
    assert "first touch: due" in home and "of business time left" in home
    # The Messages tab opening publishes nothing.
    event["event"]["tab"], event["event_id"] = "messages", "Ev0OTHER"
    await post_slack(server, json.dumps(event).encode(), "application/json")
    await server.settle()
    assert len(slack.of("views.publish")) == 1


async def test_digest_preview_and_your_week_opt_in(server: LiveServer, slack: SlackStandIn) -> None:
    await send_leads(server, [lead_payload("P-1", "Pia Lind")])
    form = fixture("slack", "slash_command")
    form.update(
        user_id="U0CAROL", text="digest preview", response_url=slack.response_url("preview")
    )
    await post_slack(server, urlencode(form).encode(), "application/x-www-form-urlencoded")
    await server.settle()
    (answer,) = slack.of("response_url")
    assert answer["response_type"] == "ephemeral"
    assert answer["blocks"][0]["type"] == "header"
    assert "Weekly alignment digest" in answer["blocks"][0]["text"]["text"]
    assert "*Generated*: 1" in text_of(answer) and "Agenda for the weekly sync" in text_of(answer)
    form.update(text="digest me on", response_url=slack.response_url("me"))
    await post_slack(server, urlencode(form).encode(), "application/x-www-form-urlencoded")
    await server.settle()
    assert "private note with your own figures" in text_of(slack.of("response_url")[-1])
    with server.store.session() as session:
        carol = members.member_by(session, email="carol@example.com")
        assert carol is not None and carol.weekly_digest
    form.update(text="digest sometimes", response_url=slack.response_url("bad"))
    await post_slack(server, urlencode(form).encode(), "application/x-www-form-urlencoded")
    await server.settle()
    assert "`digest preview` for this week so far" in text_of(slack.of("response_url")[-1])


async def test_a_lead_with_many_attributes_shows_every_one(
    server: LiveServer, slack: SlackStandIn
) -> None:
    """25 attributes of 150 characters: more than one section holds. The card splits them
    over sections (Slack refuses a section over 3,000 characters) and loses none."""
    extra = {f"attribute_{n:02d}": f"value {n:02d} " + "x" * 140 for n in range(25)}
    status, _ = await send_leads(server, [lead_payload("L-9", "Many Fields", **extra)])
    assert status == 200
    (card,) = await eventually(lambda: posted_cards(slack, "U0ALICE"))
    text = text_of(card)
    for key, value in extra.items():
        assert f"*{key}*: {value}" in text, key
    assert "…" not in text
    assert slack.refused == []


async def test_a_form_opened_too_late_is_answered_privately(
    server: LiveServer, slack: SlackStandIn
) -> None:
    """Slack lets a trigger open a modal for 3 seconds. When a slow moment outlives it,
    the person hears so privately instead of nothing happening."""
    await send_leads(server, [lead_payload("L-1", "Jordan Patel")])
    (card,) = await eventually(lambda: posted_cards(slack, "U0ALICE"))
    payload = press(slack, "U0ALICE", card, "lead.not_a_fit")
    payload["trigger_id"] = slack.trigger_id(age=3.5)
    status, _ = await interact(server, payload)
    assert status == 200
    assert slack.of("views.open") == []
    (refused,) = [c for c in slack.refused if c.method == "views.open"]
    assert refused.params["trigger_id"] == payload["trigger_id"]
    (answer,) = slack.of("response_url")
    assert answer["response_type"] == "ephemeral"
    assert "3 seconds" in text_of(answer) and "try again" in text_of(answer)
    # A fresh click opens the form.
    await interact(server, press(slack, "U0ALICE", card, "lead.not_a_fit"))
    assert len(slack.of("views.open")) == 1
