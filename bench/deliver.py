"""Delivery throughput: handoff cards owed to many reps, drained by `liaison serve` at Slack's
pace, as a share of the pacing limit.

Run from the repository root:

    .venv/bin/python bench/deliver.py [--cards 5000] [--reps 200] [--storm 0.1]
                                      [--skip-sqlite] [--skip-postgres] [--skip-storm]
                                      [--timeout 300]

For each database (a SQLite file in a temp dir; a scratch PostgreSQL database
`liaison_bench_deliver` on the server of LIAISON_TEST_PG, dropped at the end) and each
weather (calm, then a 429 storm), the schema is migrated, `--reps` reps known on Slack are
created and `--cards` leads are stored and handed off round-robin through the real
`handlers.ingest.store_leads` and `bot.core.owing.owe`, in batches of 500: the same outbox
rows a webhook writes (cards rendered when sent, card locations recorded when posted).
Nothing is sent while they are owed.

Then two child processes are started from this same file (`--serve ROLE`):

- `standin`: the Slack Web API stand-in (tests/slack_standin.py) with its pace check on
  (`Pace`, Slack's rule as Liaison reads it: 1 message/s per conversation, bursts of 3; a
  post over it is answered 429 and counted as over the pace). In a storm it also answers a random
  share (`--storm`) of chat.postMessage calls 429 with `Retry-After: 1`;
- `serve`: Liaison's real web app (`bot.web.server.build_web_app`, `liaison serve
  --no-scheduler`): its outbox sender, woken once at start, delivers what is owed.

The parent polls the stand-in for the posts it took and shows them in a progress bar. The
rate is the cards divided by the time from the first post to the last; the pacing limit is
one message per second per rep (`--reps` per second, ignoring the bursts of 3 the rule
also allows), so ≥ 90 % is the target. Every card must arrive exactly once (by its outbox
key, carried in the message metadata) and none over the pace. On a shared machine the rate
follows whoever else is busy; the `serve` process's own CPU time per card delivered (its
`time.process_time()` from start to stop, over the cards) does much less so, and is what to
compare between versions run at different moments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
WINDOWS = (15.0, 2.0)  # with --windows: every post 429 for the first 2 s of every 15 s
ROOT = SCRIPT.parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table  # noqa: E402

from bench.children import listen, tell_parent, until_told  # noqa: E402

BOT_TOKEN = "xoxb-bench-token"
PG_NAME = "liaison_bench_deliver"
PG_ADMIN_URL = os.environ.get(
    "LIAISON_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TARGET = 0.90
console = Console(width=150)


# ------------------------------------------------------------------ children


async def serve_standin(storm: float, windows: bool) -> None:
    from tests.slack_standin import Pace, SlackStandIn, Storm

    every, lasting = WINDOWS if windows else (0.0, 0.0)
    standin = SlackStandIn(
        token=BOT_TOKEN,
        pace=Pace(),
        storm=Storm(fraction=storm, every=every, lasting=lasting) if storm > 0 else None,
    )
    await standin.start()

    async def stats(_: web.Request) -> web.Response:
        posts = [c for c in standin.calls if c.method == "chat.postMessage"]
        keys = Counter(
            str(((c.params.get("metadata") or {}).get("event_payload") or {}).get("key"))
            for c in posts
        )
        return web.json_response(
            {
                "posts": len(posts),
                "distinct": len(keys),
                "twice": sum(n - 1 for n in keys.values() if n > 1),
                "first": min((c.at for c in posts), default=None),
                "last": max((c.at for c in posts), default=None),
                "over_pace": standin.over_limit,
                "storm_429": standin.stormed,
                "methods": Counter(c.method for c in standin.calls),
            }
        )

    # The stats live on a port of their own, beside the stand-in's.
    app = web.Application()
    app.router.add_get("/stats", stats)
    runner, url = await listen(app)
    tell_parent({"api_url": standin.api_url, "stats": f"{url}/stats"})
    await until_told("stand-in")
    await runner.cleanup()
    await standin.stop()


async def serve_liaison() -> None:
    """`liaison serve --no-scheduler` on the database and stand-in the environment names."""
    from app import build_router
    from bot.core.settings import Settings
    from bot.web.server import SCHEDULER, build_web_app
    from storage.db import Store

    settings = Settings(_env_file=None)
    store = Store.open(settings.database_url)
    web_app = build_web_app(settings, store, build_router(settings.company), scheduler=False)
    runner, _ = await listen(web_app)
    web_app[SCHEDULER].wake()
    started = time.process_time()
    tell_parent({"ready": True})
    await until_told("serve")
    tell_parent({"cpu": time.process_time() - started})  # this process's CPU while it delivered
    await runner.cleanup()
    store.engine.dispose()


# ------------------------------------------------------------------ the parent


def owe_cards(url: str, cards: int, reps: int) -> None:
    """`reps` reps on Slack and `cards` leads handed to them round-robin, through the same
    code as the webhook (cards rendered at send time)."""
    from bot.core.business_time import Company, parse_hours, parse_workdays
    from bot.core.owing import write_to_outbox
    from handlers.ingest import LeadIn, store_leads
    from storage import members
    from storage.db import Store

    always = Company("UTC", *parse_hours("00:00-24:00"), parse_workdays("mon-sun"))
    now = datetime.now(UTC)
    store = Store.open(url)
    try:
        with store.session() as s:
            for n in range(reps):
                members.upsert_member(
                    s, now=now, email=f"rep{n}@x.com", name=f"Rep {n}", slack_user_id=f"U0R{n:05d}"
                )
        with Progress(
            TextColumn("owing cards"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress:
            task = progress.add_task("owe", total=cards)
            for start in range(0, cards, 500):
                batch = [
                    LeadIn(
                        external_id=f"L{n}",
                        name=f"Lead {n}",
                        company="Acme",
                        owner_email=f"rep{n % reps}@x.com",
                    )
                    for n in range(start, min(cards, start + 500))
                ]
                with store.session() as s:
                    _, effects = store_leads(s, batch, now=now, admin_channel=None, company=always)
                    write_to_outbox(s, effects, actor_id=None, now=now, company=always)
                progress.update(task, completed=start + len(batch))
    finally:
        store.engine.dispose()


class Child:
    def __init__(self, role: str, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--serve", role, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{role} did not start")
        self.ready: dict[str, Any] = json.loads(line)

    def stop(self) -> dict[str, Any]:
        """Stop it; what it said last (a JSON line), if anything."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        last = self.process.stdout.readline()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        return dict(json.loads(last)) if last.strip() else {}


async def watch(stats_url: str, cards: int, timeout: float) -> dict[str, Any]:
    """Poll the stand-in until every card is posted (or `timeout`), with a progress bar."""
    async with aiohttp.ClientSession() as session:
        with Progress(
            TextColumn("delivering"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("deliver", total=cards, rate="")
            started = time.monotonic()
            while True:
                async with session.get(stats_url) as response:
                    stats: dict[str, Any] = await response.json()
                span = (stats["last"] or 0) - (stats["first"] or 0)
                rate = f"{stats['distinct'] / span:.0f}/s" if span > 0 else ""
                progress.update(task, completed=stats["distinct"], rate=rate)
                if stats["distinct"] >= cards or time.monotonic() - started > timeout:
                    break
                await asyncio.sleep(0.25)
        await asyncio.sleep(3.0)  # anything sent twice would arrive now
        async with session.get(stats_url) as response:
            final: dict[str, Any] = await response.json()
        return final


def fresh_pg() -> str:
    import psycopg

    plain = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{PG_NAME}"')
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{PG_NAME}"


def drop_pg() -> None:
    import psycopg

    plain = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)')


def run_one(database: str, storm: float, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        url = fresh_pg() if database == "postgresql" else f"sqlite:///{scratch}/bench.db"
        try:
            console.print(f"[bold]{database}, {'storm' if storm else 'calm'}[/bold]")
            owe_cards(url, args.cards, args.reps)
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            windows = ["--windows"] if args.windows else []
            standin = Child("standin", env, "--storm", str(storm), *windows)
            env.update(
                LIAISON_DATABASE_URL=url,
                SLACK_BOT_TOKEN=BOT_TOKEN,
                SLACK_API_URL=standin.ready["api_url"],
                LIAISON_WORK_HOURS="00:00-24:00",
                LIAISON_WORKDAYS="mon-sun",
                LIAISON_TICK_SECONDS="1",
            )
            try:
                serve = Child("serve", env)
                try:
                    stats = asyncio.run(watch(standin.ready["stats"], args.cards, args.timeout))
                finally:
                    cpu = serve.stop().get("cpu", 0.0)
            finally:
                standin.stop()
        finally:
            if database == "postgresql":
                drop_pg()
    span = (stats["last"] or 0) - (stats["first"] or 0)
    rate = stats["distinct"] / span if span > 0 else 0.0
    return {
        "database": database,
        "weather": (f"storm {storm:.0%}" + (", windows" if args.windows else ""))
        if storm
        else "calm",
        "delivered": stats["distinct"],
        "twice": stats["twice"],
        "over_pace": stats["over_pace"],
        "storm_429": stats["storm_429"],
        "seconds": span,
        "rate": rate,
        "share": rate / args.reps,
        "cpu_ms": 1000 * cpu / max(stats["distinct"], 1),
        "methods": stats["methods"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--storm", type=float, default=0.1, help="share of posts answered 429")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-storm", action="store_true")
    parser.add_argument("--skip-calm", action="store_true")
    parser.add_argument(
        "--windows",
        action="store_true",
        help="the storm also answers every post 429 for 2 s of every 15 s (bench/ingest.py's)",
    )
    parser.add_argument("--serve", choices=["standin", "serve"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "standin":
        asyncio.run(serve_standin(args.storm, args.windows))
        return
    if args.serve == "serve":
        asyncio.run(serve_liaison())
        return
    databases = [
        d
        for d, skip in (("sqlite", args.skip_sqlite), ("postgresql", args.skip_postgres))
        if not skip
    ]
    storms = [] if args.skip_calm else [0.0]
    storms += [] if args.skip_storm else [args.storm]
    results = [run_one(db, storm, args) for db in databases for storm in storms]
    table = Table(
        title=f"{args.cards} cards to {args.reps} reps; pacing limit {args.reps}/s "
        f"({platform.node()}, {os.cpu_count()} cores)"
    )
    for column in (
        "database",
        "weather",
        "delivered",
        "twice",
        "over pace",
        "storm 429s",
        "seconds",
        "cards/s",
        "of the limit",
        f"≥ {TARGET:.0%}",
        "serve CPU ms/card",
    ):
        table.add_column(column, justify="right")
    for r in results:
        ok = r["delivered"] == args.cards and r["twice"] == 0 and r["over_pace"] == 0
        table.add_row(
            r["database"],
            r["weather"],
            f"{r['delivered']}/{args.cards}",
            str(r["twice"]),
            str(r["over_pace"]),
            str(r["storm_429"]),
            f"{r['seconds']:.1f}",
            f"{r['rate']:.1f}",
            f"{r['share']:.0%}",
            "PASS" if ok and r["share"] >= TARGET else "FAIL",
            f"{r['cpu_ms']:.1f}",
        )
    console.print(table)
    for r in results:
        console.print(f"{r['database']} {r['weather']}: calls {dict(r['methods'])}")


if __name__ == "__main__":
    main()
