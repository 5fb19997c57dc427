"""The outbox's lanes through a 429 storm, in process: how close each conversation keeps to
Slack's pace, and where it loses time.

Run from the repository root:

    .venv/bin/python bench/lanes.py [--db postgresql|sqlite] [--reps 200] [--each 25]

`--each` static cards to each of `--reps` reps on Slack are written to the outbox of a fresh
database (a scratch PostgreSQL database on the server of LIAISON_TEST_PG, dropped after; or a
SQLite file in a temp dir). Then one real `Sender` drains them through the real
`SlackMessenger` to the Slack stand-in (tests/slack_standin.py), in this process. The stand-in
keeps Slack's pace (`Pace`) and answers bench/ingest.py's storm: 10 % of chat.postMessage calls,
and every call in the first 2 s of every 15 s, 429 with `Retry-After: 1`.

It prints the cards per second from the first post to the last (and the share of the pacing
limit, one a second per rep), the process's CPU time, when each lane ended, the slowest lane's
timeline (`!` marks a 429), and the gaps between two tries of a lane, after a post and after a
429. Cards are static (no rendering), so this measures the lanes and the bookkeeping, not
drawing cards.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bot.outbox.sender import Sender  # noqa: E402
from storage.db import Store  # noqa: E402
from tests.conftest import PG_ADMIN_URL  # noqa: E402
from tests.slack_standin import Pace, SlackStandIn, Storm  # noqa: E402
from tests.test_outbox_pace import deliverer, write_to_outbox  # noqa: E402


def quantiles(values: list[float]) -> str:
    values = sorted(values)
    if not values:
        return "none"
    at = [values[min(int(len(values) * q), len(values) - 1)] for q in (0.5, 0.9, 0.99)]
    return f"n {len(values)} p50 {at[0]:.3f} p90 {at[1]:.3f} p99 {at[2]:.3f} max {values[-1]:.3f}"


async def run(store: Store, reps: int, each: int) -> None:
    write_to_outbox(store, reps=reps, each=each, at=datetime.now(UTC))
    storm = Storm(fraction=0.1, every=15.0, lasting=2.0, retry_after=1)
    slack = await SlackStandIn(pace=Pace(), storm=storm).start()
    try:
        sender = Sender(store, deliverer(store, slack), "bench")
        cpu = time.process_time()
        report = await sender.drain(datetime.now(UTC))
        cpu = time.process_time() - cpu
    finally:
        await slack.stop()
    posts = [c for c in slack.calls if c.method == "chat.postMessage"]
    first, last = min(c.at for c in posts), max(c.at for c in posts)
    rate = len(posts) / (last - first)
    print(
        f"{len(posts)} cards, {report.retried} 429s waited out, {slack.stormed} stormed, "
        f"{slack.over_limit} over the pace; {rate:.1f} cards/s = {rate / reps:.0%} of the "
        f"pacing limit; CPU {cpu:.1f} s (stand-in included)"
    )
    tries: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for call in [*slack.calls, *slack.refused]:
        if call.method == "chat.postMessage":
            tries[str(call.params["channel"])].append((call.at, call in posts))
    ends = sorted(max(t for t, ok in lane if ok) - first for lane in tries.values())
    print(f"lanes ended (s after the first post): {quantiles(ends)}")
    slowest = max(tries.values(), key=lambda lane: max(t for t, ok in lane if ok))
    timeline = " ".join(f"{t - first:.2f}{'' if ok else '!'}" for t, ok in sorted(slowest))
    print(f"slowest lane: {timeline}")
    after_post: list[float] = []
    after_429: list[float] = []
    for lane in tries.values():
        lane.sort()
        for (earlier, ok), (later, _) in itertools.pairwise(lane):
            (after_post if ok else after_429).append(later - earlier)
    print(f"gap after a post: {quantiles(after_post)}")
    print(f"gap after a 429:  {quantiles(after_429)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--each", type=int, default=25)
    args = parser.parse_args()
    if args.db == "sqlite":
        with tempfile.TemporaryDirectory() as scratch:
            store = Store.open(f"sqlite:///{scratch}/bench.db")
            try:
                asyncio.run(run(store, args.reps, args.each))
            finally:
                store.engine.dispose()
        return
    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"liaison_bench_lanes_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    store = Store.open(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
    try:
        asyncio.run(run(store, args.reps, args.each))
    finally:
        store.engine.dispose()
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
