"""Concurrent ingestion over real HTTP: every lead stored exactly once, every answer true.

Parallel signed `POST /api/leads` requests against `liaison serve`'s app race on the same
new owners (members created from the Slack stand-in's directory), the same new campaign
and the same leads. No request may answer 5xx, every lead is stored once, and each lead's
answer carries that lead's own id and what happened to it (`created` or `duplicate`).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlmodel import select

from storage.db import Store
from storage.models import Campaign, Lead, Member
from tests.slack_standin import SlackStandIn
from tests.support import LiveServer, signed_lead_headers, slack_settings

REPO = Path(__file__).parent.parent
OWNERS = 200


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await SlackStandIn().start()
    for n in range(OWNERS):
        standin.add_user(f"U0REP{n:04d}", f"Rep {n}", f"rep{n}@example.com")
    yield standin
    await standin.stop()


@pytest.fixture
async def server(db_url: str, slack: SlackStandIn) -> AsyncIterator[LiveServer]:
    settings = slack_settings(
        db_url,
        slack,
    )
    live = await LiveServer(settings).start()
    yield live
    await live.stop()


async def send(http: aiohttp.ClientSession, url: str, leads: Any) -> tuple[int, Any]:
    body = json.dumps(leads).encode()
    async with http.post(f"{url}/api/leads", data=body, headers=signed_lead_headers(body)) as r:
        return r.status, await r.json(content_type=None)


async def send_all(url: str, bodies: list[Any]) -> list[tuple[int, Any]]:
    async with aiohttp.ClientSession() as http:
        return list(await asyncio.gather(*(send(http, url, body) for body in bodies)))


def stored(store: Store) -> dict[str, Lead]:
    with store.session() as session:
        leads = session.exec(select(Lead)).all()
    counts = Counter(lead.external_id for lead in leads)
    assert [key for key, n in counts.items() if n > 1] == [], "a lead was stored twice"
    return {lead.external_id: lead for lead in leads}


def assert_answers_true(answers: list[tuple[int, Any]], leads: dict[str, Lead]) -> Counter[str]:
    """No 5xx; each answered lead is stored, under the id its answer gives."""
    statuses: Counter[str] = Counter()
    for status, data in answers:
        assert status == 200, data
        for answer in data["leads"]:
            lead = leads.get(answer["external_id"])
            assert lead is not None, f"answered {answer} but never stored"
            assert answer["id"] == lead.id, f"answered {answer}, stored as #{lead.id}"
            statuses[answer["status"]] += 1
    return statuses


async def test_parallel_batches_for_new_owners(server: LiveServer, slack: SlackStandIn) -> None:
    """4 batches of 100 leads in parallel, 200 owners nobody knew: each owner is created
    once, each lead once, handed to its owner (once their lookups, after the answers, are
    done)."""
    batches = [
        [
            {
                "external_id": f"B{b}-{n}",
                "name": f"Prospect {b}-{n}",
                "owner_email": f"rep{(b * 50 + n) % OWNERS}@example.com",
            }
            for n in range(100)
        ]
        for b in range(4)
    ]
    answers = await send_all(server.url, batches)
    await server.settle()
    leads = stored(server.store)
    statuses = assert_answers_true(answers, leads)
    assert statuses == {"created": 400} and len(leads) == 400
    with server.store.session() as session:
        members = session.exec(select(Member)).all()
    assert len(members) == OWNERS and len({m.email for m in members}) == OWNERS
    by_email = {m.email: m.id for m in members}
    assert all(lead.owner_id == by_email[lead.owner_email] for lead in leads.values())
    assert {lead.state for lead in leads.values()} == {"handed_off"}


async def test_parallel_bodies_sharing_a_new_campaign(server: LiveServer) -> None:
    """20 two-lead bodies at once, all naming a campaign nobody has seen: 40 leads, one
    campaign, every answer with its own lead's id."""
    bodies = [
        [
            {"external_id": f"C{n}-{k}", "name": f"Lead {n}-{k}", "campaign": "Spring webinar"}
            for k in range(2)
        ]
        for n in range(20)
    ]
    answers = await send_all(server.url, bodies)
    leads = stored(server.store)
    assert assert_answers_true(answers, leads) == {"created": 40} and len(leads) == 40
    with server.store.session() as session:
        campaigns = session.exec(select(Campaign)).all()
    assert [c.name for c in campaigns] == ["Spring webinar"]
    assert {lead.campaign_id for lead in leads.values()} == {campaigns[0].id}


async def test_the_same_leads_in_parallel_are_created_once(server: LiveServer) -> None:
    """The same body sent 10 times at once (a retrying sender): each lead is created by
    exactly one answer and reported as a duplicate, with the same id, by the others."""
    body = [
        {"external_id": f"D{k}", "name": f"Lead {k}", "campaign": "Retry storm"} for k in range(5)
    ]
    answers = await send_all(server.url, [body] * 10)
    leads = stored(server.store)
    assert assert_answers_true(answers, leads) == {"created": 5, "duplicate": 45}
    assert len(leads) == 5
    for k in range(5):
        created = [a for _, d in answers for a in d["leads"] if a["external_id"] == f"D{k}"]
        assert sum(a["status"] == "created" for a in created) == 1


def test_two_processes_ingest_the_same_leads_once(pg_url: str) -> None:
    """Two separate processes store the same 300 leads (three new campaigns), one in the
    other's reverse order, into one PostgreSQL at the same moment: no deadlock, each lead
    once, each process's report true."""
    Store.open(pg_url).engine.dispose()  # migrate before the race
    script = (
        "import json, sys\n"
        "from datetime import UTC, datetime\n"
        "from bot.core.business_time import Company\n"
        "from handlers.ingest import LeadIn, store_leads\n"
        "from storage.db import Store\n"
        "store = Store.open(sys.argv[1])\n"
        "leads = [LeadIn(external_id=f'P{n}', name=f'P {n}', campaign=f'Two {n % 3}') "
        "for n in range(300)]\n"
        "if sys.argv[2] == 'reversed':\n"
        "    leads.reverse()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "with store.session() as s:\n"
        "    outcomes, _ = store_leads(s, leads, now=datetime.now(UTC), "
        "admin_channel=None, company=Company())\n"
        "print(json.dumps([[o.external_id, o.lead_id, o.status] for o in outcomes]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, pg_url, order],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env=env,
        )
        for order in ("given", "reversed")
    ]
    for proc in procs:  # both connected and migrated: now they start together
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out))
    store = Store.open(pg_url)
    try:
        leads = stored(store)
    finally:
        store.engine.dispose()
    assert len(leads) == 300
    statuses: Counter[str] = Counter()
    for report in results:
        for external_id, lead_id, status in report:
            assert leads[external_id].id == lead_id
            statuses[status] += 1
    assert statuses == {"created": 300, "duplicate": 300}
