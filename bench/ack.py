"""Slack ack latency and click → card update: signed Accept presses against a bare Bolt app
and Liaison, at one or more click rates.

Run from the repository root:

    .venv/bin/python bench/ack.py [--rates 20,100] [--requests 1000] [--warmup 100]
    .venv/bin/python bench/ack.py --same-lead --rates 100   # the older one-lead load

Child processes are started from this same file (`--serve ROLE`): the Slack Web API
stand-in (tests/slack_standin.py, one for the whole run), and for every rate a bare Bolt
`AsyncApp` whose only listener acks (the floor) and Liaison's real web app
(`bot.web.server.build_web_app`) on a fresh SQLite file in a temp dir. Each child listens on
127.0.0.1 port 0 and reports its URL as one JSON line on stdout; it stops when its stdin
closes (or after --max-seconds) and then prints one JSON line of statistics. The load
generator runs here, in the main process, with one aiohttp session: open-loop, one request
every 1/rate seconds whatever the answers are doing, the floor first and then Liaison,
both with the same request bodies. Ack latency is the HTTP round trip of each request, from
just before it is sent until its body has been read.

The default load is issue 11's: every press is the owner's Accept on a different lead.
Liaison's child first takes `requests + warmup` leads for `--owners` reps through the
signed webhook and delivers their handoff cards to the stand-in; each press then carries
its card's real channel, ts and message (as Slack sends them), and accepting updates that
card with `chat.update`. The stand-in notes when each `chat.update` for a ts arrives
(CLOCK_MONOTONIC, shared by the processes), which against the press's send time gives the
click → card update latency. With `--same-lead` every press is on one lead (one accept,
then "already accepted" answers through response_url), the load this bench had first.

Liaison acks first and does the work in background tasks, which keep running during the
measurement, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.children, tests.*
from bench.children import Child, serve_until_told, tell_parent, until_told

SCRIPT = Path(__file__).resolve()  # the children run this same file with --serve ROLE
ROOT = SCRIPT.parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "slack" / "block_actions.json"
SIGNING_SECRET = "bench-signing-secret"
WEBHOOK_SECRET = "bench-webhook-secret"
BOT_TOKEN = "xoxb-bench-token"
USER_ID = "U0ALICE"
USER_EMAIL = "alice@example.com"
USER_NAME = "Alice Adams"
TARGET_RATIO = 2.5  # issue 11: ack p99 within 2.5x the bare app's
TARGET_UPDATE_P99_MS = 50.0  # issue 11: click -> chat.update p99 at 100 clicks/s
UPDATE_TARGET_RATE = 100.0
BATCH = 100  # leads per webhook request while setting up
# BENCH_ACK_PROFILE=/tmp/ack: each Liaison child profiles itself with yappi (CPU time, every
# thread) while it is loaded and saves pstats to /tmp/ack.<pid>.pstat (pip install yappi).
PROFILE = os.environ.get("BENCH_ACK_PROFILE", "")

console = Console(width=None if sys.stdout.isatty() else 150)


# ------------------------------------------------------------------ servers (children)


async def serve_standin(max_seconds: float) -> None:
    from collections import Counter

    from tests.slack_standin import SlackStandIn

    standin = await SlackStandIn(token=BOT_TOKEN).start()
    standin.add_user(USER_ID, USER_NAME, USER_EMAIL)
    try:
        tell_parent({"url": standin.url, "api_url": standin.api_url})
        await until_told("stand-in", max_seconds)
        answers = standin.of("response_url")
        updates: dict[str, float] = {}  # message ts -> when its first chat.update arrived
        for call in standin.calls:
            if call.method == "chat.update":
                updates.setdefault(str(call.params.get("ts", "")), call.at)
        tell_parent(
            {
                "calls": dict(Counter(c.method for c in standin.calls)),
                "refused": dict(Counter(c.method for c in standin.refused)),
                "updates": updates,
                "last_response_text": str(answers[-1].get("text", "")) if answers else "",
            }
        )
    finally:
        await standin.stop()


async def serve_baseline(api_url: str, max_seconds: float) -> None:
    """A bare Bolt app: same serving path as Liaison, one listener that only acks."""
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
    from slack_bolt.async_app import AsyncAck, AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    bolt = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=api_url),
        signing_secret=SIGNING_SECRET,
        process_before_response=True,
    )

    @bolt.action("lead.accept")
    async def accept(ack: AsyncAck) -> None:
        await ack()

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    app = web.Application()
    app.router.add_post("/slack/events", events)

    cpu = [0.0]

    async def ready(_: str) -> dict[str, Any]:
        cpu[0] = time.process_time()
        return {}

    async def finish() -> dict[str, Any]:
        return {"cpu_s": round(time.process_time() - cpu[0], 3)}

    await serve_until_told(app, max_seconds, ready, finish)


def rep(i: int) -> tuple[str, str, str]:
    """The i-th rep of the many-lead load: Slack user id, email, name."""
    return f"U0REP{i:04d}", f"rep{i:04d}@example.com", f"Rep {i:04d}"


async def serve_liaison(api_url: str, max_seconds: float, leads: int, owners: int) -> None:
    """`liaison serve`'s web app on a fresh SQLite file. With `leads` = 0 (--same-lead), one
    lead owned by USER_ID; else `leads` leads spread over `owners` reps, whose handoff cards
    are all delivered to the stand-in before the parent is told the URL."""
    import tempfile
    from datetime import UTC, datetime

    from sqlalchemy import event
    from sqlmodel import col, select

    from app import build_router
    from bot.core.settings import Settings
    from bot.web.server import BACKGROUND, SCHEDULER, build_web_app
    from bot.web.webhook import signature
    from storage import members
    from storage.db import Store
    from storage.models import CardLocation, EventKind, LeadEvent, Member

    people = [rep(i) for i in range(owners)] if leads else [(USER_ID, USER_EMAIL, USER_NAME)]
    with tempfile.TemporaryDirectory(prefix="liaison-bench-") as tmp:
        settings = Settings(
            _env_file=None,
            LIAISON_DATABASE_URL=f"sqlite:///{Path(tmp) / 'liaison.db'}",
            LIAISON_WEBHOOK_SECRET=WEBHOOK_SECRET,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=api_url,
        )
        store = Store.open(settings.database_url)
        with store.session() as session:
            for user_id, email, name in people:
                members.upsert_member(
                    session, now=datetime.now(UTC), email=email, name=name, slack_user_id=user_id
                )
        app = build_web_app(settings, store, build_router())
        background = app[BACKGROUND]
        stats: dict[str, Any] = {"log_errors": 0}
        _log_one_line(stats)

        async def send_leads(url: str, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
            body = json.dumps(batch).encode()
            ts = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-Liaison-Timestamp": ts,
                "X-Liaison-Signature": signature(WEBHOOK_SECRET, ts, body),
            }
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{url}/api/leads", data=body, headers=headers) as response,
            ):
                answer = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"webhook refused the bench leads: {answer}")
            found: list[dict[str, Any]] = answer["leads"]
            return found

        async def ready(url: str) -> dict[str, Any]:
            """Send the leads through the signed webhook; their cards go to the owners' DMs."""
            started = time.perf_counter()
            wanted = [
                {
                    "external_id": f"BENCH-{i}",
                    "name": f"Jordan Patel {i}",
                    "company": "Globex",
                    "campaign": "Webinar",
                    "owner_email": people[i % len(people)][1],
                    "title": "VP Sales",
                }
                for i in range(max(leads, 1))
            ]
            for first in range(0, len(wanted), BATCH):
                await send_leads(url, wanted[first : first + BATCH])
            await background.drain()
            # The cards are owed, then sent at Slack's pace of about 1/s per DM.
            settle = 60 + 2 * len(wanted) / len(people)
            await asyncio.wait_for(app[SCHEDULER].settled(), timeout=settle)

            def cards() -> list[dict[str, Any]]:
                with store.session() as session:
                    rows = session.exec(
                        select(CardLocation, Member.slack_user_id)
                        .join(Member, col(Member.id) == col(CardLocation.member_id))
                        .where(CardLocation.purpose == "handoff")
                        .order_by(col(CardLocation.lead_id))
                    ).all()
                return [
                    {
                        "lead_id": card.lead_id,
                        "user_id": user_id,
                        "channel": card.channel,
                        "message_ts": card.message_id,
                    }
                    for card, user_id in rows
                ]

            found = await asyncio.to_thread(cards)
            if len(found) != len(wanted):
                raise RuntimeError(f"{len(found)} of {len(wanted)} handoff cards were delivered")
            if PROFILE:
                import yappi  # type: ignore[import-untyped,import-not-found,unused-ignore]

                yappi.set_clock_type("cpu")
                yappi.start(builtins=False, profile_threads=True)
            stats["cpu_start"] = time.process_time()  # every thread's CPU from here on
            stats["sql_statements"] = stats["sql_transactions"] = 0
            event.listen(store.engine, "before_cursor_execute", count)
            return {"cards": found, "setup_s": round(time.perf_counter() - started, 1)}

        def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
            """SQL statements and transactions (BEGIN …) while the presses are served."""
            stats["sql_statements"] += 1
            stats["sql_transactions"] += statement.startswith("BEGIN")

        async def finish() -> dict[str, Any]:
            if PROFILE:
                import yappi  # type: ignore[import-untyped,import-not-found,unused-ignore]

                yappi.stop()
                path = f"{PROFILE}.{os.getpid()}.pstat"
                yappi.get_func_stats().save(path, type="pstat")
                threads = sorted(yappi.get_thread_stats(), key=lambda t: -t.ttot)
                stats["profile"] = path
                stats["thread_cpu_s"] = {f"{t.name}:{t.id}": round(t.ttot, 3) for t in threads}
            stats["background_pending"] = len(background.tasks)
            started = time.perf_counter()
            await background.drain()
            await asyncio.wait_for(app[SCHEDULER].settled(), timeout=60)
            stats["drain_ms"] = round((time.perf_counter() - started) * 1000, 1)
            stats["cpu_s"] = round(time.process_time() - stats.pop("cpu_start"), 3)
            event.remove(store.engine, "before_cursor_execute", count)
            with store.session() as session:
                accepted = session.exec(
                    select(LeadEvent).where(LeadEvent.kind == EventKind.accepted.value)
                ).all()
            stats["accepted_events"] = len(accepted)
            return stats

        try:
            await serve_until_told(app, max_seconds, ready, finish)
        finally:
            store.engine.dispose()


def _log_one_line(stats: dict[str, Any]) -> None:
    """Warnings and errors as one line each on stderr (no tracebacks over the progress
    bar); errors are counted into `stats["log_errors"]`."""

    class OneLine(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                stats["log_errors"] += 1
            cause = ""
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                cause = f": {type(error).__name__}: {str(error).splitlines()[0]}"
            print(
                f"liaison {record.levelname.lower()}: {record.getMessage()}{cause}", file=sys.stderr
            )

    handler = OneLine(logging.WARNING)
    logging.getLogger().addHandler(handler)


# ------------------------------------------------------------------ children from the parent


async def start_child(role: str, *args: str, max_seconds: float, timeout: float = 60.0) -> Child:
    """This script again as `role`, stopping by itself after `max_seconds`."""
    args = ("--max-seconds", str(max_seconds), *args)
    return await Child.start(SCRIPT, role, *args, timeout=timeout)


# ------------------------------------------------------------------ load generator


@dataclass
class Run:
    name: str
    latencies_ms: list[float] = field(default_factory=list)  # measured requests only
    statuses: dict[str, int] = field(default_factory=dict)  # all requests, warm-up included
    errors: int = 0
    max_send_lag_ms: float = 0.0
    achieved_rate: float = 0.0
    sent_at: list[float] = field(default_factory=list)  # time.monotonic() of each send
    server: dict[str, Any] = field(default_factory=dict)

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    @property
    def mean(self) -> float:
        return sum(self.latencies_ms) / len(self.latencies_ms)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Round:
    """One rate: the floor and Liaison with the same presses, and Liaison's card updates."""

    rate: float
    baseline: Run | None = None
    liaison: Run | None = None
    update_ms: list[float] = field(default_factory=list)  # click -> chat.update, measured
    updates_missing: int = 0  # measured presses whose card was never updated
    cards: list[dict[str, Any]] = field(default_factory=list)  # the cards pressed, in order
    setup_s: float = 0.0


def signed(body: bytes, ts: int) -> dict[str, str]:
    """Slack's v0 signature headers for a form-encoded interaction payload."""
    sig = (
        "v0="
        + hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    )
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sig,
    }


def press(
    template: dict[str, Any],
    i: int,
    *,
    user_id: str,
    lead_id: int,
    channel: str,
    message_ts: str,
    response_url: str,
    message: dict[str, Any] | None = None,
) -> bytes:
    """One form-encoded press of "Accept" on the lead by `user_id`, its own trigger (signed
    when sent, so a long run never carries a stale timestamp)."""
    payload = json.loads(json.dumps(template))
    name = user_id.lower()
    payload["user"] = {"id": user_id, "username": name, "name": name, "team_id": "T0CAG"}
    payload["container"].update(channel_id=channel, message_ts=message_ts)
    payload["channel"]["id"] = channel
    if message is not None:  # the card as Slack shows it: its text and blocks
        payload["message"].update(message)
    payload["message"]["ts"] = message_ts
    payload["response_url"] = response_url
    payload["trigger_id"] = f"bench-trigger-{i}"
    payload["actions"][0].update(
        action_id="lead.accept", value=f"lead_id={lead_id}", action_ts=f"{int(time.time())}.{i:06d}"
    )
    return urlencode({"payload": json.dumps(payload)}).encode()


def same_lead_presses(
    count: int, *, lead_id: int, channel: str, message_ts: str, response_url: str
) -> list[bytes]:
    """`count` presses of "Accept" on one lead by its owner (--same-lead)."""
    template = json.loads(FIXTURE.read_text())
    return [
        press(
            template,
            i,
            user_id=USER_ID,
            lead_id=lead_id,
            channel=channel,
            message_ts=message_ts,
            response_url=response_url,
        )
        for i in range(count)
    ]


async def card_messages(
    http: aiohttp.ClientSession, api_url: str, channels: set[str]
) -> dict[str, dict[str, Any]]:
    """The posted cards as Slack holds them (`conversations.history`), by ts."""
    found: dict[str, dict[str, Any]] = {}
    headers = {"Authorization": f"Bearer {BOT_TOKEN}"}
    for channel in sorted(channels):
        async with http.post(
            f"{api_url}conversations.history", data={"channel": channel}, headers=headers
        ) as response:
            answer = await response.json()
        if not answer.get("ok"):
            raise RuntimeError(f"conversations.history {channel}: {answer}")
        for message in answer["messages"]:
            found[str(message["ts"])] = {
                "type": "message",
                "user": "U0BOT",
                "bot_id": "B0CA7",
                "text": message.get("text", ""),
                "blocks": message.get("blocks", []),
            }
    return found


def card_presses(
    cards: list[dict[str, Any]], messages: dict[str, dict[str, Any]], response_url: str
) -> list[bytes]:
    """One press of "Accept" per card, by the lead's owner, carrying the card's message."""
    template = json.loads(FIXTURE.read_text())
    return [
        press(
            template,
            i,
            user_id=card["user_id"],
            lead_id=card["lead_id"],
            channel=card["channel"],
            message_ts=card["message_ts"],
            response_url=response_url,
            message=messages[card["message_ts"]],
        )
        for i, card in enumerate(cards)
    ]


async def load(
    http: aiohttp.ClientSession,
    run: Run,
    url: str,
    requests: list[bytes],
    warmup: int,
    rate: float,
    progress: Progress,
) -> None:
    """Open loop: request i is sent at start + i/rate, whether or not earlier ones answered."""
    loop = asyncio.get_running_loop()
    task_id = progress.add_task(f"{run.name} {rate:g}/s", total=len(requests))
    timeout = aiohttp.ClientTimeout(total=10)
    results: list[tuple[float, str]] = [(0.0, "")] * len(requests)
    run.sent_at = [0.0] * len(requests)

    async def send(i: int, body: bytes, headers: dict[str, str]) -> None:
        run.sent_at[i] = time.monotonic()
        started = time.perf_counter()
        try:
            async with http.post(url, data=body, headers=headers, timeout=timeout) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as error:
            status = type(error).__name__
        results[i] = ((time.perf_counter() - started) * 1000, status)
        progress.advance(task_id)

    interval = 1.0 / rate
    start = loop.time() + 0.05
    tasks = []
    for i, body in enumerate(requests):
        due = start + i * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        run.max_send_lag_ms = max(run.max_send_lag_ms, (loop.time() - due) * 1000)
        tasks.append(asyncio.create_task(send(i, body, signed(body, int(time.time())))))
    sent_in = loop.time() - start
    await asyncio.gather(*tasks)
    run.achieved_rate = (len(requests) - 1) / sent_in if sent_in > 0 else 0.0
    for i, (ms, status) in enumerate(results):
        run.statuses[status] = run.statuses.get(status, 0) + 1
        if status != "200":
            run.errors += 1
        elif i >= warmup:
            run.latencies_ms.append(ms)


async def one_rate(
    args: argparse.Namespace,
    rate: float,
    standin: Child,
    http: aiohttp.ClientSession,
    progress: Progress,
    problems: list[str],
) -> Round:
    """Liaison is set up first (its cards delivered), then the floor and Liaison are loaded
    with the same presses, one after the other."""
    total = args.requests + args.warmup
    lifetime = 2 * total / rate + 240  # children stop by themselves after this
    api_url = standin.info["api_url"]
    this = Round(rate)
    leads = 0 if args.same_lead else total
    try:
        liaison = await start_child(
            "liaison",
            "--api-url",
            api_url,
            "--leads",
            str(leads),
            "--owners",
            str(args.owners),
            max_seconds=lifetime,
            timeout=120 + 3 * total / max(args.owners, 1),
        )
    except RuntimeError as error:
        problems.append(f"{rate:g}/s: {error}")
        return this
    try:
        this.setup_s = float(liaison.info.get("setup_s", 0.0))
        this.cards = liaison.info["cards"]
        response_url = f"{standin.info['url']}/response/bench-{rate:g}"
        if args.same_lead:
            first = this.cards[0]
            requests = same_lead_presses(
                total,
                lead_id=first["lead_id"],
                channel=first["channel"],
                message_ts=first["message_ts"],
                response_url=response_url,
            )
        else:
            messages = await card_messages(http, api_url, {c["channel"] for c in this.cards})
            requests = card_presses(this.cards, messages, response_url)
        try:
            baseline = await start_child("baseline", "--api-url", api_url, max_seconds=lifetime)
        except RuntimeError as error:
            problems.append(f"{rate:g}/s: {error}")
            return this
        this.baseline = Run("baseline")
        try:
            await load(
                http,
                this.baseline,
                f"{baseline.info['url']}/slack/events",
                requests,
                args.warmup,
                rate,
                progress,
            )
        finally:
            this.baseline.server = await baseline.stop()
        this.liaison = Run("liaison")
        await load(
            http,
            this.liaison,
            f"{liaison.info['url']}/slack/events",
            requests,
            args.warmup,
            rate,
            progress,
        )
    finally:
        stats = await liaison.stop(timeout=120)
    if this.liaison is not None:
        this.liaison.server = stats
    return this


async def bench(args: argparse.Namespace, problems: list[str]) -> list[Round]:
    total = args.requests + args.warmup
    lifetime = sum(2 * total / rate + 400 for rate in args.rates)
    standin = await start_child("standin", max_seconds=lifetime)
    rounds: list[Round] = []
    try:
        with Progress(
            TextColumn("{task.description:>15}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            async with aiohttp.ClientSession() as http:
                for rate in args.rates:
                    rounds.append(await one_rate(args, rate, standin, http, progress, problems))
    finally:
        standin_stats = await standin.stop()
    updates: dict[str, float] = standin_stats.get("updates", {})
    for this in rounds:
        if this.liaison is None or args.same_lead:
            continue
        this.liaison.server["standin"] = standin_stats
        for i, card in enumerate(this.cards):
            if i < args.warmup:
                continue
            arrived = updates.get(card["message_ts"])
            if arrived is None:
                this.updates_missing += 1
            else:
                this.update_ms.append((arrived - this.liaison.sent_at[i]) * 1000)
    if rounds and rounds[-1].liaison is not None:
        rounds[-1].liaison.server["standin"] = standin_stats
    return rounds


def _figures(values: list[float]) -> list[str]:
    if not values:
        return ["-"] * 4
    return [
        f"{percentile(values, 50):.2f}",
        f"{percentile(values, 99):.2f}",
        f"{sum(values) / len(values):.2f}",
        f"{max(values):.2f}",
    ]


def report(rounds: list[Round], problems: list[str], args: argparse.Namespace) -> bool:
    """Print the tables and the verdicts; True when every request answered 200 and every
    verdict passed."""
    load_name = "presses of one lead" if args.same_lead else "Accepts of different leads"
    table = Table(
        title=f"Slack ack latency: {args.requests} signed {load_name} per server and rate "
        f"(+{args.warmup} warm-up), loopback"
    )
    for column in (
        "rate",
        "server",
        "p50 ms",
        "p99 ms",
        "mean ms",
        "max ms",
        "errors",
        "sent/s",
        "max send lag ms",
    ):
        table.add_column(column, justify="left" if column == "server" else "right")
    for this in rounds:
        for run in (this.baseline, this.liaison):
            if run is None:
                continue
            table.add_row(
                f"{this.rate:g}/s",
                run.name,
                *_figures(run.latencies_ms),
                f"{run.errors}/{sum(run.statuses.values())}",
                f"{run.achieved_rate:.1f}",
                f"{run.max_send_lag_ms:.2f}",
            )
        if this.update_ms or this.updates_missing:
            table.add_row(
                f"{this.rate:g}/s",
                "click → chat.update",
                *_figures(this.update_ms),
                f"{this.updates_missing} missing",
                "",
                "",
            )
    console.print(table)
    load1, load5, _ = os.getloadavg()
    console.print(
        f"[dim]{os.cpu_count()} CPUs, load average {load1:.2f} (1 min) "
        f"{load5:.2f} (5 min) at the end, Python {platform.python_version()}[/]"
    )
    ok = not problems
    for problem in problems:
        console.print(f"[red]{problem}[/]")
    verdicts: list[tuple[str, bool, str]] = []
    for this in rounds:
        base, liaison = this.baseline, this.liaison
        for run in (base, liaison):
            if run is not None and run.errors:
                ok = False
                console.print(
                    f"[red]{this.rate:g}/s {run.name}: {run.errors} failed: {run.statuses}[/]"
                )
        if not (base and liaison and base.latencies_ms and liaison.latencies_ms):
            ok = False
            continue
        p50_ratio = liaison.percentile(50) / base.percentile(50)
        p99_ratio = liaison.percentile(99) / base.percentile(99)
        presses = sum(liaison.statuses.values())
        cpu = {
            run.name: f"{run.server['cpu_s'] * 1000 / presses:.2f} ms"
            for run in (base, liaison)
            if "cpu_s" in run.server
        }
        console.print(
            f"{this.rate:g}/s: Liaison/baseline p50 × {p50_ratio:.2f}, p99 × {p99_ratio:.2f}; "
            f"server CPU per press, all threads, until its work was done: {cpu}"
        )
        if "sql_statements" in liaison.server:
            console.print(
                f"{this.rate:g}/s: Liaison's SQL per press: "
                f"{liaison.server['sql_statements'] / presses:.1f} statements in "
                f"{liaison.server['sql_transactions'] / presses:.2f} transactions"
            )
        verdicts.append(
            (
                f"{this.rate:g}/s: ack p99 ≤ {TARGET_RATIO:g}× the bare app",
                p99_ratio <= TARGET_RATIO,
                f"{liaison.percentile(99):.2f} vs {base.percentile(99):.2f} ms = {p99_ratio:.2f}×",
            )
        )
        if not args.same_lead:
            missing = this.updates_missing
            p99 = percentile(this.update_ms, 99) if this.update_ms else math.inf
            label = f"{this.rate:g}/s: click → chat.update p99 < {TARGET_UPDATE_P99_MS:g} ms"
            if this.rate < UPDATE_TARGET_RATE:
                label += f" (the target is at {UPDATE_TARGET_RATE:g}/s; shown for reference)"
            verdicts.append(
                (
                    label,
                    p99 < TARGET_UPDATE_P99_MS and not missing,
                    f"{p99:.2f} ms" + (f", {missing} cards never updated" if missing else ""),
                )
            )
    for label, passed, figure in verdicts:
        mark = "[green]PASS[/]" if passed else "[red]FAIL[/]"
        console.print(f"{mark}  {label}: {figure}")
        if not passed and "reference" not in label:
            ok = False
    for this in rounds:
        liaison = this.liaison
        if liaison is None or not liaison.server:
            continue
        server = liaison.server
        presses = sum(liaison.statuses.values())
        if args.same_lead:
            calls = server.get("standin", {}).get("calls", {})
            console.print(
                f"[dim]{this.rate:g}/s, Liaison's work after the acks: "
                f"{server.get('accepted_events')} accepted event(s), "
                f'{presses - 1} presses answered "already accepted" expected '
                f"({calls.get('response_url', 0)} response_url answers in the whole run), "
                f"{server.get('log_errors')} error(s) logged; "
                f"{server.get('background_pending')} task(s) still running at the end "
                f"(drained in {server.get('drain_ms')} ms)[/]"
            )
        else:
            updated = len(this.update_ms) + sum(
                1
                for card in this.cards[: args.warmup]
                if card["message_ts"] in server.get("standin", {}).get("updates", {})
            )
            console.print(
                f"[dim]{this.rate:g}/s, Liaison's work after the acks: "
                f"{server.get('accepted_events')} of {presses} leads accepted, {updated} of "
                f"{len(this.cards)} cards updated, {server.get('log_errors')} error(s) logged; "
                f"{server.get('background_pending')} task(s) still running at the end "
                f"(drained in {server.get('drain_ms')} ms); setup (webhook + "
                f"{len(this.cards)} cards delivered) took {this.setup_s:.1f} s[/]"
            )
            if server.get("accepted_events") != presses:
                ok = False
    if rounds and rounds[-1].liaison is not None:
        standin = rounds[-1].liaison.server.get("standin", {})
        console.print(
            f"[dim]stand-in, whole run: calls {standin.get('calls')}, "
            f"refused {standin.get('refused')}[/]"
        )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per server")
    parser.add_argument(
        "--rates",
        default="20,100",
        help="requests per second, comma-separated (a round each)",
    )
    parser.add_argument("--rate", type=float, help="one rate (instead of --rates)")
    parser.add_argument("--warmup", type=int, default=100, help="requests sent first, not counted")
    parser.add_argument(
        "--owners", type=int, default=100, help="reps the leads are spread over (cards per DM)"
    )
    parser.add_argument(
        "--same-lead",
        action="store_true",
        help="every press on one lead (1 accept, then 'already accepted'): the older load",
    )
    parser.add_argument(
        "--serve", choices=("standin", "baseline", "liaison"), help=argparse.SUPPRESS
    )
    parser.add_argument("--api-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--leads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=300.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if args.serve == "standin":
        asyncio.run(serve_standin(args.max_seconds))
    elif args.serve == "baseline":
        asyncio.run(serve_baseline(args.api_url, args.max_seconds))
    elif args.serve == "liaison":
        asyncio.run(serve_liaison(args.api_url, args.max_seconds, args.leads, args.owners))
    else:
        try:
            args.rates = [args.rate] if args.rate else [float(r) for r in args.rates.split(",")]
        except ValueError:
            parser.error("--rates takes numbers separated by commas, e.g. 20,100")
        if args.requests < 1 or any(r <= 0 for r in args.rates) or args.warmup < 0:
            parser.error("--requests must be ≥ 1, every rate > 0 and --warmup ≥ 0")
        if args.owners < 1:
            parser.error("--owners must be ≥ 1")
        problems: list[str] = []
        rounds = asyncio.run(bench(args, problems))
        sys.exit(0 if report(rounds, problems, args) else 1)


if __name__ == "__main__":
    main()
