"""Insights, content and wins end to end in Slack: signed slash commands and button presses
into the real Bolt app, the modal captured from `views.open`, a `view_submission` built from
it, then the DMs, channel posts and private answers at the Web API stand-in."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlmodel import select

from storage import campaigns as stored_campaigns
from storage import members as stored_members
from storage.models import ContentItem, Insight, Win
from tests.slack_standin import SlackStandIn
from tests.support import LiveServer, eventually, fixture, make_settings
from tests.test_slack import (
    SIGNING_SECRET,
    _now,
    interact,
    lead_payload,
    post_slack,
    posted_cards,
    press,
    send_leads,
    submit,
    text_of,
)

Factory = Callable[..., Awaitable[LiveServer]]


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await SlackStandIn().start()
    standin.add_user("U0ALICE", "Alice Adams", "alice@example.com")
    standin.add_user("U0BOB", "Bob Brown", "bob@example.com")
    standin.add_user("U0CAROL", "Carol Chen", "carol@example.com")
    standin.add_user("U0DAVE", "Dave Davis", "dave@example.com")
    yield standin
    await standin.stop()


@pytest.fixture
async def start(tmp_path: Path, slack: SlackStandIn) -> AsyncIterator[Factory]:
    """Start `liaison serve` with Carol and Dave as marketers (Carol runs the Webinar
    campaign) and the given channel settings."""
    started: list[LiveServer] = []

    async def make(**channels: str) -> LiveServer:
        settings = make_settings(
            f"sqlite:///{tmp_path / 'liaison.db'}",
            SLACK_BOT_TOKEN=slack.token,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=slack.api_url,
            **channels,
        )
        live = await LiveServer(settings).start()
        started.append(live)
        with live.store.session() as session:
            for email, name in (
                ("carol@example.com", "Carol Chen"),
                ("dave@example.com", "Dave Davis"),
            ):
                stored_members.upsert_member(
                    session, now=_now(), email=email, name=name, role="marketer"
                )
            carol = stored_members.member_by(session, email="carol@example.com")
            campaign = stored_campaigns.ensure_campaign(session, name="Webinar")
            campaign.marketer_id = carol.id if carol else None
            session.add(campaign)
            stored_campaigns.ensure_campaign(session, name="Trade show")
        return live

    yield make
    for live in started:
        await live.stop()


@pytest.fixture
async def server(start: Factory) -> LiveServer:
    return await start(
        LIAISON_INSIGHTS_CHANNEL="slack:C0INSIGHTS", LIAISON_WINS_CHANNEL="slack:C0WINS"
    )


async def slash(
    server: LiveServer, slack: SlackStandIn, user: str, text: str, command: str = "/liaison"
) -> None:
    """`user` types `command text` in a channel (a slash command, as Slack posts it)."""
    form = fixture("slack", "slash_command")
    form.update(
        user_id=user,
        user_name=user.lower(),
        command=command,
        text=text,
        response_url=slack.response_url(f"{user}-{time.monotonic_ns()}"),
        trigger_id=slack.trigger_id(),
    )
    status, _ = await post_slack(
        server, urlencode(form).encode(), "application/x-www-form-urlencoded"
    )
    assert status == 200
    await server.settle()


def modal(slack: SlackStandIn) -> dict[str, Any]:
    return dict(slack.of("views.open")[-1]["view"])


def typed(value: str | None) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def picked(value: str | None) -> dict[str, Any]:
    chosen = {"value": value, "text": {"type": "plain_text", "text": value}} if value else None
    return {"type": "static_select", "selected_option": chosen}


def state(**inputs: dict[str, Any]) -> dict[str, Any]:
    """Modal state values: each input's block id and action id are its name."""
    return {name: {name: element} for name, element in inputs.items()}


def option_values(view: dict[str, Any], block_id: str) -> list[str]:
    block = next(b for b in view["blocks"] if b.get("block_id") == block_id)
    return [o["value"] for o in block["element"]["options"]]


def initial_option(view: dict[str, Any], block_id: str) -> str | None:
    block = next(b for b in view["blocks"] if b.get("block_id") == block_id)
    chosen = block["element"].get("initial_option")
    return chosen["value"] if chosen else None


def private_answers(slack: SlackStandIn, user: str) -> list[str]:
    """Everything said privately: response_url answers, ephemerals and, after a modal, the
    message in the person's DM with Liaison."""
    said = [text_of(p) for p in slack.of("response_url")]
    said += [text_of(p) for p in slack.of("chat.postEphemeral") if p.get("user") == user]
    dm = ("D" + user[1:], user)
    said += [text_of(p) for p in slack.of("chat.postMessage") if p["channel"] in dm]
    return said


async def errors_of(
    server: LiveServer, user: str, view: dict[str, Any], values: Any
) -> dict[str, str]:
    status, text = await interact(server, submit(user, view, values))
    assert status == 200
    answer = json.loads(text)
    assert answer["response_action"] == "errors"
    errors: dict[str, str] = answer["errors"]
    return errors


def rows(server: LiveServer, model: Any) -> list[Any]:
    with server.store.session() as session:
        return list(session.exec(select(model)).all())


# ---------------------------------------------------------------- insights → content


async def test_a_reps_insight_becomes_linked_content_and_the_rep_hears_back(
    server: LiveServer, slack: SlackStandIn
) -> None:
    await send_leads(server, lead_payload("L-1", "Jordan Patel"))
    (card,) = await eventually(lambda: posted_cards(slack, "U0ALICE"))
    labels = [
        e["text"]["text"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert "Share insight" in labels

    # Share insight: the modal knows the lead and pre-selects its campaign.
    await interact(server, press(slack, "U0ALICE", card, "insight.share"))
    view = modal(slack)
    assert view["callback_id"] == "insight.new"
    assert "Jordan Patel (Globex)" in json.dumps(view["blocks"])
    webinar = initial_option(view, "campaign")
    assert webinar is not None
    empty = state(
        text=typed(None), kind=picked("question"), campaign=picked(webinar), tags=typed(None)
    )
    assert "Write what the buyer asked" in (await errors_of(server, "U0ALICE", view, empty))["text"]
    values = state(
        text=typed("Does it integrate with SAP? <!channel>"),
        kind=picked("question"),
        campaign=picked(webinar),
        tags=typed("sap, erp"),
    )
    status, text = await interact(server, submit("U0ALICE", view, values))
    assert (status, text) == (200, "")
    await interact(server, submit("U0ALICE", view, values))  # a double submit acts once
    (insight,) = rows(server, Insight)
    assert insight.tags == ["sap", "erp"] and insight.lead_id is not None

    # It reaches Carol (the campaign's marketer) and the insights channel; escaped.
    (to_carol,) = await eventually(lambda: posted_cards(slack, "U0CAROL"))
    assert "Does it integrate with SAP? &lt;!channel&gt;" in text_of(to_carol)
    assert "<!channel>" not in text_of(to_carol)
    channel_posts = [p for p in slack.of("chat.postMessage") if p["channel"] == "C0INSIGHTS"]
    assert len(channel_posts) == 1 and "Does it integrate with SAP?" in text_of(channel_posts[0])
    assert any(
        "went to Carol Chen, the Webinar campaign's marketer" in t
        for t in private_answers(slack, "U0ALICE")
    )

    # Carol claims it; Alice hears someone is on it.
    await interact(server, press(slack, "U0CAROL", to_carol, "insight.claim"))
    assert "You claimed this insight" in text_of(slack.of("response_url")[-1])
    picked_up = await eventually(
        lambda: [
            c for c in posted_cards(slack, "U0ALICE") if "working on your insight" in text_of(c)
        ]
    )
    assert "Carol Chen is working on your insight" in text_of(picked_up[0])

    # Carol answers, registering content made for it.
    await interact(server, press(slack, "U0CAROL", to_carol, "insight.answer"))
    view = modal(slack)
    assert view["callback_id"] == "insight.answer"
    bad_link = state(
        answer=typed("Yes, the SAP connector ships in the box."),
        new_title=typed("SAP connector one-pager"),
        new_link=typed("sap-connector.pdf"),
    )
    assert "not a web link" in (await errors_of(server, "U0CAROL", view, bad_link))["new_link"]
    good = state(
        answer=typed("Yes, the SAP connector ships in the box."),
        new_title=typed("SAP connector one-pager"),
        new_link=typed("https://example.com/sap-connector?a=1&b=2"),
    )
    status, text = await interact(server, submit("U0CAROL", view, good))
    assert (status, text) == (200, "")
    (item,) = rows(server, ContentItem)
    assert item.description == "Does it integrate with SAP? <!channel>" and item.tags == "sap, erp"

    # The loop closes: Alice gets the answer and the link.
    closed = await eventually(
        lambda: [
            c
            for c in posted_cards(slack, "U0ALICE")
            if "answered your buyer question" in text_of(c)
        ]
    )
    said = text_of(closed[0])
    assert "Carol Chen answered your buyer question" in said
    assert "Yes, the SAP connector ships in the box." in said
    assert "<https://example.com/sap-connector?a=1&amp;b=2|SAP connector one-pager>" in said
    assert rows(server, Insight)[0].status == "closed"

    # Anyone now finds it with /content (here the /content shortcut), privately.
    await slash(server, slack, "U0BOB", "sap connector", command="/content")
    answer = slack.of("response_url")[-1]
    assert answer["response_type"] == "ephemeral"
    assert "SAP connector one-pager" in text_of(answer)

    # Answering the closed insight again is refused privately.
    await interact(server, press(slack, "U0DAVE", to_carol, "insight.answer"))
    assert "already answered by Carol Chen" in text_of(slack.of("response_url")[-1])


async def test_claimed_by_someone_else_is_said_and_nothing_changes(
    server: LiveServer, slack: SlackStandIn
) -> None:
    await slash(server, slack, "U0ALICE", "insight Buyer asks for a free tier")
    view = modal(slack)
    assert "Buyer asks for a free tier" in json.dumps(view["blocks"])  # pre-filled
    values = state(
        text=typed("Buyer asks for a free tier"),
        kind=picked("request"),
        campaign=picked(None),
        tags=typed(None),
    )
    await interact(server, submit("U0ALICE", view, values))
    carol_card = (await eventually(lambda: posted_cards(slack, "U0CAROL")))[-1]
    dave_card = (await eventually(lambda: posted_cards(slack, "U0DAVE")))[-1]  # all marketers
    await interact(server, press(slack, "U0DAVE", dave_card, "insight.claim"))
    await interact(server, press(slack, "U0CAROL", carol_card, "insight.claim"))
    assert "claimed by Dave Davis" in text_of(slack.of("response_url")[-1])
    await interact(server, press(slack, "U0CAROL", carol_card, "insight.answer"))
    assert "claimed by Dave Davis" in text_of(slack.of("response_url")[-1])
    (insight,) = rows(server, Insight)
    assert insight.status == "claimed"
    # A rep pressing Claim (e.g. on the channel post) is told why not.
    await interact(server, press(slack, "U0BOB", carol_card, "insight.claim"))
    assert "Only marketer, admin members" in text_of(slack.of("response_url")[-1])

    # /insights: Alice sees hers, Dave sees what waits for him.
    await slash(server, slack, "U0ALICE", "insights")
    said = " ".join(text_of(p) for p in slack.of("response_url")[-2:])
    assert "1 open insight you shared" in said and "Claimed by Dave Davis" in said


# ---------------------------------------------------------------- content


async def test_content_add_search_and_refusals(server: LiveServer, slack: SlackStandIn) -> None:
    await slash(server, slack, "U0ALICE", "content add")
    assert "Only marketer, admin members can register content" in text_of(
        slack.of("response_url")[-1]
    )
    assert not slack.of("views.open")

    async def register(title: str, link: str, description: str, tags: str, stage: str) -> str:
        await slash(server, slack, "U0CAROL", "content add")
        view = modal(slack)
        assert option_values(view, "stage") == [
            "awareness",
            "consideration",
            "decision",
            "retention",
        ]
        values = state(
            title=typed(title),
            link=typed(link),
            description=typed(description),
            tags=typed(tags),
            stage=picked(stage),
        )
        status, text = await interact(server, submit("U0CAROL", view, values))
        assert status == 200
        return text

    assert (
        await register("Security whitepaper", "https://example.com/security", "", "", "decision")
        == ""
    )
    assert (
        await register(
            "Onboarding", "https://example.com/onboarding", "The security review", "", "awareness"
        )
        == ""
    )
    assert (
        await register(
            "Customer stories", "https://example.com/stories", "", "security", "consideration"
        )
        == ""
    )
    duplicate = json.loads(
        await register("Again", "https://EXAMPLE.com/security/", "", "", "decision")
    )
    assert "already registered as “Security whitepaper”" in duplicate["errors"]["link"]
    bad = json.loads(
        await register("Bad", "mailto:x@example.com", "", "a,b,c,d,e,f,g,h,i,j,k", "decision")
    )
    assert set(bad["errors"]) == {"link", "tags"}
    assert len(rows(server, ContentItem)) == 3

    await slash(server, slack, "U0ALICE", "content security")
    answer = slack.of("response_url")[-1]
    said = text_of(answer)
    assert answer["response_type"] == "ephemeral"
    assert (
        said.index("Security whitepaper")
        < said.index("Customer stories")
        < said.index("Onboarding")
    )
    assert "<https://example.com/security|Security whitepaper>" in said

    for words in ('"security', "security*", "security AND (", "title:security -x", "NEAR("):
        await slash(server, slack, "U0ALICE", f"content {words}")
        assert slack.of("response_url")[-1]["response_type"] == "ephemeral"
    await slash(server, slack, "U0ALICE", "content webinar recording")
    assert "Nothing registered matches" in text_of(slack.of("response_url")[-1])
    await slash(server, slack, "U0ALICE", "content")
    assert "content pricing objection" in text_of(slack.of("response_url")[-1])


# ---------------------------------------------------------------- wins


async def test_a_win_is_posted_in_the_wins_channel_crediting_both_sides(
    server: LiveServer, slack: SlackStandIn
) -> None:
    await send_leads(server, lead_payload("L-7", "Jordan Patel"))
    (card,) = await eventually(lambda: posted_cards(slack, "U0ALICE"))
    await interact(server, press(slack, "U0ALICE", card, "lead.accept"))

    await slash(server, slack, "U0ALICE", "win")
    view = modal(slack)
    (lead_id,) = option_values(view, "lead")
    too_long = state(story=typed("w" * 1501), lead=picked(lead_id), campaign=picked(None))
    assert "under 1500 characters" in (await errors_of(server, "U0ALICE", view, too_long))["story"]
    values = state(
        story=typed("Globex signed for three years after the webinar demo."),
        lead=picked(lead_id),
        campaign=picked(None),
    )
    status, text = await interact(server, submit("U0ALICE", view, values))
    assert (status, text) == (200, "")
    (win,) = rows(server, Win)
    post = await eventually(
        lambda: [p for p in slack.of("chat.postMessage") if p["channel"] == "C0WINS"]
    )
    said = text_of(post[0])
    assert "Alice Adams closed Globex — from Carol Chen's Webinar campaign" in said
    assert "Globex signed for three years" in said
    thanks = await eventually(
        lambda: [
            c
            for c in posted_cards(slack, "U0CAROL")
            if "credited your Webinar campaign" in text_of(c)
        ]
    )
    assert len(thanks) == 1 and win.marketer_id is not None


async def test_without_a_wins_channel_the_author_is_told_how(
    start: Factory, slack: SlackStandIn
) -> None:
    server = await start()
    await slash(server, slack, "U0BOB", "win")
    view = modal(slack)
    assert "lead" not in [b.get("block_id") for b in view["blocks"]]  # no accepted leads
    campaigns = option_values(view, "campaign")
    values = state(story=typed("Closed Initech"), campaign=picked(campaigns[-1]))  # Webinar
    await interact(server, submit("U0BOB", view, values))
    said = " ".join(private_answers(slack, "U0BOB"))
    assert "no wins channel is set up" in said and "liaison channels set wins slack:C…" in said
    assert not [p for p in slack.of("chat.postMessage") if p["channel"].startswith("C")]
    await eventually(lambda: posted_cards(slack, "U0CAROL"))  # Carol is still credited
    assert len(rows(server, Win)) == 1
