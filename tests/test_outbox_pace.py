"""Delivery at the platforms' pace: each conversation within Slack's (a burst of 3, then
one a second), conversations side by side, a 429 slowing only what it must, and delivery's
own threads and connections.

Cards go through the real SlackMessenger (slack_sdk over HTTP) to the Slack stand-in, which
answers a post over the pace 429 and counts it (`over_limit`). Assertions are on counts and
order at the stand-in, and on lower bounds the pace guarantees, never on how fast a busy
machine is."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk.errors import SlackApiError
from sqlmodel import col, select

from bot.core import pacing
from bot.core.business_time import Company, parse_hours, parse_workdays
from bot.core.delivery import Deliverer
from bot.core.messages import Card, card_to_dict
from bot.outbox.sender import HOLD_THROTTLED, Sender
from bot.slack.app import SlackMessenger, make_client
from bot.slack.client import Throttled
from digests.scheduler import Scheduler
from storage import members, outbox
from storage.db import Store
from storage.models import OutboxMessage
from tests.slack_standin import Pace, SlackStandIn
from tests.support import make_settings

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
ALWAYS = Company("UTC", *parse_hours("00:00-24:00"), parse_workdays("mon-sun"))


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await SlackStandIn(pace=Pace()).start()
    yield standin
    await standin.stop()


def deliverer(store: Store, slack: SlackStandIn) -> Deliverer:
    settings = make_settings(
        str(store.engine.url), SLACK_BOT_TOKEN=slack.token, SLACK_API_URL=slack.api_url
    )
    messenger = SlackMessenger.from_settings(settings, store)
    return Deliverer(store, [messenger], [messenger])


def write_to_outbox(store: Store, reps: int, each: int, at: datetime = NOW) -> None:
    """`each` cards to every one of `reps` reps on Slack, owed rep after rep."""
    with store.session() as s:
        for r in range(reps):
            member = members.upsert_member(
                s, now=at, email=f"rep{r}@x.com", name=f"Rep {r}", slack_user_id=f"U0R{r:03d}"
            )
            s.flush()
            for n in range(each):
                outbox.enqueue(
                    s,
                    message=OutboxMessage(
                        key=f"card:{r}:{n}",
                        member_id=member.id,
                        card=card_to_dict(Card(title=f"{r}:{n}")),
                        not_before=at,
                        created_at=at,
                    ),
                )


def arrivals(slack: SlackStandIn, user: str) -> list[tuple[str, float]]:
    return [
        (str(c.params["text"]), c.at)
        for c in slack.calls
        if c.method == "chat.postMessage" and c.params["channel"] == user
    ]


async def test_a_conversation_gets_a_burst_of_three_then_one_a_second(
    sqlite_store: Store, slack: SlackStandIn
) -> None:
    write_to_outbox(sqlite_store, reps=1, each=6)
    report = await Sender(sqlite_store, deliverer(sqlite_store, slack), "a").drain(NOW)
    assert report.sent == 6
    assert slack.over_limit == 0
    got = arrivals(slack, "U0R000")
    assert [text for text, _ in got] == [f"0:{n}" for n in range(6)]  # in order, once each
    at = [t for _, t in got]
    # Three at once, then each a second after the one before: the fourth no sooner than
    # a second after the first, the sixth three seconds after it.
    assert at[3] - at[0] >= 1.0
    assert at[5] - at[0] >= 3.0


async def test_many_conversations_are_served_side_by_side(
    any_store: Store, slack: SlackStandIn
) -> None:
    write_to_outbox(any_store, reps=50, each=6)
    report = await Sender(any_store, deliverer(any_store, slack), "a").drain(NOW)
    assert report.sent == 300
    assert slack.over_limit == 0
    posts = Counter(str(c.params["text"]) for c in slack.calls if c.method == "chat.postMessage")
    assert len(posts) == 300 and set(posts.values()) == {1}  # every card, once
    firsts, sixths = [], []
    for r in range(50):
        got = arrivals(slack, f"U0R{r:03d}")
        assert [text for text, _ in got] == [f"{r}:{n}" for n in range(6)]
        firsts.append(got[0][1])
        sixths.append(got[5][1])
    # Side by side: every rep has their first card before anyone has a sixth (which waits
    # three seconds behind its own first), not one rep's six after another's.
    assert max(firsts) < min(sixths)


async def test_a_429_on_one_conversation_holds_back_only_that_one(
    any_store: Store, slack: SlackStandIn
) -> None:
    write_to_outbox(any_store, reps=2, each=3)
    slack.throttle_channel("U0R000", times=1, retry_after=2)
    sender = Sender(any_store, deliverer(any_store, slack), "a")
    report = await sender.drain(NOW)
    # The throttled lane waited out Slack's Retry-After with its claim kept and sent all
    # three, in order, once, in the same drain: nothing was given back to claim again.
    assert [text for text, _ in arrivals(slack, "U0R000")] == ["0:0", "0:1", "0:2"]
    assert [text for text, _ in arrivals(slack, "U0R001")] == ["1:0", "1:1", "1:2"]
    assert len(slack.refused) == 1  # asked once to wait, not hammered meanwhile
    refused_at = slack.refused[0].at
    assert arrivals(slack, "U0R000")[0][1] - refused_at >= 2.0
    # The other conversation did not wait for it: its burst went out meanwhile.
    assert max(t for _, t in arrivals(slack, "U0R001")) < refused_at + 2.0
    assert (report.sent, report.retried) == (6, 1)
    with any_store.session() as s:
        rows = s.exec(select(OutboxMessage)).all()
    assert {(m.status, m.attempts) for m in rows} == {("sent", 0)}
    assert slack.over_limit == 0


async def test_a_long_retry_after_gives_the_conversation_back_in_order(
    any_store: Store, slack: SlackStandIn
) -> None:
    """A Retry-After longer than a lane keeps its claim for: the lane gives its messages
    back, in order, for when the platform's wait has passed."""
    write_to_outbox(any_store, reps=2, each=3)
    wait = int(HOLD_THROTTLED.total_seconds()) + 5
    slack.throttle_channel("U0R000", times=1, retry_after=wait)
    sender = Sender(any_store, deliverer(any_store, slack), "a")
    first = await sender.drain(NOW)
    assert [text for text, _ in arrivals(slack, "U0R001")] == ["1:0", "1:1", "1:2"]
    assert arrivals(slack, "U0R000") == []
    assert len(slack.refused) == 1
    with any_store.session() as s:
        held = s.exec(
            select(OutboxMessage).where(col(OutboxMessage.key).startswith("card:0:"))
        ).all()
    assert {m.status for m in held} == {"pending"}
    # All three back in line, in order, for when Slack's Retry-After has passed; the 429
    # is not an attempt.
    assert sorted(m.key for m in held) == ["card:0:0", "card:0:1", "card:0:2"]
    assert all(m.not_before >= NOW + timedelta(seconds=wait) and m.attempts == 0 for m in held)
    assert all(m.claimed_until is None and m.sending_since is None for m in held)
    assert (first.sent, first.retried) == (3, 1)
    await sender.drain(NOW + timedelta(seconds=wait + 1))
    assert [text for text, _ in arrivals(slack, "U0R000")] == ["0:0", "0:1", "0:2"]
    assert slack.over_limit == 0


async def test_a_method_slack_throttles_waits_app_wide_and_posts_go_on(
    slack: SlackStandIn,
) -> None:
    client = make_client(
        make_settings("sqlite://", SLACK_BOT_TOKEN=slack.token, SLACK_API_URL=slack.api_url)
    )
    slack.throttle("conversations.open", times=1, retry_after=30)
    with pytest.raises(SlackApiError) as refused:
        await client.conversations_open(users="U0R000")
    assert refused.value.response.status_code == 429
    # Within the Retry-After, the method fails at once with the same 429 and Slack is not
    # asked again, whoever calls it.
    with pytest.raises(Throttled) as waiting:
        await client.conversations_open(users="U0R001")
    assert waiting.value.response.status_code == 429
    assert int(waiting.value.response.headers["Retry-After"]) > 25
    assert [c.method for c in slack.refused] == ["conversations.open"]
    assert slack.of("conversations.open") == []
    # Other methods are not held back.
    await client.chat_postMessage(channel="U0R000", text="still here")
    assert [m["text"] for m in slack.posted_in("U0R000")] == ["still here"]


async def test_delivery_and_the_clock_go_on_while_the_default_executor_is_full(
    any_store: Store, slack: SlackStandIn
) -> None:
    write_to_outbox(any_store, reps=5, each=2)
    release = threading.Event()
    loop = asyncio.get_running_loop()
    # Every thread of the default executor busy (handlers' work in a burst), and more queued.
    blockers = [loop.run_in_executor(None, release.wait, 120) for _ in range(64)]
    try:
        jobs = Scheduler(any_store, deliverer(any_store, slack), ALWAYS)
        tick = await asyncio.wait_for(jobs.tick(NOW), 60)
        assert tick.messages == 0
        report = await asyncio.wait_for(jobs.sender.drain(NOW), 60)
        assert report.sent == 10
        assert not any(b.done() for b in blockers)  # the executor was full all along
    finally:
        release.set()
        await asyncio.gather(*blockers)
    assert len(slack.of("chat.postMessage")) == 10


def fastest(platform: str, seconds: float, latency: float = 0.0) -> list[float]:
    """When a lane sends to `platform`, as fast as its pace allows, for `seconds`."""
    lane, now, sent = pacing.Lane(), 0.0, []
    while now < seconds:
        now += lane.wait([platform], now)
        sent.append(now)
        now += latency
        lane.answered([platform], now)
    return sent


def most_in(times: list[float], window: float) -> int:
    """The most of `times` in any window of `window` seconds (both ends in)."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.parametrize("latency", [0.0, 0.3])
def test_the_pace_of_each_platform_keeps_to_its_published_limits(latency: float) -> None:
    slack = fastest("slack", 600, latency)
    assert most_in(slack, 0.0) == (3 if latency == 0 else 1)  # a burst of three at most…
    assert most_in(slack, 60.0) <= 63  # …then one a second
    assert len(slack) >= 600 * 0.95  # which the burst keeps up despite the latency
    teams = fastest("teams", 7200, latency)
    # Microsoft's per-conversation limits: 7 a second, 8 in 2 s, 60 in 30 s, 1,800 an hour.
    for window, limit in ((1.0, 7), (2.0, 8), (30.0, 60), (3600.0, 1800)):
        assert most_in(teams, window) <= limit, window
    assert len(teams) >= 7200 / 2.05 * 0.95


async def test_the_teams_app_limit_spaces_requests_across_conversations() -> None:
    spacing = pacing.Spacing(rate=20, burst=2)
    started = time.monotonic()
    await asyncio.gather(*(spacing.acquire() for _ in range(10)))
    assert time.monotonic() - started >= (10 - 2) / 20  # two at once, then 20 a second


async def test_a_lanes_pace_counts_from_slacks_answer_not_from_the_bookkeeping(
    sqlite_store: Store, slack: SlackStandIn
) -> None:
    """Recording a send's outcome may be slow (a busy database); the conversation's next
    post is due a second after Slack answered, not a second after the record was written."""
    write_to_outbox(sqlite_store, reps=1, each=1)
    sender = Sender(sqlite_store, deliverer(sqlite_store, slack), "a")
    sent = sender._sent

    def slow_sent(*args: object, **kwargs: object) -> str | None:
        time.sleep(2.0)
        return sent(*args, **kwargs)  # type: ignore[arg-type]

    sender._sent = slow_sent  # type: ignore[assignment, method-assign]
    sender._forget_quiet_lanes = lambda: None  # type: ignore[method-assign]  # to look at it
    await sender.drain(NOW)
    [(_, posted_at)] = arrivals(slack, "U0R000")
    [bucket] = sender.paces["member:1"].buckets["slack"]
    # Due a second after the post arrived (plus the answer's way back), not 2 s later.
    assert posted_at + 1.0 <= bucket.due < posted_at + 2.0
