"""The lead webhook answers first and finds owners after: the directory lookup never holds
up the answer, each owner email is asked about once however many leads and batches name
it, answers are remembered for a while, and the work queued behind the webhook is bounded
(429 with Retry-After beyond it, nothing refused is stored, a resend is stored once) on
ingestion's own threads, so a Slack click is acked and handled while ingestion is stuck.

Leads are POSTed, signed, over real HTTP to `liaison serve`'s app; the Slack stand-in
answers `users.lookupByEmail` (held back on demand) and receives the cards."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from sqlmodel import select

import handlers.ingest
from bot.web.server import BACKGROUND, INGESTOR
from storage import members
from storage.models import Lead
from tests.slack_standin import SlackStandIn
from tests.support import LiveServer, eventually, signed_lead_headers, slack_settings
from tests.test_slack import post_slack, posted_cards, press

LOOKUP = "users.lookupByEmail"


class HeldSlack(SlackStandIn):
    """The Slack stand-in, with `users.lookupByEmail` held until `release()` while
    `holding`, or slowed by `lookup_delay` seconds."""

    holding: bool = False
    held: int = 0  # lookups that arrived while holding
    lookup_delay: float = 0.0
    _released: asyncio.Event | None = None

    def release(self) -> None:
        self.holding = False
        if self._released is not None:
            self._released.set()

    def lookups(self) -> Counter[str]:
        return Counter(str(params.get("email")) for params in self.of(LOOKUP))

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["method"] == LOOKUP:
            if self.holding:
                self.held += 1
                self._released = self._released or asyncio.Event()
                await self._released.wait()
            if self.lookup_delay:
                await asyncio.sleep(self.lookup_delay)
        return await super()._api(request)


@pytest.fixture
async def slack() -> AsyncIterator[HeldSlack]:
    standin = HeldSlack()
    await standin.start()
    standin.add_user("U0ALICE", "Alice Adams", "alice@example.com")
    for n in range(40):
        standin.add_user(f"U0REP{n:03d}", f"Rep {n}", f"rep{n}@example.com")
    yield standin
    standin.release()
    await standin.stop()


def admin(live: LiveServer) -> None:
    with live.store.session() as session:
        members.upsert_member(
            session,
            now=datetime.now(UTC),
            email="admin@example.com",
            name="Ada Admin",
            slack_user_id="U0ADMIN",
            role="admin",
        )


@pytest.fixture
async def server(db_url: str, slack: HeldSlack) -> AsyncIterator[LiveServer]:
    live = await LiveServer(
        slack_settings(db_url, slack, LIAISON_LOOKUP_TIMEOUT_SECONDS="30")
    ).start()
    admin(live)
    yield live
    await live.stop()


async def post(http: aiohttp.ClientSession, live: LiveServer, leads: Any) -> tuple[int, Any, Any]:
    body = json.dumps(leads).encode()
    async with http.post(
        f"{live.url}/api/leads", data=body, headers=signed_lead_headers(body)
    ) as response:
        return response.status, await response.json(), response.headers


async def send(live: LiveServer, leads: Any) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as http:
        return await post(http, live, leads)


def lead(live: LiveServer, external_id: str) -> Lead:
    with live.store.session() as session:
        return session.exec(select(Lead).where(Lead.external_id == external_id)).one()


def all_leads(live: LiveServer) -> list[Lead]:
    with live.store.session() as session:
        return list(session.exec(select(Lead)).all())


def dms_to(slack: SlackStandIn, user_id: str) -> list[dict[str, Any]]:
    return [p for p in slack.of("chat.postMessage") if p.get("channel") == user_id]


async def test_the_answer_comes_while_the_lookup_is_held_then_the_card(
    server: LiveServer, slack: HeldSlack
) -> None:
    slack.holding = True
    started = time.monotonic()
    status, data, _ = await asyncio.wait_for(
        send(server, [{"external_id": "A1", "name": "Jordan", "owner_email": "Alice@Example.com"}]),
        timeout=5,
    )
    assert status == 200 and time.monotonic() - started < 3
    (answer,) = data["leads"]
    assert (answer["status"], answer["owner_email"]) == ("created", "alice@example.com")
    await eventually(lambda: slack.held == 1)  # Slack has the question, and holds it
    assert lead(server, "A1").state == "routing"  # not unassigned: the lookup is pending
    assert dms_to(slack, "U0ALICE") == [] and dms_to(slack, "U0ADMIN") == []
    slack.release()
    await server.settle()
    stored = lead(server, "A1")
    assert stored.state == "handed_off" and stored.owner_id is not None
    (card,) = dms_to(slack, "U0ALICE")
    assert "Jordan" in json.dumps(card["blocks"])
    assert slack.lookups() == {"alice@example.com": 1} and dms_to(slack, "U0ADMIN") == []


async def test_a_burst_for_few_owners_asks_about_each_owner_once(
    server: LiveServer, slack: HeldSlack
) -> None:
    """400 leads for 40 new owners in 8 parallel bodies, each lookup slowed: 40 lookups,
    every lead handed to its owner."""
    slack.lookup_delay = 0.2
    bodies = [
        [
            {
                "external_id": f"B{b}-{n}",
                "name": f"P {b}-{n}",
                "owner_email": f"rep{n % 40}@example.com",
            }
            for n in range(50)
        ]
        for b in range(8)
    ]
    async with aiohttp.ClientSession() as http:
        answers = await asyncio.gather(*(post(http, server, body) for body in bodies))
    assert [status for status, _, _ in answers] == [200] * 8
    await server.app[BACKGROUND].drain()  # the lookups and handoffs, not the 400 cards
    assert slack.lookups() == {f"rep{n}@example.com": 1 for n in range(40)}
    leads = all_leads(server)
    assert len(leads) == 400 and {x.state for x in leads} == {"handed_off"}


async def test_answers_are_remembered_for_a_while(server: LiveServer, slack: HeldSlack) -> None:
    """Nobody has ghost@: asked once, then remembered (unassigned at once, one notice per
    batch), and asked again once the answer has expired."""
    server.app[INGESTOR].lookups.cache_seconds = 1.0
    ghost = "ghost@example.com"
    await send(server, [{"external_id": "G1", "name": "Sam", "owner_email": ghost}])
    await server.settle()
    await send(server, [{"external_id": "G2", "name": "Kim", "owner_email": ghost}])
    await server.settle()
    assert slack.lookups() == {ghost: 1}
    assert {lead(server, x).state for x in ("G1", "G2")} == {"unassigned"}
    assert len(dms_to(slack, "U0ADMIN")) == 2  # once per batch
    await asyncio.sleep(1.1)
    await send(server, [{"external_id": "G3", "name": "Lee", "owner_email": ghost}])
    await server.settle()
    assert slack.lookups() == {ghost: 2}
    assert lead(server, "G3").state == "unassigned"


async def test_owners_nobody_has_are_unassigned_and_the_admin_hears_once(
    server: LiveServer, slack: HeldSlack
) -> None:
    leads = [
        {"external_id": "N1", "name": "Sam", "owner_email": "nobody@example.com"},
        {"external_id": "N2", "name": "Kim", "owner_email": "nobody@example.com"},
        {"external_id": "N3", "name": "Ray", "owner_email": "noone@example.com"},
        {"external_id": "N4", "name": "Ida", "owner_email": "alice@example.com"},
    ]
    status, _, _ = await send(server, leads)
    assert status == 200
    await server.settle()
    assert [lead(server, f"N{n}").state for n in range(1, 5)] == ["unassigned"] * 3 + ["handed_off"]
    (notice,) = dms_to(slack, "U0ADMIN")
    assert all(name in json.dumps(notice["blocks"]) for name in ("Sam", "Kim", "Ray"))
    assert len(dms_to(slack, "U0ALICE")) == 1


@pytest.fixture
def stuck(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """A fault: storing leads waits (on whatever thread stores them) until the event is
    set, as a database that has stopped answering writes would."""
    go = threading.Event()
    original: Callable[..., Any] = handlers.ingest.store_batch

    def store_batch(*args: Any, **kwargs: Any) -> Any:
        assert go.wait(timeout=60), "never released"
        return original(*args, **kwargs)

    monkeypatch.setattr(handlers.ingest, "store_batch", store_batch)
    yield go
    go.set()


@pytest.fixture
async def small(db_url: str, slack: HeldSlack) -> AsyncIterator[LiveServer]:
    """A server whose webhook queues at most 250 leads, stored on one thread."""
    settings = slack_settings(
        db_url, slack, LIAISON_INGEST_QUEUE_LIMIT="250", LIAISON_INGEST_THREADS="1"
    )
    live = await LiveServer(settings).start()
    yield live
    await live.stop()


def body_of(b: int) -> list[dict[str, Any]]:
    return [
        {
            "external_id": f"Q{b}-{n}",
            "name": f"P {b}-{n}",
            "owner_email": f"rep{n % 40}@example.com",
        }
        for n in range(100)
    ]


def finished(tasks: list[asyncio.Task[Any]], count: int) -> list[asyncio.Task[Any]] | None:
    done = [task for task in tasks if task.done()]
    return done if len(done) == count else None


async def test_overload_is_429_with_retry_after_and_a_resend_is_stored_once(
    small: LiveServer, stuck: threading.Event
) -> None:
    """Six bodies of 100 while storing is stuck and 250 may queue: two are taken in, four
    answered 429 at once (Retry-After, a JSON error naming the problem) and not stored;
    the two finish once storing resumes; the four sent again later are stored, once."""
    async with aiohttp.ClientSession() as http:
        sending = [asyncio.create_task(post(http, small, body_of(b))) for b in range(6)]
        refused = await eventually(lambda: finished(sending, 4))
        for task in refused:
            status, data, headers = task.result()
            assert status == 429 and int(headers["Retry-After"]) > 0
            assert "too many leads waiting" in data["error"]
        assert all_leads(small) == []
        stuck.set()
        answers = await asyncio.gather(*sending)
        taken = [b for b, (status, _, _) in enumerate(answers) if status == 200]
        assert len(taken) == 2
        await small.app[BACKGROUND].drain()  # later: their owners looked up, the queue empty
        again = [await post(http, small, body_of(b)) for b in range(6) if b not in taken]
        assert [status for status, _, _ in again] == [200] * 4
        statuses = Counter(a["status"] for _, data, _ in again for a in data["leads"])
        assert statuses == {"created": 400}
        repeat = await post(http, small, body_of(taken[0]))
        assert {a["status"] for a in repeat[1]["leads"]} == {"duplicate"}
    await small.app[BACKGROUND].drain()
    leads = all_leads(small)
    assert len(leads) == 600 and len({(x.source, x.external_id) for x in leads}) == 600


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_click_is_acked_and_handled_while_ingestion_is_stuck(
    server: LiveServer, slack: HeldSlack, stuck: threading.Event
) -> None:
    """Alice's card is out; then storing leads gets stuck with ten bodies waiting (more than
    asyncio's default threads). Her Accept is acked well within Slack's 3 s and done —
    the lead accepted, the card updated — before the stuck bodies are."""
    stuck.set()
    status, _, _ = await send(
        server, [{"external_id": "C1", "name": "Jordan", "owner_email": "alice@example.com"}]
    )
    assert status == 200
    await server.settle()
    (card,) = posted_cards(slack, "U0ALICE")
    stuck.clear()
    async with aiohttp.ClientSession() as http:
        waiting = [asyncio.create_task(post(http, server, body_of(b))) for b in range(10)]
        await asyncio.sleep(0.5)
        payload = press(slack, "U0ALICE", card, "lead.accept")
        body = urlencode({"payload": json.dumps(payload)}).encode()
        started = time.monotonic()
        status, _ = await post_slack(server, body, "application/x-www-form-urlencoded")
        acked = time.monotonic() - started
        assert status == 200 and acked < 1.0, acked
        await eventually(lambda: lead(server, "C1").state == "accepted", timeout=5)
        await eventually(lambda: slack.of("chat.update"), timeout=5)
        assert not any(task.done() for task in waiting)  # ingestion is still stuck
        stuck.set()
        answers = await asyncio.gather(*waiting)
    assert [status for status, _, _ in answers] == [200] * 10
