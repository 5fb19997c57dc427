"""Several `liaison serve` processes on one PostgreSQL: every SLA message exactly once.

Two real server processes tick every 0.3 s against the same database and drain the same
outbox into the Slack stand-in. The first test checks that every owed message is posted
exactly once; the second SIGKILLs one process mid-drain and checks that the other one
delivers the rest once its leases (3 s here) run out, none twice: what the dead process had
posted but not marked sent is found on Slack by its outbox key, not posted again.

Needs PostgreSQL (the pg_url fixture skips with the reason, or fails under
LIAISON_REQUIRE_PG=1).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import aiohttp
import pytest
from sqlmodel import select

from bot.core.business_time import Company
from handlers.ingest import LeadIn, store_leads
from storage import members
from storage.db import Store
from storage.models import Clock, Member, OutboxMessage
from tests.loopback import free_port
from tests.slack_standin import SlackStandIn
from tests.support import WEBHOOK_SECRET, signed_lead_headers

REPO = Path(__file__).parent.parent
LEASE_SECONDS = 3
SERVE = (sys.executable, "-c", "from app import main; main()", "serve")
LEAD_ID = re.compile(r"Lead #(\d+)")
# Both clocks a handoff starts (first touch, verdict) are long overdue, so the first
# tick takes breach then escalation for each in one step: 2 clocks x 2 messages a lead.
MESSAGES_PER_LEAD = 4


# ---------------------------------------------------------------- the company


def make_company(store: Store, *, reps: int, leads: int) -> None:
    """`reps` reps, each with a manager of their own, all working round the clock (quiet
    hours never delay a message, whatever time it is), and `leads` leads handed to the
    reps in turn 30 days ago."""
    now = datetime.now(UTC)
    always = {
        "timezone": "UTC",
        "work_start": "00:00",
        "work_end": "24:00",
        "workdays": "0,1,2,3,4,5,6",
    }
    with store.session() as s:
        for i in range(reps):
            manager = members.upsert_member(
                s,
                now=now,
                email=f"manager{i}@example.com",
                name=f"Manager {i}",
                slack_user_id=f"U0MGR{i:03d}",
                role="manager",
                **always,
            )
            s.flush()
            members.upsert_member(
                s,
                now=now,
                email=f"rep{i}@example.com",
                name=f"Rep {i}",
                slack_user_id=f"U0REP{i:03d}",
                manager_id=manager.id,
                **always,
            )
    with store.session() as s:
        store_leads(
            s,
            [
                LeadIn(
                    external_id=f"L{n}",
                    name=f"Prospect {n}",
                    company="Globex",
                    owner_email=f"rep{n % reps}@example.com",
                )
                for n in range(leads)
            ],
            now=now - timedelta(days=30),
            admin_channel=None,
            company=Company(),
        )
    with store.session() as s:
        clocks = s.exec(select(Clock)).all()
        assert len(clocks) == 2 * leads, "a handoff starts first-touch and verdict clocks"


# ---------------------------------------------------------------- the processes


def _env(url: str, slack: SlackStandIn) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "MICROSOFT_", "LIAISON_"))
        and key.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    }
    env.update(
        LIAISON_DATABASE_URL=url,
        SLACK_BOT_TOKEN=slack.token,
        SLACK_SIGNING_SECRET="x",
        SLACK_API_URL=slack.api_url,
        LIAISON_TICK_SECONDS="0.3",
        LIAISON_OUTBOX_LEASE_SECONDS=str(LEASE_SECONDS),
        LIAISON_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    return env


@dataclass
class Server:
    """One `liaison serve` process, its output going to a file."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log_file: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def instance(self) -> str:
        """The name its outbox leases carry (bot.core.metrics.instance_name)."""
        return f"{socket.gethostname()}:{self.pid}"

    def output(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log_file.close()


class Fleet:
    """The serve processes of one test; their output is shown when the test fails."""

    def __init__(self, url: str, slack: SlackStandIn, tmp_path: Path) -> None:
        self.url, self.slack, self.tmp_path = url, slack, tmp_path
        self.servers: list[Server] = []

    def start(self, count: int, flags: Sequence[Sequence[str]] = ()) -> list[Server]:
        """`count` serve processes; `flags[i]` are more arguments for the i-th."""
        for i in range(count):
            port = free_port()
            log_path = self.tmp_path / f"serve-{i}.log"
            log_file = log_path.open("wb")
            process = subprocess.Popen(
                [*SERVE, "--port", str(port), *(flags[i] if i < len(flags) else ())],
                cwd=REPO,
                env=_env(self.url, self.slack),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            self.servers.append(Server(f"serve-{i}", process, port, log_path, log_file))
        return self.servers

    async def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(trust_env=False) as http:
            for server in self.servers:
                while True:
                    assert server.process.poll() is None, f"{server.name} exited"
                    try:
                        url = f"http://127.0.0.1:{server.port}/healthz"
                        async with http.get(url) as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    assert time.monotonic() < deadline, f"{server.name}: no /healthz 200"
                    await asyncio.sleep(0.1)

    @asynccontextmanager
    async def running(
        self, count: int, flags: Sequence[Sequence[str]] = ()
    ) -> AsyncIterator[list[Server]]:
        """`count` healthy servers; their output is printed if the block fails."""
        try:
            self.start(count, flags)
            await self.wait_healthy()
            yield self.servers
        except BaseException:
            print(self.report())
            raise
        finally:
            self.stop()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def report(self) -> str:
        """Each process's output, without APScheduler's line per tick."""
        parts = []
        for s in self.servers:
            lines = [line for line in s.output().splitlines() if "apscheduler" not in line]
            tail = "\n".join(lines[-80:])
            parts.append(f"----- {s.name} (pid {s.pid}, exit {s.process.poll()}) -----\n{tail}")
        return "\n".join(parts)


@pytest.fixture
def fleet(pg_url: str, slack: SlackStandIn, tmp_path: Path) -> Iterator[Fleet]:
    group = Fleet(pg_url, slack, tmp_path)
    try:
        yield group
    finally:
        group.stop()


# ---------------------------------------------------------------- what was owed, what came


@dataclass(frozen=True)
class Row:
    key: str
    recipient: str  # the Slack user id the DM goes to
    lead_id: int
    title: str
    status: str
    claimed_by: str | None

    @property
    def identity(self) -> tuple[str, int, str]:
        return (self.recipient, self.lead_id, self.title)


def outbox(store: Store) -> list[Row]:
    with store.session() as s:
        slack_ids = {m.id: m.slack_user_id for m in s.exec(select(Member)).all()}
        return [
            Row(
                m.key,
                slack_ids[m.member_id] or "",
                m.lead_id or 0,
                m.card["title"],
                m.status,
                m.claimed_by,
            )
            for m in s.exec(select(OutboxMessage)).all()
        ]


def posted(slack: SlackStandIn) -> list[tuple[str, int, str]]:
    """(recipient, lead id, title) of every chat.postMessage the stand-in accepted."""
    seen = []
    for params in slack.of("chat.postMessage"):
        found = LEAD_ID.search(str(params.get("blocks")))
        assert found, params
        seen.append((str(params["channel"]), int(found.group(1)), str(params["text"])))
    return seen


def expected_keys(store: Store) -> set[str]:
    """What the clocks owe: breach and escalation for every clock."""
    with store.session() as s:
        return {
            f"clock:{clock.id}:{step}"
            for clock in s.exec(select(Clock)).all()
            for step in ("breach", "escalation")
        }


async def wait_until_all_sent(
    store: Store,
    slack: SlackStandIn,
    fleet: Fleet,
    expected: int,
    timeout: float,
    killed: Server | None = None,
) -> list[Row]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await asyncio.to_thread(outbox, store)
        done = len(rows) == expected and all(r.status == "sent" for r in rows)
        if done and len(slack.of("chat.postMessage")) >= expected:
            return rows
        for server in fleet.servers:
            assert server is killed or server.process.poll() is None, (
                f"{server.name} exited with {server.process.returncode}"
            )
        assert time.monotonic() < deadline, (
            f"after {timeout}s: {len(slack.of('chat.postMessage'))} posted, "
            f"{Counter(r.status for r in rows)} in the outbox (expected {expected})"
        )
        await asyncio.sleep(0.2)


def split(rows: list[Row], fleet: Fleet) -> dict[str, int]:
    """How many rows each process delivered (claimed_by stays set once sent)."""
    names = {s.instance: s.name for s in fleet.servers}
    return dict(Counter(names.get(r.claimed_by or "", str(r.claimed_by)) for r in rows))


# ---------------------------------------------------------------- the tests


async def test_two_instances_send_every_message_exactly_once(
    pg_store: Store, slack: SlackStandIn, fleet: Fleet
) -> None:
    # 8 leads over 8 reps (one each), each rep with their own manager: 32 messages,
    # 2 per recipient. The sender paces 1 message/s per recipient, sending to different
    # recipients side by side; both processes tick every 0.3 s, so both take part.
    leads = 8
    expected = leads * MESSAGES_PER_LEAD
    store = pg_store
    make_company(store, reps=8, leads=leads)
    started = time.monotonic()
    async with fleet.running(2):
        await wait_until_all_sent(store, slack, fleet, expected, timeout=60)
        await asyncio.sleep(2)  # anything sent twice would arrive now

        rows = outbox(store)
        assert {r.key for r in rows} == expected_keys(store)
        assert len(rows) == expected
        assert all(r.status == "sent" for r in rows)
        calls = posted(slack)
        twice = {k: n for k, n in Counter(calls).items() if n > 1}
        assert not twice, f"posted more than once: {twice}"
        assert len(calls) == len(rows)
        assert set(calls) == {r.identity for r in rows}
        # Breach notes to the rep, escalations to the rep's manager, nowhere else.
        for recipient, _, title in calls:
            assert recipient.startswith("U0MGR" if "past the SLA window" in title else "U0REP")
        print(
            f"\nexactly once: {len(rows)} messages in {time.monotonic() - started:.1f}s, "
            f"split {split(rows, fleet)}"
        )


async def test_compose_shape_one_ticks_and_both_deliver(
    pg_store: Store, slack: SlackStandIn, fleet: Fleet
) -> None:
    """compose.yaml's topology: `liaison-a` with the scheduler, `liaison-b` with
    --no-scheduler, on one PostgreSQL. What the tick owes arrives once; with `liaison-a`
    gone, leads sent to `liaison-b` are handed off by it alone: it delivers though it does
    not tick."""
    leads = 8
    expected = leads * MESSAGES_PER_LEAD
    make_company(pg_store, reps=8, leads=leads)
    async with fleet.running(2, flags=[[], ["--no-scheduler"]]):
        await wait_until_all_sent(pg_store, slack, fleet, expected, timeout=60)
        ticking, quiet = fleet.servers
        ticking.stop()
        body = json.dumps(
            [{"external_id": f"C-{i}", "name": f"Lead {i}", "owner_email": f"rep{i}@example.com"}
             for i in range(4)]
        ).encode()  # fmt: skip
        url = f"http://127.0.0.1:{quiet.port}/api/leads"
        async with (
            aiohttp.ClientSession(trust_env=False) as http,
            http.post(url, data=body, headers=signed_lead_headers(body)) as answer,
        ):
            assert answer.status == 200, await answer.text()
        await wait_until_all_sent(pg_store, slack, fleet, expected + 4, timeout=60, killed=ticking)
        await asyncio.sleep(2)  # anything sent twice would arrive now
        rows = outbox(pg_store)
        assert len(rows) == expected + 4 and all(r.status == "sent" for r in rows)
        calls = posted(slack)
        assert len(calls) == len(set(calls)) == expected + 4, Counter(calls)
        handoffs = [r for r in rows if r.key.startswith("handoff")]
        assert len(handoffs) == 4
        assert split(handoffs, fleet) == {"serve-1": 4}


async def test_sigkill_mid_drain_loses_nothing(
    pg_store: Store, slack: SlackStandIn, fleet: Fleet
) -> None:
    # 6 leads over 6 reps and 6 managers: 24 messages, 2 per recipient; Slack answers each
    # post after 0.2 s and each recipient's second message waits 1 s for the pace, so there
    # is time to kill a process in the middle.
    leads = 6
    expected = leads * MESSAGES_PER_LEAD
    store = pg_store
    make_company(store, reps=6, leads=leads)
    slack.post_delay = 0.2
    started = time.monotonic()
    async with fleet.running(2):
        # Wait until some (not all) messages are out and a process holds leased rows.
        deadline = time.monotonic() + 30
        while True:
            rows = await asyncio.to_thread(outbox, store)
            holding = Counter(r.claimed_by for r in rows if r.status == "sending")
            victims = [s for s in fleet.servers if holding[s.instance]]
            if sum(r.status == "sent" for r in rows) >= expected // 4 and victims:
                break
            assert time.monotonic() < deadline, (
                f"never mid-drain: {Counter(r.status for r in rows)}"
            )
            await asyncio.sleep(0.05)
        victim = max(victims, key=lambda s: holding[s.instance])
        survivor = next(s for s in fleet.servers if s is not victim)
        os.kill(victim.pid, signal.SIGKILL)
        victim.process.wait(timeout=5)
        # The dead process's rows keep its lease for LEASE_SECONDS: read them at once.
        rows = outbox(store)
        leased = [r for r in rows if r.status == "sending" and r.claimed_by == victim.instance]
        sent_before = sum(r.status == "sent" for r in rows)
        posted_before = len(slack.of("chat.postMessage"))
        assert 0 < sent_before < expected

        await wait_until_all_sent(store, slack, fleet, expected, timeout=45, killed=victim)
        await asyncio.sleep(2)

        rows = outbox(store)
        assert {r.key for r in rows} == expected_keys(store)
        assert Counter(r.status for r in rows) == {"sent": expected}, "none pending or sending"
        calls = posted(slack)
        assert set(calls) == {r.identity for r in rows}, "every message arrived"
        duplicates = len(calls) - len(set(calls))
        # A message Slack took while the dead process held its lease, not yet marked sent,
        # still carries `sending_since`: the survivor finds it on Slack by its outbox key
        # (message metadata) instead of posting it again.
        assert duplicates == 0, Counter(calls)
        assert survivor.process.poll() is None
        print(
            f"\nSIGKILL: killed {victim.name} holding {len(leased)} leased rows, with "
            f"{sent_before} sent and {posted_before} posted; {duplicates} duplicate(s); "
            f"{len(rows)} messages in {time.monotonic() - started:.1f}s, "
            f"split {split(rows, fleet)}"
        )
