"""Field feedback end to end in Slack: `/feedback` over signed HTTP into the real Bolt app,
the modal captured from `views.open`, `view_submission`s built from it, DMs at the Web API
stand-in, a rep's Answer and its edit, and the summary from `liaison tick --at` (a real
process) after the deadline, or from `/feedback close`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from storage import campaigns, members
from storage import feedback as records
from storage.models import FeedbackAnswer, FeedbackRequest
from tests.slack_standin import SlackStandIn
from tests.support import LiveServer, eventually, fixture, slack_settings
from tests.test_slack import interact, post_slack, posted_cards, press, text_of
from tests.test_slack import submit as view_submission

REPO = Path(__file__).parent.parent


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await SlackStandIn().start()
    for user, name in (
        ("U0CAROL", "Carol Chen"),
        ("U0ALICE", "Alice Adams"),
        ("U0BOB", "Bob Brown"),
        ("U0DAVE", "Dave Davis"),
    ):
        standin.add_user(user, name, f"{name.split()[0].lower()}@example.com")
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
    with live.store.session() as s:
        for user, name, role in (
            ("U0CAROL", "Carol Chen", "marketer"),
            ("U0ALICE", "Alice Adams", "rep"),
            ("U0BOB", "Bob Brown", "rep"),
        ):
            members.upsert_member(
                s,
                now=now,
                email=f"{name.split()[0].lower()}@example.com",
                name=name,
                role=role,
                slack_user_id=user,
                timezone="Europe/London",
            )
        campaigns.ensure_campaign(s, name="Webinar")
    yield live
    await live.stop()


def in_three_days() -> str:
    return (datetime.now(ZoneInfo("Europe/London")).date() + timedelta(days=3)).isoformat()


async def slash(
    server: LiveServer, slack: SlackStandIn, user: str, text: str = ""
) -> dict[str, Any] | None:
    """`user` types `/feedback text`; returns the modal it opened, if any."""
    opened = len(slack.of("views.open"))
    form = fixture("slack", "slash_command")
    form.update(
        command="/feedback",
        text=text,
        user_id=user,
        user_name=user.lower(),
        trigger_id=slack.trigger_id(),
        response_url=slack.response_url(f"{user}-{len(slack.calls)}"),
    )
    status, _ = await post_slack(
        server, urlencode(form).encode(), "application/x-www-form-urlencoded"
    )
    assert status == 200
    await server.settle()
    views = slack.of("views.open")
    return views[-1]["view"] if len(views) > opened else None


def state(view: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """What Slack submits for the modal's inputs: the given values, else what the modal was
    opened with (an untouched pre-filled input is submitted as it is)."""
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        name, element = block["block_id"], block["element"]
        if element["type"] == "plain_text_input":
            value = given.get(name, element.get("initial_value"))
            values[name] = {name: {"type": "plain_text_input", "value": value}}
        elif element["type"] == "static_select":
            wanted = given.get(name, (element.get("initial_option") or {}).get("value"))
            chosen = next((o for o in element["options"] if o["value"] == wanted), None)
            values[name] = {name: {"type": "static_select", "selected_option": chosen}}
        elif element["type"] == "datepicker":
            date = given.get(name, element.get("initial_date"))
            values[name] = {name: {"type": "datepicker", "selected_date": date}}
    return values


async def send(
    server: LiveServer, user: str, view: dict[str, Any], given: dict[str, str]
) -> dict[str, Any] | None:
    """Submit the modal; the errors Slack would show under the inputs, or None if accepted."""
    status, text = await interact(server, view_submission(user, view, state(view, given)))
    assert status == 200
    if not text:
        return None
    answer: dict[str, Any] = json.loads(text)
    assert answer["response_action"] == "errors"
    errors: dict[str, Any] = answer["errors"]
    return errors


def campaign_option(view: dict[str, Any], name: str) -> str:
    block = next(b for b in view["blocks"] if b.get("block_id") == "campaign")
    return str(next(o["value"] for o in block["element"]["options"] if o["text"]["text"] == name))


REQUEST = {
    "about": "campaign",
    "subject": "The webinar follow-up deck",
    "link": "https://example.com/deck",
    "q1": "How useful is the deck with buyers?",
    "q1_kind": "rating",
    "q2": "Would you send it again?",
    "q2_kind": "choice",
    "q2_options": "Yes, No, Not sure",
    "q3": "What did buyers say about it?",
    "audience": "all",
}


def feedback_cards(slack: SlackStandIn, user: str) -> list[dict[str, Any]]:
    return [c for c in posted_cards(slack, user) if "asks for your feedback" in c["text"]]


async def tick(server: LiveServer, slack: SlackStandIn, at: datetime) -> str:
    env = dict(
        os.environ,
        LIAISON_DATABASE_URL=server.settings.database_url,
        SLACK_BOT_TOKEN=slack.token,
        SLACK_API_URL=slack.api_url,
        LIAISON_WORK_HOURS="00:00-24:00",
        LIAISON_WORKDAYS="mon-sun",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from app import main; main()",
        "tick",
        "--at",
        at.isoformat(),
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, output.decode()
    return output.decode()


async def test_the_feedback_loop_in_slack(server: LiveServer, slack: SlackStandIn) -> None:
    # Carol (a marketer) types /feedback: a modal.
    view = await slash(server, slack, "U0CAROL")
    assert view is not None and view["callback_id"] == "feedback.request"
    blocks = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert blocks["deadline"]["element"]["type"] == "datepicker"
    assert blocks["q1"]["element"]["max_length"] == 300
    assert [o["text"]["text"] for o in blocks["audience"]["element"]["options"]] == [
        "All reps (2)",
        "The reps who handled the campaign's leads",
    ]
    good = dict(REQUEST, campaign=campaign_option(view, "Webinar"), deadline=in_three_days())

    # Bad input comes back under the inputs, and nothing is stored or sent.
    eleven = ", ".join(f"choice {n}" for n in range(11))
    errors = await send(server, "U0CAROL", view, dict(good, q2_options=eleven))
    assert errors is not None and "there are 11" in errors["q2_options"]
    errors = await send(server, "U0CAROL", view, dict(good, q2_options="Yes, " + "n" * 76))
    assert errors is not None and "longer than 75 characters" in errors["q2_options"]
    errors = await send(server, "U0CAROL", view, dict(good, q1="", q2="", q3="", q2_options=""))
    assert errors is not None and errors["q1"] == "Ask at least one question."
    errors = await send(server, "U0CAROL", view, dict(good, deadline="2020-01-06"))
    assert errors is not None and "2020-01-06 is in the past" in errors["deadline"]
    errors = await send(server, "U0CAROL", view, dict(good, subject="s" * 201, q1="q" * 301))
    assert errors is not None and set(errors) == {"subject", "q1"}
    with server.store.session() as s:
        assert records.requests_of(s, requester_id=1) == []
    assert not feedback_cards(slack, "U0ALICE")

    # The good submit: both reps get a DM with the questions and an Answer button.
    assert await send(server, "U0CAROL", view, good) is None
    alice_card = (await eventually(lambda: feedback_cards(slack, "U0ALICE")))[-1]
    bob_card = (await eventually(lambda: feedback_cards(slack, "U0BOB")))[-1]
    assert "Carol Chen asks for your feedback: The webinar follow-up deck" in text_of(alice_card)
    assert "Would you send it again? (one of: Yes / No / Not sure)" in text_of(alice_card)
    buttons = [e for b in alice_card["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [(e["text"]["text"], e["action_id"]) for e in buttons] == [("Answer", "feedback.answer")]
    # Carol's confirmation is private: in her DM with Liaison (a modal has no channel).
    (confirmation,) = posted_cards(slack, "U0CAROL")
    assert "It went to 2 people (all reps)" in text_of(confirmation)
    # The same submission again (a Slack retry) asks nobody twice.
    assert await send(server, "U0CAROL", view, good) is None
    assert len(feedback_cards(slack, "U0ALICE")) == 1

    # Alice answers in a modal, then edits her answers: the modal comes pre-filled.
    await interact(server, press(slack, "U0ALICE", alice_card, "feedback.answer"))
    answer_view = slack.of("views.open")[-1]["view"]
    assert answer_view["callback_id"] == "feedback.answer"
    first = {"a1": "4", "a2": "Yes", "a3": "They asked for the pricing page"}
    errors = await send(server, "U0ALICE", answer_view, dict(first, a3=""))
    assert errors == {"a3": "Please write an answer."}
    assert await send(server, "U0ALICE", answer_view, first) is None
    # The answer to a modal goes to the person's DM with Liaison (Slack opens it by user id).
    thanks = [m for m in slack.of("chat.postMessage") if m["channel"] == "U0ALICE"]
    assert "your answers are saved" in text_of(thanks[-1])
    await interact(server, press(slack, "U0ALICE", alice_card, "feedback.answer"))
    edit_view = slack.of("views.open")[-1]["view"]
    prefilled = {b["block_id"]: b["element"] for b in edit_view["blocks"] if b["type"] == "input"}
    assert prefilled["a1"]["initial_option"]["value"] == "4"
    assert prefilled["a2"]["initial_option"]["value"] == "Yes"
    assert prefilled["a3"]["initial_value"] == "They asked for the pricing page"
    assert await send(server, "U0ALICE", edit_view, {"a1": "2"}) is None  # the rest as it was
    assert "Your answers are updated" in text_of(slack.of("chat.postMessage")[-1])
    with server.store.session() as s:
        assert records.answers_of(s, request_id=1, member_id=2) == {
            1: "2",
            2: "Yes",
            3: "They asked for the pricing page",
        }
    # Nothing reached Carol per answer: non-blocking, no noise.
    assert posted_cards(slack, "U0CAROL") == [confirmation]

    # A rep may not ask; the refusal says why and offers what waits for him.
    assert await slash(server, slack, "U0BOB") is None
    refusal = slack.of("response_url")[-1]
    assert refusal["response_type"] == "ephemeral"
    assert "you are a rep" in text_of(refusal) and "Answer #1" in text_of(refusal)
    # Someone who was not asked cannot answer, even with another's button.
    await interact(server, press(slack, "U0DAVE", alice_card, "feedback.answer"))
    assert "you were not among them" in text_of(slack.of("response_url")[-1])
    # Carol's live view, privately.
    await slash(server, slack, "U0CAROL", "1")
    live = slack.of("response_url")[-1]
    assert "1 of 2 answered (50%)" in text_of(live) and live["response_type"] == "ephemeral"

    # After the deadline, `liaison tick` closes it and Carol gets the summary in her DM.
    with server.store.session() as s:
        request = s.get(FeedbackRequest, 1)
        assert request is not None
        deadline = request.deadline
    output = await tick(server, slack, deadline + timedelta(minutes=1))
    assert "1 messages owed; 1 sent" in output
    _, summary = posted_cards(slack, "U0CAROL")
    body = text_of(summary)
    assert summary["text"] == "Feedback summary #1: The webinar follow-up deck"
    assert "1 of 2 answered (50%)" in body
    assert "1: 0 · 2: 1 · 3: 0 · 4: 0 · 5: 0 · mean 2.0 of 5 (1 answer)" in body
    assert "Yes: 1 · No: 0 · Not sure: 0 (1 answer)" in body
    assert "“They asked for the pricing page”" in body and "Alice" not in body
    # A second pass sends nothing more; Bob's late answer is refused politely.
    await tick(server, slack, deadline + timedelta(hours=1))
    assert len(posted_cards(slack, "U0CAROL")) == 2
    await interact(server, press(slack, "U0BOB", bob_card, "feedback.answer"))
    assert "This request closed on" in text_of(slack.of("response_url")[-1])
    with server.store.session() as s:
        assert len(s.exec(select(FeedbackAnswer)).all()) == 3


async def test_close_and_list_from_slack(server: LiveServer, slack: SlackStandIn) -> None:
    view = await slash(server, slack, "U0CAROL")
    assert view is not None
    subject = "Pricing talk track <!here> & <@U0BOB>"
    given = dict(REQUEST, about="message", subject=subject, campaign="", deadline=in_three_days())
    given.update(q2="", q2_kind="text", q2_options="", q3="")
    assert await send(server, "U0CAROL", view, given) is None
    (card,) = await eventually(lambda: feedback_cards(slack, "U0BOB"))
    # What the requester typed is shown, never acted on: no ping, no fake mention.
    blocks = json.dumps(card["blocks"])
    assert "Pricing talk track &lt;!here&gt; &amp; &lt;@U0BOB&gt;" in blocks
    assert "<!here>" not in blocks and "<@U0BOB>" not in blocks

    await slash(server, slack, "U0CAROL", "list")
    listed = text_of(slack.of("response_url")[-1])
    assert "#1 Pricing talk track" in listed and "0 of 2 answered" in listed
    await slash(server, slack, "U0ALICE", "close 1")
    assert "Only Carol Chen, who asked for this feedback" in text_of(slack.of("response_url")[-1])
    await slash(server, slack, "U0CAROL", "close 1")
    assert "Request #1 is closed" in text_of(slack.of("response_url")[-1])
    _, summary = posted_cards(slack, "U0CAROL")  # the confirmation, then the summary
    assert "0 of 2 answered (0%)" in text_of(summary) and "No answers." in text_of(summary)
    await slash(server, slack, "U0CAROL", "close 1")
    assert "closed on" in text_of(slack.of("response_url")[-1])
    assert len(posted_cards(slack, "U0CAROL")) == 2  # the confirmation and one summary
