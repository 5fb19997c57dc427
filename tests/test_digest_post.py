"""The Monday digest as scheduled work: `liaison tick --at` as real processes post it once,
with its chart, into a Slack channel (Web API stand-in) and a Teams channel (connector
stand-in); members who opted in get their own week privately; `liaison digest` prints it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select

from bot.core.delivery import Deliverer
from bot.core.messages import Card, card_to_dict
from bot.outbox.sender import MAX_ATTEMPTS, Sender
from bot.slack.app import SlackMessenger
from bot.web.server import platform_messengers
from digests.digest import Week
from digests.weekly import digest_message
from storage import campaigns
from storage import leads as stored_leads
from storage import members as stored_members
from storage import outbox as stored_outbox
from storage.db import Store
from storage.models import DigestRun, Lead, LeadState, OutboxMessage
from storage.values import NewMessage
from tests.blockkit import block_errors
from tests.slack_standin import SlackStandIn
from tests.support import make_settings
from tests.teams_standin import Person, TeamsStandIn
from tests.test_teams_clocks import card_text, meet_the_bot

REPO = Path(__file__).parent.parent
MONDAY_0830 = datetime(2026, 11, 30, 8, 30, tzinfo=UTC)  # 08:30 in London, after W48
ALICE = Person("alice", "Alice", "Adams", "x.com")


def week_of_history(store: Store, alice_slack: str | None = None) -> None:
    """Three leads in W48: two accepted, one not a fit; Alice opted in to her own week."""
    with store.session() as s:
        alice = stored_members.upsert_member(
            s, now=MONDAY_0830, email=ALICE.email, name="Alice Adams", timezone="Europe/London"
        )
        alice.weekly_digest = True
        alice.slack_user_id = alice_slack
        s.add(alice)
        campaign = campaigns.ensure_campaign(s, name="Webinar")
        for n, accepted in enumerate([True, True, False]):
            created = datetime(2026, 11, 24 + n, 10, tzinfo=UTC)
            lead = Lead(
                source="t",
                external_id=f"L{n}",
                name=f"Lead {n}",
                campaign_id=campaign.id,
                owner_id=alice.id,
                definition_id=1,
                state=(LeadState.accepted if accepted else LeadState.not_a_fit).value,
                created_at=created,
                handed_off_at=created,
            )
            s.add(lead)
            s.flush()
            stored_leads.record_verdict(
                s,
                lead=lead,
                member_id=alice.id,
                now=created + timedelta(hours=1),
                accepted=accepted,
                reasons=() if accepted else (("budget", "Budget confirmed or likely"),),
            )


async def liaison(store: Store, *args: str, code: int = 0, **env: str) -> str:
    """`liaison ARGS` as a real process against `store`, with the given settings; it must
    exit with `code`."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LIAISON_", "SLACK_", "MICROSOFT_"))
    }
    clean.update(LIAISON_DATABASE_URL=str(store.engine.url), LIAISON_TIMEZONE="Europe/London")
    clean.update(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from app import main; main()",
        *args,
        env=clean,
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == code, output.decode()
    return output.decode()


def slack_env(slack: SlackStandIn) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_API_URL": slack.api_url,
        "LIAISON_DIGEST_CHANNEL": "slack:C0DIGEST",
    }


def digests_in(slack: SlackStandIn) -> list[dict[str, object]]:
    return [p for p in slack.of("chat.postMessage") if p["channel"] == "C0DIGEST"]


async def test_the_monday_post_lands_once_in_slack_with_its_chart(
    any_store: Store, slack: SlackStandIn
) -> None:
    week_of_history(any_store, alice_slack="U0ALICE")
    env = slack_env(slack)
    await liaison(
        any_store, "tick", "--at", (MONDAY_0830 - timedelta(minutes=1)).isoformat(), **env
    )
    assert digests_in(slack) == []
    # Two instances tick at the same moment, then again at 09:05: one post.
    await asyncio.gather(
        liaison(any_store, "tick", "--at", MONDAY_0830.isoformat(), **env),
        liaison(any_store, "tick", "--at", MONDAY_0830.isoformat(), **env),
    )
    await liaison(
        any_store, "tick", "--at", (MONDAY_0830 + timedelta(minutes=35)).isoformat(), **env
    )
    (post,) = digests_in(slack)
    blocks = json.loads(post["blocks"]) if isinstance(post["blocks"], str) else post["blocks"]
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"] == "Weekly alignment digest · 2026-W48 (23 Nov–29 Nov 2026)"
    text = json.dumps(blocks)
    assert "*Acceptance rate*: 67% against 60%: met" in text
    assert "Alice" not in text  # team figures only
    (chart,) = slack.files.values()
    assert chart["channel"] == "C0DIGEST" and chart["bytes"].startswith(b"\x89PNG")
    # Alice asked for her own week: one private note in her DM, once her day began (09:00).
    notes = [p for p in slack.of("chat.postMessage") if p["channel"] == "U0ALICE"]
    assert [n["text"] for n in notes] == ["Your week · 2026-W48 (23 Nov–29 Nov 2026)"]
    assert "2 accepted, 1 not a fit" in json.dumps(notes[0]["blocks"])
    with any_store.session() as s:
        (run,) = s.exec(select(DigestRun)).all()
        assert (run.week, run.status, run.target) == ("2026-W48", "posted", "slack:C0DIGEST")


async def test_the_monday_post_lands_once_in_a_teams_channel(tmp_path: Path) -> None:
    standin = await TeamsStandIn().start()
    try:
        url = f"sqlite:///{tmp_path / 'digest.db'}"
        store = Store.open(url)
        week_of_history(store)
        # Alice meets the bot: the server learns (and stores) where Teams reaches it.
        standin.add_member(
            ALICE.user_id, ALICE.given, ALICE.surname, ALICE.email, {}, ALICE.conversation
        )
        standin.add_conversation("19:digest@thread.tacv2")  # the bot is installed there
        await meet_the_bot(url, standin, [ALICE])
        standin.calls.clear()
        env = {
            "LIAISON_DIGEST_CHANNEL": "teams:19:digest@thread.tacv2",
            "LIAISON_TEAMS_EMULATOR": "1",  # Teams is on only when configured
        }
        for minutes in (0, 0, 35):
            await liaison(
                store, "tick", "--at", (MONDAY_0830 + timedelta(minutes=minutes)).isoformat(), **env
            )
        (post,) = standin.of("send", "19:digest@thread.tacv2")
        body = post.card["body"]
        assert "Weekly alignment digest · 2026-W48" in card_text(post.card)
        images = [e for e in body if e["type"] == "Image"]
        assert len(images) == 1 and images[0]["url"].startswith("data:image/png;base64,")
        (note,) = standin.of("send", ALICE.conversation)  # her own week, privately
        assert "Your week · 2026-W48" in card_text(note.card)
        store.engine.dispose()
    finally:
        await standin.stop()


async def test_no_digest_channel_is_said_not_hidden(sqlite_store: Store) -> None:
    week_of_history(sqlite_store)
    output = await liaison(sqlite_store, "digest", "--week", "2026-W48", "--post", code=2)
    assert "No digest channel" in output
    with sqlite_store.session() as s:
        assert s.exec(select(OutboxMessage)).all() == []


async def test_liaison_digest_prints_every_format(sqlite_store: Store) -> None:
    week_of_history(sqlite_store)
    text = await liaison(sqlite_store, "digest", "--week", "2026-W48")
    assert text.startswith("Weekly alignment digest · 2026-W48")
    data = json.loads(
        await liaison(sqlite_store, "digest", "--week", "2026-W48", "--format", "json")
    )
    assert data["week"] == "2026-W48" and data["funnel"]["accepted"] == 2
    assert data["marketing"]["acceptance_rate"]["target"] == 0.6
    assert set(data) >= {"funnel", "marketing", "sales", "conversion", "trend", "agenda"}
    slack = json.loads(
        await liaison(sqlite_store, "digest", "--week", "2026-W48", "--format", "slack")
    )
    assert len(slack["blocks"]) <= 50 and block_errors(slack["blocks"]) == []
    teams = json.loads(
        await liaison(sqlite_store, "digest", "--week", "2026-W48", "--format", "teams")
    )
    assert teams["content"]["type"] == "AdaptiveCard"
    html = await liaison(sqlite_store, "digest", "--week", "2026-W48", "--format", "html")
    assert html.startswith("<!doctype html>") and "<h2>Agenda for the weekly sync</h2>" in html
    markdown = await liaison(sqlite_store, "digest", "--week", "2026-W48", "--format", "markdown")
    assert markdown.startswith("# Weekly alignment digest")


# --- a digest is two parts: the message, then its chart -------------------------------------


def owe_the_digest(store: Store) -> None:
    """W48's digest owed to the Slack digest channel, as the Monday tick owes it."""
    with store.session() as s:
        week = Week.of("2026-W48", "Europe/London")
        message = digest_message(s, week, target="slack:C0DIGEST", now=MONDAY_0830)
        assert stored_outbox.enqueue_many(s, messages=[message]) == ["digest:2026-W48"]


async def send_until(
    store: Store, slack: SlackStandIn, passes: int, start: datetime = MONDAY_0830
) -> OutboxMessage:
    """`passes` outbox passes a quarter of an hour apart (each a fresh sender, as each
    `liaison tick` is), through the real Slack adapter; the digest's row afterwards."""
    settings = make_settings(
        str(store.engine.url), SLACK_BOT_TOKEN=slack.token, SLACK_API_URL=slack.api_url
    )
    for n in range(passes):
        deliverer = Deliverer(store, [SlackMessenger.from_settings(settings, store)])
        await Sender(store, deliverer, owner=f"tick-{n}").drain(start + timedelta(minutes=15 * n))
    with store.session() as s:
        return s.exec(select(OutboxMessage).where(OutboxMessage.key == "digest:2026-W48")).one()


async def test_a_failed_chart_upload_is_retried_alone(
    any_store: Store, slack: SlackStandIn
) -> None:
    week_of_history(any_store)
    owe_the_digest(any_store)
    slack.fail("files.getUploadURLExternal", times=2)
    row = await send_until(any_store, slack, passes=4)
    assert len(digests_in(slack)) == 1  # posted once, never again for the chart
    (chart,) = slack.files.values()
    assert chart["channel"] == "C0DIGEST" and chart["bytes"].startswith(b"\x89PNG")
    assert len(slack.of("files.completeUploadExternal")) == 1
    assert (row.status, row.attempts) == ("sent", 2)
    assert list(row.parts_done or {}) == ["slack"]  # the chart, last, is the row's `sent`
    assert row.message_id == (row.parts_done or {})["slack"]["message_id"]


async def test_a_throttled_chart_upload_is_waited_out_in_its_lane_and_sent_alone(
    any_store: Store, slack: SlackStandIn
) -> None:
    """Slack answers the chart's upload 429: the lane waits out `Retry-After` with the
    digest still claimed and sends only the chart again, in the same pass."""
    week_of_history(any_store)
    owe_the_digest(any_store)
    slack.throttle("files.getUploadURLExternal", times=1, retry_after=1)
    row = await send_until(any_store, slack, passes=1)
    assert len(digests_in(slack)) == 1  # posted once, not again for the chart
    assert len(slack.files) == 1
    assert len(slack.of("files.completeUploadExternal")) == 1
    assert (row.status, row.attempts) == ("sent", 0)
    assert list(row.parts_done or {}) == ["slack"]


async def test_a_chart_that_never_uploads_leaves_the_digest_posted_once(
    any_store: Store, slack: SlackStandIn
) -> None:
    """Slack without `files:write` (the manifest before issue 10): every upload is
    `missing_scope`. The message stays, posted once; the chart's failure is in
    `liaison outbox`; once the scope is granted, `liaison outbox retry` sends the chart."""
    week_of_history(any_store)
    owe_the_digest(any_store)
    slack.scopes = slack.scopes - {"files:write"}
    row = await send_until(any_store, slack, passes=MAX_ATTEMPTS + 2)
    assert len(digests_in(slack)) == 1
    assert slack.files == {}
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    assert list(row.parts_done or {}) == ["slack"]
    assert row.last_error and row.last_error.startswith("slack:chart part: SlackApiError")
    assert "missing_scope" in row.last_error
    listing = await liaison(any_store, "outbox", COLUMNS="250")
    assert "digest:2026-W48" in listing and "slack:chart part" in listing
    assert "missing_scope" in listing

    slack.scopes = slack.scopes | {"files:write"}
    await liaison(any_store, "outbox", "retry")  # back in line from the wall clock's now
    row = await send_until(any_store, slack, passes=1, start=datetime.now(UTC) + timedelta(1))
    assert len(digests_in(slack)) == 1
    assert len(slack.files) == 1 and row.status == "sent"


async def test_a_dm_on_two_platforms_is_retried_only_where_it_failed(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    """Alice is on Slack and Teams; Teams refuses twice: her Slack DM goes once."""
    teams = await TeamsStandIn().start()
    try:
        url = f"sqlite:///{tmp_path / 'both.db'}"
        store = Store.open(url)
        teams.add_member(
            ALICE.user_id, ALICE.given, ALICE.surname, ALICE.email, {}, ALICE.conversation
        )
        await meet_the_bot(url, teams, [ALICE])
        with store.session() as s:
            alice = stored_members.member_by(s, email=ALICE.email)
            assert alice is not None and alice.teams_reference is not None
            alice.slack_user_id = "U0ALICE"
            s.add(alice)
            stored_outbox.enqueue_many(
                s,
                messages=[
                    NewMessage(
                        key="hello-alice",
                        member_id=alice.id,
                        card=card_to_dict(Card(title="Hello")),
                        not_before=MONDAY_0830,
                        created_at=MONDAY_0830,
                    )
                ],
            )
        teams.fail_sends(2, status=500)
        settings = make_settings(
            url,
            SLACK_BOT_TOKEN=slack.token,
            SLACK_API_URL=slack.api_url,
            MICROSOFT_APP_ID="",
            LIAISON_TEAMS_EMULATOR="1",
        )
        for n in range(4):
            deliverer = Deliverer(store, platform_messengers(settings, store))
            await Sender(store, deliverer, owner=f"tick-{n}").drain(
                MONDAY_0830 + timedelta(minutes=15 * n)
            )
        assert [p["channel"] for p in slack.of("chat.postMessage")] == ["U0ALICE"]
        assert len(teams.of("send", ALICE.conversation)) == 1
        with store.session() as s:
            row = s.exec(select(OutboxMessage)).one()
            assert (row.status, row.attempts) == ("sent", 2)
            assert list(row.parts_done or {}) == ["slack"]
        store.engine.dispose()
    finally:
        await teams.stop()
