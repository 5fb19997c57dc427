"""A lead burst's CPU in process: parse+store+owe bodies of leads, render the cards of a claim.

Run from the repository root:

    .venv/bin/python bench/burst.py [--db sqlite|postgresql|both] [--leads 2000] [--batch 100]
                                    [--reps 200] [--rounds 3] [--profile FILE]

Less noisy than bench/ingest.py (no HTTP, no pacing, no other processes): on a fresh
database (a SQLite file in a temp dir; a PostgreSQL database created on LIAISON_TEST_PG and
dropped after) with `--reps` members who have Slack ids, it times, per round,

- ingest: `Ingestor._validate_and_store` of each signed body's JSON (`--batch` leads of the
  shape bench/ingest.py sends), as the webhook runs it: validate, store, owe the cards;
  reported as ms per body (median, and the best round's total);
- render: one claim of the owed handoff cards (`Sender._claim`), then each card
  rendered as the sender does (`Sender._card`) one after the other, as a
  lane at Slack's pace asks for them (a bookkeeping transaction holds one or two cards);
  reported as ms per card; the CPU time (`time.process_time`) is given beside wall time.

Each round uses new leads; the outbox is drained by marking rendered rows sent.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import update

import handlers.cards  # noqa: F401  (registers the handoff renderer)
from bot.core.business_time import Company
from bot.core.delivery import Deliverer
from bot.outbox.sender import Sender
from handlers.ingest import Ingestor
from storage import members as stored_members
from storage.db import Store
from storage.models import OutboxMessage

PG_ADMIN_URL = os.environ.get(
    "LIAISON_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CAMPAIGNS = 10


def bodies(start: int, leads: int, reps: int, batch: int) -> list[bytes]:
    """Lead bodies as bench/ingest.py sends them (lead i owned by rep i mod reps)."""
    items = [
        {
            "external_id": f"BURST-{i:06d}",
            "source": "bench",
            "name": f"Buyer {i:06d}",
            "company": f"Company {i % 997}",
            "email": f"buyer{i:06d}@example.org",
            "title": "VP Sales",
            "campaign": f"Webinar {i % CAMPAIGNS + 1}",
            "owner_email": f"rep{i % reps + 1:04d}@example.com",
            "employees": 50 + i % 500,
        }
        for i in range(start, start + leads)
    ]
    return [json.dumps(items[at : at + batch]).encode() for at in range(0, leads, batch)]


def seed(store: Store, reps: int, now: datetime) -> None:
    with store.session() as session:
        for r in range(reps):
            stored_members.upsert_member(
                session,
                now=now,
                email=f"rep{r + 1:04d}@example.com",
                name=f"Rep {r + 1:04d}",
                slack_user_id=f"U{r + 1:07d}",
            )


def ingest_round(ingestor: Ingestor, sent: list[bytes], now: datetime) -> tuple[list[float], float]:
    """ms per body (wall), and the round's CPU seconds."""
    times: list[float] = []
    cpu = time.process_time()
    for body in sent:
        started = time.perf_counter()
        accepted = ingestor._validate_and_store(json.loads(body), now)
        times.append((time.perf_counter() - started) * 1000)
        assert not isinstance(accepted, list), accepted
    return times, time.process_time() - cpu


async def render_round(sender: Sender, store: Store, now: datetime) -> tuple[int, float, float]:
    """Claim every owed card and render each one through the bookkeeping, one at a time:
    (cards, wall seconds, CPU seconds)."""
    sender.books.linger = 0.0
    cpu, wall = time.process_time(), time.perf_counter()
    lanes = await sender._claim(now, 100_000)
    claimed = [c for lane in lanes.values() for c in lane]
    for c in claimed:
        await sender._card(c.message, c.message.member_id, now)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with store.session() as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status == "sending")  # type: ignore[arg-type]
            .values(status="sent", claimed_until=None, sending_since=None)
        )
    sender.busy.clear()
    sender.held.clear()
    return len(claimed), wall, cpu


def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    store = Store.open(url)
    now = datetime.now(UTC).replace(microsecond=0)
    company = Company()
    seed(store, args.reps, now)
    ingestor = Ingestor(store, Deliverer(store, []), [], None, company)
    sender = Sender(store, Deliverer(store, []), owner="burst", company=company)
    if args.profile:  # the bookkeeping on this thread, where cProfile sees it

        async def inline(work: Any) -> Any:
            return work()

        sender._in_thread = inline  # type: ignore[method-assign]
    per_body: list[float] = []
    ingest_totals: list[tuple[float, float]] = []
    renders: list[tuple[int, float, float]] = []
    profile = cProfile.Profile() if args.profile else None
    try:
        for n in range(args.rounds):
            sent = bodies(n * args.leads, args.leads, args.reps, args.batch)
            if profile:
                profile.enable()
            times, cpu = ingest_round(ingestor, sent, now)
            rendered = asyncio.run(render_round(sender, store, now))
            if profile:
                profile.disable()
            per_body += times
            ingest_totals.append((sum(times) / 1000, cpu))
            renders.append(rendered)
    finally:
        ingestor.close()
        sender.executor.shutdown()
        store.engine.dispose()
    if profile:
        profile.dump_stats(f"{args.profile}.{url.split(':')[0]}")
    cards, wall, cpu = min(renders, key=lambda r: r[1])
    return {
        "ingest_ms_per_body_median": statistics.median(per_body),
        "ingest_ms_per_body_best_round": min(t for t, _ in ingest_totals) * 1000 / len(sent),
        "ingest_cpu_ms_per_body_best_round": min(c for _, c in ingest_totals) * 1000 / len(sent),
        "render_cards": cards,
        "render_ms_per_card_best_round": wall * 1000 / cards,
        "render_cpu_ms_per_card_best_round": cpu * 1000 / cards,
        "render_ms_per_card_rounds": [round(w * 1000 / c, 3) for c, w, _ in renders],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--leads", type=int, default=2000, help="leads per round")
    parser.add_argument("--batch", type=int, default=100, help="leads per body")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="write cProfile stats to FILE.<db>")
    args = parser.parse_args()
    for db in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        if db == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                result = run(f"sqlite:///{tmp}/burst.db", args)
        else:
            import psycopg

            admin_url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
            name = f"burst_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            try:
                result = run(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", args)
            finally:
                with psycopg.connect(admin_url, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(
            db,
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}),
        )


if __name__ == "__main__":
    main()
