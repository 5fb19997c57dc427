"""The Slack Web API stand-in refuses what Slack refuses, in Slack's words, through the real
slack_sdk client: a test that passes against it would pass against Slack; and the Block
Kit that Liaison renders stays within Slack's limits whatever the card, form or report
holds."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.messages import (
    Button,
    Card,
    Fact,
    Form,
    Input,
    InputKind,
    Option,
    Report,
    Section,
    Select,
)
from bot.slack.blocks import card_blocks, modal, report_blocks
from tests.blockkit import block_errors, view_errors
from tests.slack_scopes import manifest_scopes
from tests.slack_standin import Pace, SlackStandIn, Storm


def client(slack: SlackStandIn, token: str | None = None) -> AsyncWebClient:
    return AsyncWebClient(token=slack.token if token is None else token, base_url=slack.api_url)


async def refusal(call: Any) -> dict[str, Any]:
    """Slack's answer to a call it refuses."""
    with pytest.raises(SlackApiError) as refused:
        await call
    data = refused.value.response.data
    assert isinstance(data, dict)
    assert data["ok"] is False
    return data


async def test_every_call_needs_the_bot_token(slack: SlackStandIn) -> None:
    assert (await refusal(client(slack, "").auth_test()))["error"] == "not_authed"
    assert (await refusal(client(slack, "xoxb-other").auth_test()))["error"] == "invalid_auth"
    post = client(slack, "xoxb-other").chat_postMessage(channel="C1", text="hi")
    assert (await refusal(post))["error"] == "invalid_auth"
    assert (await client(slack).auth_test())["ok"] is True
    assert [c.method for c in slack.calls] == ["auth.test"]


async def test_scopes_are_the_manifests(slack: SlackStandIn) -> None:
    assert slack.scopes == manifest_scopes()
    slack.scopes = frozenset({"chat:write"})
    data = await refusal(client(slack).users_lookupByEmail(email="a@x.com"))
    assert data["error"] == "missing_scope"
    assert (data["needed"], data["provided"]) == ("users:read.email", "chat:write")
    data = await refusal(client(slack).files_upload_v2(channel="C1", content=b"x", filename="x"))
    assert (data["error"], data["needed"]) == ("missing_scope", "files:write")


async def test_a_method_liaison_never_called_is_unknown(slack: SlackStandIn) -> None:
    data = await refusal(client(slack).api_call("chat.unfurl", json={"channel": "C1"}))
    assert data["error"] == "unknown_method"


async def test_a_trigger_opens_one_view_within_three_seconds(slack: SlackStandIn) -> None:
    view = modal(Form("f", "Title", (Input("a", "A"),)), metadata={})
    fresh = slack.trigger_id()
    assert (await client(slack).views_open(trigger_id=fresh, view=view))["ok"]
    data = await refusal(client(slack).views_open(trigger_id=fresh, view=view))
    assert data["error"] == "exchanged_trigger_id"
    stale = slack.trigger_id(age=3.01)
    data = await refusal(client(slack).views_open(trigger_id=stale, view=view))
    assert data["error"] == "expired_trigger_id"
    data = await refusal(client(slack).views_open(trigger_id="12345.98765.abcd", view=view))
    assert data["error"] == "invalid_arguments"
    assert data["response_metadata"]["messages"] == ["invalid `trigger_id`"]


async def test_only_the_bots_own_messages_can_be_updated(slack: SlackStandIn) -> None:
    web = client(slack)
    posted = await web.chat_postMessage(channel="U0ALICE", text="card")
    assert posted["channel"] == "D0ALICE"
    assert (await web.chat_update(channel="D0ALICE", ts=posted["ts"], text="new"))["ok"]
    data = await refusal(web.chat_update(channel="D0ALICE", ts="1700000000.999999", text="x"))
    assert data["error"] == "message_not_found"
    data = await refusal(web.chat_update(channel="C0OTHER", ts=posted["ts"], text="x"))
    assert data["error"] == "cant_update_message"
    data = await refusal(web.chat_update(channel="U0ALICE", ts=posted["ts"], text="x"))
    assert data["error"] == "channel_not_found"  # a DM is updated by its D… id


async def test_block_kit_limits_are_slacks(slack: SlackStandIn) -> None:
    web = client(slack)
    long_section = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    data = await refusal(web.chat_postMessage(channel="C1", text="t", blocks=long_section))
    assert data["error"] == "invalid_blocks"
    assert data["errors"] == [
        "must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    ]
    many = [{"type": "divider"}] * 51
    data = await refusal(web.chat_postMessage(channel="C1", text="t", blocks=many))
    assert data["errors"] == ["must provide no more than 50 items [json-pointer:/blocks]"]
    data = await refusal(web.chat_postMessage(channel="C1", text="x" * 40_001))
    assert data["error"] == "msg_too_long"
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": "b"}, "action_id": f"a{n}"}
        for n in range(26)
    ]
    actions = [{"type": "actions", "elements": buttons}]
    data = await refusal(web.chat_postMessage(channel="C1", text="t", blocks=actions))
    assert data["errors"] == [
        "must provide no more than 25 items [json-pointer:/blocks/0/elements]"
    ]
    view = modal(Form("f", "Title", (Input("a", "A"),)), metadata={})
    view["title"]["text"] = "x" * 25
    data = await refusal(web.views_open(trigger_id=slack.trigger_id(), view=view))
    assert data["error"] == "invalid_arguments"
    assert data["response_metadata"]["messages"] == [
        "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"
    ]
    assert slack.calls == []


# --- what Liaison renders fits, whatever it holds ------------------------------------------


def options(count: int) -> tuple[Option, ...]:
    return tuple(Option(f"v{n}", f"Option {n} " + "o" * 100) for n in range(count))


def huge_card() -> Card:
    return Card(
        title="T" * 5000,
        text="x" * 50_000,
        fields=tuple(Fact(f"Field {n}", "v" * 1500) for n in range(120)),
        context="c" * 5000,
        buttons=tuple(Button("B" * 100, f"b.{n}", f"n={n}") for n in range(40)),
        selects=(Select("Pick", "pick", options(150)), Select("More", "more", options(3))),
    )


async def test_a_card_of_any_size_is_posted_within_the_limits(slack: SlackStandIn) -> None:
    """Slack refuses the whole message when one limit is passed; the renderer splits the
    fields over sections and the buttons over actions blocks, and trims what cannot fit."""
    card = huge_card()
    blocks = card_blocks(card)
    assert block_errors(blocks) == []
    posted = await client(slack).chat_postMessage(channel="C1", text=card.summary, blocks=blocks)
    assert posted["ok"]
    actions = [b for b in blocks if b["type"] == "actions"]
    assert [len(b["elements"]) for b in actions] == [25, 17]
    assert len({b["block_id"] for b in actions}) == 2
    assert len(actions[-1]["elements"][-2]["options"]) == 100
    sections = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section")
    assert "*Field 0*" in sections and "more" in sections.splitlines()[-1]
    small = Card(title="t", fields=tuple(Fact(f"F{n}", "v" * 150) for n in range(25)))
    lines = "\n".join(b["text"]["text"] for b in card_blocks(small) if b["type"] == "section")
    assert all(f"*F{n}*: {'v' * 150}" in lines for n in range(25))


async def test_forms_and_reports_of_any_size_fit(slack: SlackStandIn) -> None:
    form = Form(
        "big",
        "A title far longer than twenty-four characters",
        (
            Input("pick", "P" * 3000, InputKind.select, options=options(150)),
            Input("many", "M", InputKind.multiselect, options=options(120), initial=("v110",)),
            Input("text", "T", InputKind.multiline, placeholder="p" * 500),
        ),
        intro="i" * 5000,
        submit_label="A submit label longer than 24",
    )
    view = modal(form, metadata={"nonce": "n"})
    assert view_errors(view) == []
    assert (await client(slack).views_open(trigger_id=slack.trigger_id(), view=view))["ok"]
    report = Report(
        title="R" * 400,
        intro="i" * 4000,
        sections=tuple(
            Section(f"Part {n}", lines=("l" * 500,) * 20, facts=(Fact("f", "v" * 2000),))
            for n in range(60)
        ),
        footer="f" * 4000,
    )
    assert block_errors(report_blocks(report)) == []


async def test_the_pace_refuses_posts_faster_than_one_a_second_per_conversation() -> None:
    """With a pace, a conversation takes a burst of 3 posts, then 1 a second; an over-limit
    post is Slack's 429 `ratelimited` with Retry-After, is not posted, and is counted; another
    conversation has its own allowance."""
    slack = await SlackStandIn(pace=Pace(burst=3)).start()
    try:
        web = client(slack)
        for _ in range(3):
            await web.chat_postMessage(channel="C1", text="hi")
        with pytest.raises(SlackApiError) as refused:
            await web.chat_postMessage(channel="C1", text="one too many")
        assert refused.value.response.status_code == 429
        assert refused.value.response.data["error"] == "ratelimited"
        assert int(refused.value.response.headers["Retry-After"]) >= 1
        await web.chat_postMessage(channel="C2", text="elsewhere")
        assert slack.over_limit == 1
        assert [m["text"] for m in slack.posted_in("C1")] == ["hi"] * 3
    finally:
        await slack.stop()


def test_the_pace_refills_one_post_a_second() -> None:
    pace = Pace(burst=3)
    assert [pace.take("D1", 0.0) for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert pace.take("D1", 0.5) == pytest.approx(0.5)  # half a token back after 0.5 s
    assert pace.take("D1", 1.0) == 0.0
    assert pace.take("D1", 1.0) > 0
    assert [pace.take("D1", 11.0) for _ in range(4)][3] > 0  # never more than the burst


async def test_a_storm_refuses_posts_whatever_the_pace() -> None:
    """Every post in a storm window, and a seeded share outside, answers 429; a handoff card
    (outbox key `handoff:<lead>` in its metadata) is counted per conversation and lead."""
    slack = await SlackStandIn(storm=Storm(fraction=0.0, every=60.0, lasting=30.0)).start()
    try:
        web = client(slack)
        metadata = {"event_type": "liaison_outbox", "event_payload": {"key": "handoff:7"}}
        with pytest.raises(SlackApiError) as refused:
            await web.chat_postMessage(channel="U1", text="card", metadata=metadata)
        assert refused.value.response.status_code == 429
        assert slack.stormed == 1 and not slack.handoffs
        slack.storm = None
        await web.chat_postMessage(channel="U1", text="card", metadata=metadata)
        await web.chat_postMessage(channel="U1", text="not a card")
        assert slack.handoffs == {("D1", 7): 1}
    finally:
        await slack.stop()
    share = Storm(fraction=0.25, seed=3)
    struck = sum(share.strikes(0.0) for _ in range(4000))
    assert 800 < struck < 1200
