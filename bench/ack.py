"""Slack ack latency: signed `block_actions` presses against a bare Bolt app and Liaison.

Run from the repository root:

    .venv/bin/python bench/ack.py [--requests 1000] [--rate 100] [--warmup 100]

Three child processes are started from this same file (`--serve ROLE`): the Slack Web
API stand-in (tests/slack_standin.py), a bare Bolt `AsyncApp` whose only listener acks,
and Liaison's real web app (`bot.server.build_web_app`) on a SQLite file in a temp dir.
Each child listens on 127.0.0.1 port 0 and reports its URL as one JSON line on stdout;
it stops when its stdin closes (or after --max-seconds) and then prints one JSON line of
statistics. The load generator runs here, in the main process, with one aiohttp session:
open-loop, one request every 1/rate seconds whatever the answers are doing, the
baseline first and then Liaison. Latency is the HTTP round trip of each request, from
just before it is sent until its body has been read.

Liaison acks first and does the work in background tasks; that work (a database
transaction and, after the first press, an "already accepted" private answer through
response_url to the stand-in) keeps running during the measurement, as in production.
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
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

SCRIPT = Path(__file__).resolve()  # the children run this same file with --serve ROLE
ROOT = SCRIPT.parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "slack" / "block_actions.json"
SIGNING_SECRET = "bench-signing-secret"
WEBHOOK_SECRET = "bench-webhook-secret"
BOT_TOKEN = "xoxb-bench-token"
USER_ID = "U0ALICE"
USER_EMAIL = "alice@example.com"
USER_NAME = "Alice Adams"
HOST = "127.0.0.1"
TARGET_RATIO = 1.5
TARGET_P99_MS = 50.0

console = Console()


# ------------------------------------------------------------------ servers (children)


def _stop_on_stdin_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """A daemon thread (not the loop's executor) waits for the parent to close our stdin."""

    def wait() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait, daemon=True).start()


def _report(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def _serve_until_told(
    app: web.Application,
    max_seconds: float,
    ready: Callable[[str], Awaitable[dict[str, Any]]],
    finish: Callable[[], Awaitable[dict[str, Any]]],
) -> None:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://{HOST}:{port}"
    stop = asyncio.Event()
    _stop_on_stdin_eof(asyncio.get_running_loop(), stop)
    try:
        _report({"url": url, **await ready(url)})
        try:
            await asyncio.wait_for(stop.wait(), max_seconds)
        except TimeoutError:
            print(
                f"server: no word from the parent after {max_seconds:.0f} s; stopping",
                file=sys.stderr,
            )
        _report(await finish())
    finally:
        await runner.cleanup()


async def serve_standin(max_seconds: float) -> None:
    from collections import Counter

    from tests.slack_standin import SlackStandIn

    standin = await SlackStandIn(token=BOT_TOKEN).start()
    standin.add_user(USER_ID, USER_NAME, USER_EMAIL)
    stop = asyncio.Event()
    _stop_on_stdin_eof(asyncio.get_running_loop(), stop)
    try:
        _report({"url": standin.url, "api_url": standin.api_url})
        try:
            await asyncio.wait_for(stop.wait(), max_seconds)
        except TimeoutError:
            print("stand-in: no word from the parent; stopping", file=sys.stderr)
        answers = standin.of("response_url")
        _report(
            {
                "calls": dict(Counter(c.method for c in standin.calls)),
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

    async def ready(_: str) -> dict[str, Any]:
        return {}

    async def finish() -> dict[str, Any]:
        return {}

    await _serve_until_told(app, max_seconds, ready, finish)


async def serve_liaison(api_url: str, max_seconds: float) -> None:
    """`liaison serve`'s web app on a fresh SQLite file, with one lead owned by USER_ID."""
    import tempfile
    from datetime import UTC, datetime

    from sqlmodel import select

    from app import build_router
    from bot.server import BACKGROUND, CLOCKWORK, build_web_app
    from bot.settings import Settings
    from bot.webhook import signature
    from storage import queries
    from storage.db import Store
    from storage.models import CardLocation, EventKind, LeadEvent

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
            queries.upsert_member(
                session,
                now=datetime.now(UTC),
                email=USER_EMAIL,
                name=USER_NAME,
                slack_user_id=USER_ID,
            )
        app = build_web_app(settings, store, build_router())
        background = app[BACKGROUND]
        stats: dict[str, Any] = {"log_errors": 0}
        _log_one_line(stats)

        async def ready(url: str) -> dict[str, Any]:
            """Send one lead through the signed webhook; its card goes to USER_ID's DM."""
            lead = {
                "external_id": "BENCH-1",
                "name": "Jordan Patel",
                "company": "Globex",
                "campaign": "Webinar",
                "owner_email": USER_EMAIL,
                "title": "VP Sales",
            }
            body = json.dumps([lead]).encode()
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
                    raise RuntimeError(f"webhook refused the demo lead: {answer}")
            await background.drain()
            await asyncio.wait_for(app[CLOCKWORK].settled(), timeout=10)  # the card is owed
            lead_id = int(answer["leads"][0]["id"])
            with store.session() as session:
                card = session.exec(
                    select(CardLocation).where(CardLocation.lead_id == lead_id)
                ).first()
            if card is None:
                raise RuntimeError("the demo lead's card was not posted to the stand-in")
            return {"lead_id": lead_id, "channel": card.channel, "message_ts": card.message_id}

        async def finish() -> dict[str, Any]:
            stats["background_pending"] = len(background.tasks)
            started = time.perf_counter()
            await background.drain()
            stats["drain_ms"] = round((time.perf_counter() - started) * 1000, 1)
            with store.session() as session:
                accepted = session.exec(
                    select(LeadEvent).where(LeadEvent.kind == EventKind.accepted.value)
                ).all()
            stats["accepted_events"] = len(accepted)
            return stats

        try:
            await _serve_until_told(app, max_seconds, ready, finish)
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


@dataclass
class Child:
    role: str
    process: asyncio.subprocess.Process
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def start(cls, role: str, *args: str, max_seconds: float, timeout: float = 60.0) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--serve",
            role,
            "--max-seconds",
            str(max_seconds),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(ROOT),
        )
        child = cls(role, process)
        try:
            info = await asyncio.wait_for(child.read_json(), timeout)
        except TimeoutError:
            await child.kill()
            raise RuntimeError(f"{role} server did not start within {timeout:.0f} s") from None
        if info is None:
            await process.wait()
            raise RuntimeError(f"{role} server exited ({process.returncode}) before starting")
        child.info = info
        return child

    async def read_json(self) -> dict[str, Any] | None:
        """The child's next JSON line (anything else it prints is passed through)."""
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            if line.startswith(b"{"):
                data: dict[str, Any] = json.loads(line)
                return data
            sys.stderr.write(line.decode(errors="replace"))
        return None

    async def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """Close its stdin; it drains, prints its statistics and exits."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            stats = await asyncio.wait_for(self.read_json(), timeout)
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            await self.kill()
            return {}
        return stats or {}

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


# ------------------------------------------------------------------ load generator


@dataclass
class Run:
    name: str
    latencies_ms: list[float] = field(default_factory=list)  # measured requests only
    statuses: dict[str, int] = field(default_factory=dict)  # all requests, warm-up included
    errors: int = 0
    max_send_lag_ms: float = 0.0
    achieved_rate: float = 0.0
    server: dict[str, Any] = field(default_factory=dict)

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    @property
    def mean(self) -> float:
        return sum(self.latencies_ms) / len(self.latencies_ms)


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


def presses(
    count: int, *, lead_id: int, channel: str, message_ts: str, response_url: str
) -> list[bytes]:
    """`count` form-encoded presses of "Accept" on the lead by its owner, each its own trigger
    (signed when sent, so a long run never carries a stale timestamp)."""
    template = json.loads(FIXTURE.read_text())
    ts = int(time.time())
    requests = []
    for i in range(count):
        payload = json.loads(json.dumps(template))
        payload["user"] = {"id": USER_ID, "username": "alice", "name": "alice", "team_id": "T0CAG"}
        payload["container"].update(channel_id=channel, message_ts=message_ts)
        payload["channel"]["id"] = channel
        payload["message"]["ts"] = message_ts
        payload["response_url"] = response_url
        payload["trigger_id"] = f"bench-trigger-{i}"
        payload["actions"][0].update(
            action_id="lead.accept", value=f"lead_id={lead_id}", action_ts=f"{ts}.{i:06d}"
        )
        body = urlencode({"payload": json.dumps(payload)}).encode()
        requests.append(body)
    return requests


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
    task_id = progress.add_task(run.name, total=len(requests))
    timeout = aiohttp.ClientTimeout(total=10)
    results: list[tuple[float, str]] = [(0.0, "")] * len(requests)

    async def send(i: int, body: bytes, headers: dict[str, str]) -> None:
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


async def bench(args: argparse.Namespace, problems: list[str]) -> list[Run]:
    total = args.requests + args.warmup
    lifetime = 2 * total / args.rate + 120  # children stop by themselves after this
    standin = await Child.start("standin", max_seconds=lifetime)
    runs: list[Run] = []
    try:
        api_url = standin.info["api_url"]
        with Progress(
            TextColumn("{task.description:>9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            async with aiohttp.ClientSession() as http:
                # The baseline gets the same payload as Liaison (its card's ids are the
                # stand-in's first ones); Liaison's are replaced by what its setup reports.
                lead: dict[str, Any] = {
                    "lead_id": 1,
                    "channel": "D0ALICE",
                    "message_ts": "1700000000.000001",
                }
                for role in ("baseline", "liaison"):
                    try:
                        child = await Child.start(role, "--api-url", api_url, max_seconds=lifetime)
                    except RuntimeError as error:
                        problems.append(str(error))
                        break
                    try:
                        if role == "liaison":
                            lead = {k: child.info[k] for k in ("lead_id", "channel", "message_ts")}
                        run = Run(role)
                        requests = presses(
                            total,
                            response_url=f"{standin.info['url']}/response/bench-{role}",
                            **lead,
                        )
                        await load(
                            http,
                            run,
                            f"{child.info['url']}/slack/events",
                            requests,
                            args.warmup,
                            args.rate,
                            progress,
                        )
                        runs.append(run)
                    finally:
                        stats = await child.stop()
                    run.server = stats
    finally:
        standin_stats = await standin.stop()
    if runs:
        runs[-1].server["standin"] = standin_stats
    return runs


def report(runs: list[Run], problems: list[str], args: argparse.Namespace) -> bool:
    """Print the table and the verdicts; True when every request answered 200."""
    table = Table(
        title=f"Slack ack latency: {args.requests} signed block_actions at "
        f"{args.rate:g}/s (+{args.warmup} warm-up), loopback"
    )
    for column in (
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
    for run in runs:
        if run.latencies_ms:
            figures = [
                f"{run.percentile(50):.2f}",
                f"{run.percentile(99):.2f}",
                f"{run.mean:.2f}",
                f"{max(run.latencies_ms):.2f}",
            ]
        else:
            figures = ["-"] * 4
        table.add_row(
            run.name,
            *figures,
            f"{run.errors}/{sum(run.statuses.values())}",
            f"{run.achieved_rate:.1f}",
            f"{run.max_send_lag_ms:.2f}",
        )
    console.print(table)
    load1, load5, _ = os.getloadavg()
    console.print(
        f"[dim]{os.cpu_count()} CPUs, load average {load1:.2f} (1 min) "
        f"{load5:.2f} (5 min) at the end, Python {platform.python_version()}[/]"
    )
    ok = all(run.errors == 0 for run in runs) and not problems
    for problem in problems:
        console.print(f"[red]{problem}[/]")
    for run in runs:
        if run.errors:
            console.print(f"[red]{run.name}: {run.errors} failed requests: {run.statuses}[/]")
    by_name = {run.name: run for run in runs}
    base, liaison = by_name.get("baseline"), by_name.get("liaison")
    if base and liaison and base.latencies_ms and liaison.latencies_ms:
        p50_ratio = liaison.percentile(50) / base.percentile(50)
        p99_ratio = liaison.percentile(99) / base.percentile(99)
        console.print(f"Liaison/baseline: p50 × {p50_ratio:.2f}, p99 × {p99_ratio:.2f}")
        verdicts = [
            (
                f"p99 ratio ≤ {TARGET_RATIO:g}× the bare app",
                p99_ratio <= TARGET_RATIO,
                f"{p99_ratio:.2f}×",
            ),
            (
                f"Liaison p99 < {TARGET_P99_MS:g} ms",
                liaison.percentile(99) < TARGET_P99_MS,
                f"{liaison.percentile(99):.2f} ms",
            ),
        ]
        for label, passed, figure in verdicts:
            mark = "[green]PASS[/]" if passed else "[red]FAIL[/]"
            console.print(f"{mark}  {label}: {figure}")
    if liaison and liaison.server:
        server = liaison.server
        calls = server.get("standin", {}).get("calls", {})
        presses = sum(liaison.statuses.values())
        console.print(
            f"[dim]Liaison's work after the acks: {server.get('accepted_events')} accepted "
            f"event(s), {calls.get('chat.update', 0)} card update(s), "
            f'{calls.get("response_url", 0)} of {presses - 1} expected "already accepted" '
            f"answers via response_url, {server.get('log_errors')} error(s) logged; "
            f"{server.get('background_pending')} task(s) still running at the end "
            f"(drained in {server.get('drain_ms')} ms)[/]"
        )
        last = server.get("standin", {}).get("last_response_text", "")
        if last:
            console.print(f"[dim]last private answer: {last!r}[/]")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per server")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--warmup", type=int, default=100, help="requests sent first, not counted")
    parser.add_argument(
        "--serve", choices=("standin", "baseline", "liaison"), help=argparse.SUPPRESS
    )
    parser.add_argument("--api-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=300.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if args.serve == "standin":
        asyncio.run(serve_standin(args.max_seconds))
    elif args.serve == "baseline":
        asyncio.run(serve_baseline(args.api_url, args.max_seconds))
    elif args.serve == "liaison":
        asyncio.run(serve_liaison(args.api_url, args.max_seconds))
    else:
        if args.requests < 1 or args.rate <= 0 or args.warmup < 0:
            parser.error("--requests must be ≥ 1, --rate > 0 and --warmup ≥ 0")
        problems: list[str] = []
        runs = asyncio.run(bench(args, problems))
        sys.exit(0 if report(runs, problems, args) else 1)


if __name__ == "__main__":
    main()
