"""Lead ingestion and delivery: signed lead batches into `liaison serve`, cards counted at Slack.

Run from the repository root:

    .venv/bin/python bench/ingest.py [--leads 10000] [--batch 100] [--parallel 4] [--reps 200]
                                     [--db sqlite|postgresql|both] [--storm] [--quick]
                                     [--settle-seconds 120] [--max-seconds 600] [--timeout 60]
                                     [--json FILE] [--logs DIR]

Exit code 0 when every target passes, 1 otherwise, 130 when interrupted (children stopped,
scratch databases dropped either way). `--quick` is 1,000 leads for 50 reps.

Black box. For each database (a SQLite file in a temp dir; a PostgreSQL database created
with a unique name on the server of LIAISON_TEST_PG, default the tests' one, and dropped
after) the real `liaison serve` command runs as a child process on a fresh database, with
its Slack Web API pointed (SLACK_API_URL) at the strict stand-in tests/slack_standin.py,
which runs in a child process of its own. The stand-in knows `--reps` users with emails,
all new to Liaison: each owner is found through `users.lookupByEmail`. It holds
chat.postMessage to Slack's pace (tests/slack_standin.py `Pace`: per conversation a bucket
of 3 posts refilled at 1 per second; over it, HTTP 429 `ratelimited` with `Retry-After`,
nothing posted, counted as over-limit) and counts every handoff card per (conversation,
lead), by the outbox key `handoff:<lead id>` Liaison puts in the message metadata.

The load, from this process: `--leads` leads, owners round robin over the reps, sent as
signed `POST /api/leads` JSON bodies of `--batch` leads (X-Liaison-Timestamp, and
X-Liaison-Signature `sha256=` HMAC over `v1:<ts>:<body>`), `--parallel` at a time, one
aiohttp session. A 429 or 503 is waited out (its Retry-After) and the same body is sent
again, re-signed; so is a time-out (`--timeout`), a dropped connection or another 5xx,
after 1 s, up to 5 times. The webhook's per-lead outcomes are tallied: every lead must be
"created" exactly once, and a resend of what was stored answers "duplicate".

Figures per run: leads accepted per second (created leads / wall time from the first
request to the last answer), request latency, 429/503 answers, 5xx (other than a 503 with
Retry-After), client time-outs; then delivery as the stand-in saw it: handoff cards per
second (first card to last), as a share of the pacing limit (min(reps, leads) conversations
× 1/s), time from the last answer to the last card, cards missing or doubled when
everything settled (or `--settle-seconds` after the last answer), over-limit posts, and the
serve process's peak RSS (VmHWM). With `--storm` each database gets a second Liaison run
with a 429 storm at the stand-in as well: 10 % of chat.postMessage calls, and every call
during the first 2 s of every 15 s, answer 429 with Retry-After: 1 whatever the pace. Its
delivery target is taken against the pace the storm leaves open (13 of every 15 s: while it
refuses every call nothing can be posted); its other refusals count against Liaison.

The floor, same run, same database server and driver: a bare aiohttp handler (a child
process) that checks the same HMAC, parses the JSON and bulk-inserts the leads' columns
into an equivalent table (`storage.db.make_engine`'s engine, SQLAlchemy Core insert, ON
CONFLICT DO NOTHING, RETURNING what it created) in a thread, answering 200 with the same
per-lead outcomes; the same client drives it. Liaison's leads/s is printed as a share of
the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.children, tests.*
from bench.children import HOST, LIVE, Child, listen, tell_parent, until_told

SCRIPT = Path(__file__).resolve()  # the children run this same file with --serve ROLE
ROOT = SCRIPT.parent.parent
WEBHOOK_SECRET = "bench-webhook-secret"
SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench-token"
PG_ADMIN_URL = os.environ.get(
    "LIAISON_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CAMPAIGNS = 10  # leads come from this many campaigns
RETRIES = 5  # resends of a body after time-outs, dropped connections or a 5xx
RETRY_PAUSE = 1.0  # seconds before such a resend
GRACE = 2.0  # seconds to keep watching for a doubled card once every card arrived
STORM = {"fraction": 0.1, "every": 15.0, "lasting": 2.0, "retry_after": 1}
# The share of time the storm lets any post through: Slack's pace is worth nothing while it
# refuses every call, so under the storm the pacing limit is this share of the calm one (its
# 10 % of refusals the rest of the time are not taken off: they count against Liaison).
STORM_OPEN = 1.0 - STORM["lasting"] / STORM["every"]
TARGET_LEADS_PER_S = 1000.0
TARGET_PACE_SHARE = 0.9
TARGET_RSS_MB = 512.0  # "bounded memory": the serve process's peak at 10,000 leads
QUICK = {"leads": 1000, "reps": 50}
STATS_LINE_LIMIT = 64 * 1024 * 1024  # the stand-in's last line lists every card it counted

# Wide enough for a column per run when the output goes to a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 150)


# ------------------------------------------------------------------ the webhook's signature


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` over `v1:<timestamp>:<body>` (CONTRACT.md, bot/web/webhook.py)."""
    message = b"v1:" + timestamp.encode() + b":" + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------ children: stand-in, floor


def rep(i: int) -> tuple[str, str, str]:
    """The i-th rep: Slack user id, name, email."""
    return f"U{i + 1:07d}", f"Rep {i + 1:04d}", f"rep{i + 1:04d}@example.com"


async def serve_standin(args: argparse.Namespace) -> None:
    """The Slack stand-in with the reps as users, its pace on, maybe a storm; a second
    small server answers GET /stats with its counts while the bench runs."""
    from tests.slack_standin import Pace, SlackStandIn, Storm

    storm = Storm(**STORM) if args.storm else None  # type: ignore[arg-type]
    standin = SlackStandIn(token=BOT_TOKEN, pace=Pace(burst=args.pace_burst), storm=storm)
    await standin.start()
    for i in range(args.reps):
        standin.add_user(*rep(i))

    def light() -> dict[str, Any]:
        return {
            "cards": sum(standin.handoffs.values()),
            "distinct": len(standin.handoffs),
            "over_limit": standin.over_limit,
            "stormed": standin.stormed,
        }

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(light())

    app = web.Application()
    app.router.add_get("/stats", stats)
    runner, stats_url = await listen(app, access_log=None)
    try:
        tell_parent({"api_url": standin.api_url, "stats_url": f"{stats_url}/stats"})
        await until_told("stand-in", args.max_seconds)
        tell_parent(
            {
                **light(),
                "handoffs": [[c, lead, n] for (c, lead), n in standin.handoffs.items()],
                "card_times": standin.handoff_at,
                "calls": dict(Counter(c.method for c in standin.calls)),
                "refused": dict(Counter(c.method for c in standin.refused)),
            }
        )
    finally:
        await runner.cleanup()
        await standin.stop()


async def serve_floor(args: argparse.Namespace) -> None:
    """A bare aiohttp handler: same HMAC, json.loads, one bulk insert with ON CONFLICT DO
    NOTHING into an equivalent table through the same engine factory; 200 with outcomes."""
    from datetime import UTC, datetime

    from sqlalchemy import (
        JSON,
        Column,
        DateTime,
        Integer,
        MetaData,
        String,
        Table,
        UniqueConstraint,
        func,
        select,
    )
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from storage.db import make_engine

    fields = ("name", "company", "email", "title", "campaign", "owner_email")
    table = Table(
        "bench_floor_leads",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("source", String, nullable=False),
        Column("external_id", String, nullable=False),
        *(Column(name, String, nullable=name != "name") for name in fields),
        Column("attributes", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("source", "external_id"),
    )
    engine = make_engine(args.db_url)
    table.metadata.create_all(engine)
    insert = sqlite_insert if engine.dialect.name == "sqlite" else pg_insert
    statement = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["source", "external_id"])
        .returning(table.c.source, table.c.external_id)
    )
    known = {"source", "external_id", *fields}

    def store(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
        with engine.begin() as connection:
            return {(r.source, r.external_id) for r in connection.execute(statement, rows)}

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        ts = request.headers.get("X-Liaison-Timestamp", "")
        given = request.headers.get("X-Liaison-Signature", "")
        if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
            return web.json_response({"error": "stale or missing timestamp"}, status=401)
        if not hmac.compare_digest(signature(WEBHOOK_SECRET, ts, body), given):
            return web.json_response({"error": "signature does not match"}, status=401)
        items = json.loads(body)
        now = datetime.now(UTC)
        rows = [
            {
                "source": str(item.get("source", "")),
                "external_id": str(item["external_id"]),
                **{name: item.get(name) for name in fields},
                "attributes": {k: v for k, v in item.items() if k not in known},
                "created_at": now,
            }
            for item in items
        ]
        created = await asyncio.to_thread(store, rows)
        return web.json_response(
            {
                "leads": [
                    {
                        "external_id": row["external_id"],
                        "source": row["source"],
                        "status": "created"
                        if (row["source"], row["external_id"]) in created
                        else "duplicate",
                    }
                    for row in rows
                ]
            }
        )

    app = web.Application(client_max_size=5 * 1024 * 1024)
    app.router.add_post("/api/leads", receive)
    runner, url = await listen(app, access_log=None)
    try:
        tell_parent({"url": url})
        await until_told("floor", args.max_seconds)
        with engine.connect() as connection:
            rows = connection.execute(select(func.count()).select_from(table)).scalar_one()
        tell_parent({"rows": rows})
    finally:
        await runner.cleanup()
        engine.dispose()


# ------------------------------------------------------------------ children from the parent


# Processes and databases this run made, for the last-resort cleanup in main() (Ctrl-C, a
# crash): the coroutines' own `finally` blocks normally leave both empty.
DATABASES: set[str] = set()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def liaison_command() -> list[str]:
    """The `liaison` entry point installed next to this Python (scripts/setup)."""
    script = Path(sys.executable).parent / "liaison"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import app; app.main()"]


@dataclass
class Serve:
    """`liaison serve` in a child process, its output in a log file."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    async def start(cls, db_url: str, api_url: str, workdir: Path) -> Serve:
        port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LIAISON_", "SLACK_", "MICROSOFT_"))
        }
        env.update(
            LIAISON_DATABASE_URL=db_url,
            LIAISON_WEBHOOK_SECRET=WEBHOOK_SECRET,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=api_url,
        )
        log = workdir / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*liaison_command(), "serve", "--host", HOST, "--port", str(port)],
                cwd=workdir,  # no .env of the repository is read
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        LIVE.add(process.pid)
        serve = cls(process, f"http://{HOST}:{port}", log)
        try:
            await serve.wait_healthy()
        except BaseException:
            serve.stop()
            raise
        return serve

    async def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"liaison serve exited ({self.process.returncode}):\n{self.tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(
                        f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(total=2)
                    ) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"liaison serve not healthy within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the serve process in MiB, from /proc."""
        figures = {"VmRSS": 0.0, "VmHWM": 0.0}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in figures:
                    figures[name] = int(value.split()[0]) / 1024
        return figures["VmRSS"], figures["VmHWM"]

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (aiohttp shuts down gracefully), SIGKILL if it does not go."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        LIVE.discard(self.process.pid)
        return self.process.returncode

    def problems(self) -> tuple[int, int, list[str]]:
        """(error lines, tracebacks, the most frequent warning and error messages) in its
        log, numbers in the messages replaced by N so that alike lines count together."""
        errors: Counter[str] = Counter()
        warnings: Counter[str] = Counter()
        tracebacks = 0
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("Traceback"):
                tracebacks += 1
            found = re.match(r"\S+ \S+ (WARNING|ERROR|CRITICAL) (.*)", line)
            if found:
                kind = warnings if found.group(1) == "WARNING" else errors
                kind[f"{found.group(1)} {re.sub(r'[0-9]+', 'N', found.group(2))[:160]}"] += 1
        common = [f"{n}× {message}" for message, n in (errors + warnings).most_common(6)]
        return sum(errors.values()), tracebacks, common


# ------------------------------------------------------------------ databases


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def create_pg() -> str:
    import psycopg

    name = f"liaison_bench_ingest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_plain(PG_ADMIN_URL), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    DATABASES.add(name)
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def drop_pg(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(_plain(PG_ADMIN_URL), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    DATABASES.discard(name)


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path, label: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'{label}.db'}"
        return
    url = create_pg()
    try:
        yield url
    finally:
        drop_pg(url)


# ------------------------------------------------------------------ the load


def lead_batches(leads: int, reps: int, batch: int) -> list[bytes]:
    """The bodies: lead i is owned by rep i mod reps, from one of CAMPAIGNS campaigns."""
    items = [
        {
            "external_id": f"BENCH-{i:06d}",
            "source": "bench",
            "name": f"Buyer {i:06d}",
            "company": f"Company {i % 997}",
            "email": f"buyer{i:06d}@example.org",
            "title": "VP Sales",
            "campaign": f"Webinar {i % CAMPAIGNS + 1}",
            "owner_email": rep(i % reps)[2],
            "employees": 50 + i % 500,
        }
        for i in range(leads)
    ]
    return [json.dumps(items[at : at + batch]).encode() for at in range(0, leads, batch)]


@dataclass
class Attempt:
    status: str  # "200", "429", "timeout", "ClientOSError"…
    latency_ms: float
    retry_after: float | None = None


@dataclass
class Load:
    attempts: list[Attempt] = field(default_factory=list)
    created: Counter[str] = field(default_factory=Counter)  # external id → "created" answers
    duplicates: int = 0  # "duplicate" answers, each a lead stored by an earlier attempt
    lead_ids: dict[str, int] = field(default_factory=dict)
    answered: int = 0  # bodies answered 2xx
    given_up: int = 0  # bodies never answered 2xx
    refusals: list[str] = field(default_factory=list)  # 4xx other than 429, first few
    waited: float = 0.0  # seconds spent honouring Retry-After
    first_sent: float = math.inf
    last_answer: float = 0.0
    stopped_early: bool = False  # --max-seconds ran out before every body was sent

    def count(self, predicate: Callable[[Attempt], bool]) -> int:
        return sum(1 for a in self.attempts if predicate(a))


def is_backpressure(a: Attempt) -> bool:
    return a.status in ("429", "503") and a.retry_after is not None


def is_5xx(a: Attempt) -> bool:
    return a.status.isdigit() and int(a.status) >= 500 and not is_backpressure(a)


def refused(status: int) -> bool:
    """A 4xx other than 429: the bench sent something wrong, resending will not help."""
    return 400 <= status < 500 and status != 429


def retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def send_body(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    load: Load,
    deadline: float,
    timeout: aiohttp.ClientTimeout,
) -> None:
    """Send one body until it is answered 2xx: after a 429/503 with Retry-After, that long
    later; after a time-out, a dropped connection or another 5xx, 1 s later, RETRIES times."""
    failures = 0
    while True:
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Liaison-Timestamp": ts,
            "X-Liaison-Signature": signature(WEBHOOK_SECRET, ts, body),
        }
        started = time.monotonic()
        load.first_sent = min(load.first_sent, started)
        payload: Any = None
        wait: float | None = None
        try:
            async with http.post(url, data=body, headers=headers, timeout=timeout) as response:
                status = str(response.status)
                wait = retry_after(response.headers.get("Retry-After"))
                text = await response.text()
                if 200 <= response.status < 300:
                    payload = json.loads(text)
                elif refused(response.status) and len(load.refusals) < 5:
                    load.refusals.append(f"{response.status}: {text[:200]}")
        except TimeoutError:
            status = "timeout"
        except aiohttp.ClientError as error:
            status = type(error).__name__
        answered = time.monotonic()
        load.last_answer = max(load.last_answer, answered)
        attempt = Attempt(status, (answered - started) * 1000, wait)
        load.attempts.append(attempt)
        if payload is not None:
            for lead in payload.get("leads", []):
                external_id = str(lead["external_id"])
                if lead.get("id") is not None:
                    load.lead_ids[external_id] = int(lead["id"])
                if lead.get("status") == "created":
                    load.created[external_id] += 1
                else:
                    load.duplicates += 1
            load.answered += 1
            return
        if status.isdigit() and refused(int(status)):
            load.given_up += 1  # the bench sent something wrong: resending will not help
            return
        if is_backpressure(attempt):
            pause = wait or 0.0
        else:
            failures += 1
            pause = RETRY_PAUSE
        if failures > RETRIES or time.monotonic() + pause > deadline:
            load.given_up += 1
            return
        load.waited += pause if is_backpressure(attempt) else 0.0
        await asyncio.sleep(pause)


async def drive(
    url: str,
    bodies: list[bytes],
    args: argparse.Namespace,
    progress: Progress,
    label: str,
) -> Load:
    """`--parallel` senders take the bodies in order until none is left or time is up."""
    load = Load()
    task = progress.add_task(label, total=len(bodies))
    deadline = time.monotonic() + args.max_seconds
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    queue = list(reversed(bodies))

    async def sender(http: aiohttp.ClientSession) -> None:
        while queue:
            if time.monotonic() > deadline:
                load.stopped_early = True
                return
            await send_body(http, url, queue.pop(), load, deadline, timeout)
            progress.advance(task)

    connector = aiohttp.TCPConnector(limit=args.parallel)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(sender(http) for _ in range(args.parallel)))
    load.given_up += len(queue)
    return load


# ------------------------------------------------------------------ one run


@dataclass
class Result:
    """What one run measured; Liaison's delivery figures stay None for the floor."""

    name: str
    database: str
    server: str  # "floor" or "liaison"
    storm: bool
    leads: int
    bodies: int
    created: int
    created_twice: int
    never_created: int
    duplicates: int
    seconds: float
    leads_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    backpressure: int
    backpressure_waited_s: float
    server_errors: int
    timeouts: int
    other_failures: int
    given_up: int
    stopped_early: bool
    refusals: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # answers by HTTP status or error
    expected_cards: int | None = None
    cards: int | None = None
    cards_per_s: float | None = None
    pace_share: float | None = None
    open_pace_share: float | None = None  # of the pace the storm leaves open (storm runs)
    answer_to_last_card_s: float | None = None
    owed_at_last_answer: int | None = None  # cards not yet delivered when the load ended
    drain_per_s: float | None = None  # their delivery rate, last answer → last card
    missing: int | None = None
    doubled: int | None = None
    doubled_leads: list[int] = field(default_factory=list)  # the first few, to look them up
    wrong_channel: int | None = None
    unknown_leads: int | None = None
    over_limit: int | None = None
    stormed: int | None = None
    rss_start_mb: float | None = None
    peak_rss_mb: float | None = None
    log_errors: int | None = None
    log_tracebacks: int | None = None
    log_common: list[str] = field(default_factory=list)
    serve_exit: int | None = None
    calls: dict[str, int] = field(default_factory=dict)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ingest_figures(
    name: str, database: str, server: str, storm: bool, load: Load, args: argparse.Namespace
) -> Result:
    latencies = [a.latency_ms for a in load.attempts]
    seconds = max(0.0, load.last_answer - load.first_sent) if load.attempts else 0.0
    created = len(load.created)
    return Result(
        name=name,
        database=database,
        server=server,
        storm=storm,
        leads=args.leads,
        bodies=math.ceil(args.leads / args.batch),
        created=created,
        created_twice=sum(1 for n in load.created.values() if n > 1),
        never_created=args.leads - created,
        duplicates=load.duplicates,
        seconds=seconds,
        leads_per_s=created / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies, default=0.0),
        requests=len(load.attempts),
        backpressure=load.count(is_backpressure),
        backpressure_waited_s=load.waited,
        server_errors=load.count(is_5xx),
        timeouts=load.count(lambda a: a.status == "timeout"),
        other_failures=load.count(lambda a: not a.status.isdigit() and a.status != "timeout"),
        given_up=load.given_up,
        stopped_early=load.stopped_early,
        refusals=load.refusals,
        statuses=dict(Counter(a.status for a in load.attempts).most_common()),
    )


async def run_floor(
    database: str, workdir: Path, args: argparse.Namespace, progress: Progress
) -> Result:
    with fresh_database(database, workdir, "floor") as db_url:
        floor = await Child.start(
            SCRIPT, "floor", "--db-url", db_url, "--max-seconds", str(args.max_seconds + 600)
        )
        try:
            load = await drive(
                f"{floor.info['url']}/api/leads",
                lead_batches(args.leads, args.reps, args.batch),
                args,
                progress,
                f"floor {database}",
            )
        finally:
            await floor.stop()
    return ingest_figures(f"floor {database}", database, "floor", False, load, args)


async def watch_cards(stats_url: str, expected: int, progress: Progress, label: str) -> None:
    """Poll the stand-in's counts (updating a progress bar) until cancelled."""
    task = progress.add_task(label, total=expected)
    latest: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(stats_url, timeout=aiohttp.ClientTimeout(total=5)) as answer:
                    latest = await answer.json()
            progress.update(task, completed=latest.get("distinct", 0))
            await asyncio.sleep(0.5)


async def run_liaison(
    database: str, storm: bool, workdir: Path, args: argparse.Namespace, progress: Progress
) -> Result:
    name = f"liaison {database}" + (" storm" if storm else "")
    lifetime = str(args.max_seconds + args.settle_seconds + 600)
    standin_args = ["--reps", str(args.reps), "--pace-burst", str(args.pace_burst)]
    standin = await Child.start(
        SCRIPT, "standin", *standin_args, *(["--storm"] if storm else []), "--max-seconds", lifetime
    )
    final: dict[str, Any] = {}
    try:
        with fresh_database(database, workdir, name.replace(" ", "-")) as db_url:
            serve = await Serve.start(db_url, standin.info["api_url"], workdir)
            try:
                rss_start, _ = serve.memory_mb()
                watcher = asyncio.create_task(
                    watch_cards(standin.info["stats_url"], args.leads, progress, f"cards {name}")
                )
                try:
                    load = await drive(
                        f"{serve.url}/api/leads",
                        lead_batches(args.leads, args.reps, args.batch),
                        args,
                        progress,
                        f"leads {name}",
                    )
                    await settle(standin.info["stats_url"], len(load.created), load, args)
                finally:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
                _, peak = serve.memory_mb()
            finally:
                exit_code = serve.stop()
                errors, tracebacks, common = serve.problems()
                if args.logs is not None:
                    args.logs.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(serve.log, args.logs / f"{name.replace(' ', '-')}.log")
    finally:
        final = await standin.stop()
    result = ingest_figures(name, database, "liaison", storm, load, args)
    result.rss_start_mb, result.peak_rss_mb = rss_start, peak
    result.log_errors, result.log_tracebacks, result.log_common = errors, tracebacks, common
    result.serve_exit = exit_code
    delivery_figures(result, load, final, args)
    return result


async def settle(stats_url: str, expected: int, load: Load, args: argparse.Namespace) -> None:
    """Until every created lead's card arrived (and GRACE more seconds for a double), or
    --settle-seconds after the last answer."""
    deadline = load.last_answer + args.settle_seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(stats_url, timeout=aiohttp.ClientTimeout(total=5)) as answer:
                    if (await answer.json())["distinct"] >= expected:
                        await asyncio.sleep(GRACE)
                        return
            await asyncio.sleep(0.5)


def delivery_figures(
    result: Result, load: Load, final: dict[str, Any], args: argparse.Namespace
) -> None:
    """Cards as the stand-in counted them, against the leads the webhook said it created."""
    expected = {load.lead_ids[e]: e for e in load.created if e in load.lead_ids}
    owner_dm = {
        lead_id: "D" + rep(int(external_id.split("-")[1]) % args.reps)[0][1:]
        for lead_id, external_id in expected.items()
    }
    per_lead: Counter[int] = Counter()
    wrong = 0
    for channel, lead_id, n in final.get("handoffs", []):
        per_lead[lead_id] += n
        if lead_id in owner_dm and owner_dm[lead_id] != channel:
            wrong += n
    result.expected_cards = len(expected)
    result.cards = sum(per_lead.values())
    result.missing = sum(1 for lead_id in expected if per_lead[lead_id] == 0)
    result.doubled = sum(1 for n in per_lead.values() if n > 1)
    result.doubled_leads = sorted(lead_id for lead_id, n in per_lead.items() if n > 1)[:10]
    result.wrong_channel = wrong
    result.unknown_leads = sum(1 for lead_id in per_lead if lead_id not in expected)
    result.over_limit = final.get("over_limit")
    result.stormed = final.get("stormed")
    result.calls = final.get("calls", {})
    times: list[float] = final.get("card_times", [])
    if times:
        first, last = min(times), max(times)
        span = last - first
        result.cards_per_s = len(times) / span if span > 0 else None
        conversations = min(args.reps, args.leads)
        if result.cards_per_s is not None:
            result.pace_share = result.cards_per_s / conversations
            if result.storm:
                result.open_pace_share = result.cards_per_s / (conversations * STORM_OPEN)
        result.answer_to_last_card_s = last - load.last_answer
        result.owed_at_last_answer = sum(1 for t in times if t > load.last_answer)
        if result.answer_to_last_card_s > 0:
            result.drain_per_s = result.owed_at_last_answer / result.answer_to_last_card_s


# ------------------------------------------------------------------ the report


def _f(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _pair(a: int | None, b: int | None) -> str:
    return "-" if a is None or b is None else f"{a:,} / {b:,}"


def _percent(share: float | None) -> str:
    return _f(None if share is None else share * 100, ".0f", " %")


def _lookups(r: Result) -> str:
    return "-" if r.server == "floor" else f"{r.calls.get('users.lookupByEmail', 0):,}"


def _rss(r: Result) -> str:
    if r.peak_rss_mb is None or r.rss_start_mb is None:
        return "-"
    return f"{r.rss_start_mb:.0f} → {r.peak_rss_mb:.0f} MiB"


ROWS: list[tuple[str, Callable[[Result], str]]] = [
    ("leads created / sent", lambda r: _pair(r.created, r.leads)),
    ("leads accepted/s", lambda r: f"{r.leads_per_s:,.1f}"),
    ("first request → last answer", lambda r: f"{r.seconds:.1f} s"),
    ("request latency p50", lambda r: f"{r.p50_ms:,.0f} ms"),
    ("request latency p99", lambda r: f"{r.p99_ms:,.0f} ms"),
    ("request latency max", lambda r: f"{r.max_ms:,.0f} ms"),
    ("requests (bodies)", lambda r: f"{r.requests:,} ({r.bodies:,})"),
    ("answers", lambda r: ", ".join(f"{n:,}× {status}" for status, n in r.statuses.items())),
    ("429/503 with Retry-After", lambda r: f"{r.backpressure:,} ({r.backpressure_waited_s:.0f} s)"),
    ("duplicates answered", lambda r: f"{r.duplicates:,}"),
    ("leads created twice / never", lambda r: _pair(r.created_twice, r.never_created)),
    ("5xx", lambda r: f"{r.server_errors:,}"),
    ("client time-outs", lambda r: f"{r.timeouts:,}"),
    ("connection errors", lambda r: f"{r.other_failures:,}"),
    ("bodies given up", lambda r: f"{r.given_up:,}" + (" (time up)" if r.stopped_early else "")),
    ("cards delivered / expected", lambda r: _pair(r.cards, r.expected_cards)),
    ("cards/s (first → last card)", lambda r: _f(r.cards_per_s)),
    ("… of the pacing limit", lambda r: _percent(r.pace_share)),
    ("… of the pace the storm leaves open", lambda r: _percent(r.open_pace_share)),
    ("last answer → last card", lambda r: _f(r.answer_to_last_card_s, ".1f", " s")),
    ("cards still owed at the last answer", lambda r: _f(r.owed_at_last_answer, ",d")),
    ("… delivered at (cards/s)", lambda r: _f(r.drain_per_s)),
    ("cards missing / doubled", lambda r: _pair(r.missing, r.doubled)),
    ("cards in a wrong DM / unknown lead", lambda r: _pair(r.wrong_channel, r.unknown_leads)),
    ("over-limit posts (stand-in)", lambda r: _f(r.over_limit, ",d")),
    ("users.lookupByEmail calls", lambda r: _lookups(r)),
    ("storm 429s (stand-in)", lambda r: _f(r.stormed, ",d") if r.storm else "-"),
    ("serve RSS start → peak", _rss),
    ("serve log errors / tracebacks", lambda r: _pair(r.log_errors, r.log_tracebacks)),
]


def report(results: list[Result], problems: list[str], args: argparse.Namespace) -> bool:
    """Print the figures and the verdicts; True when every target passed."""
    table = Table(
        title=f"Lead ingestion and delivery: {args.leads:,} leads for {args.reps} reps, "
        f"bodies of {args.batch}, {args.parallel} in parallel"
    )
    table.add_column("figure")
    for result in results:
        table.add_column(result.name, justify="right")
    for label, cell in ROWS:
        table.add_row(label, *(cell(r) for r in results))
    floors = {r.database: r for r in results if r.server == "floor"}
    table.add_row(
        "leads/s ÷ floor's",
        *(
            f"{r.leads_per_s / floors[r.database].leads_per_s:.3f}"
            if r.server == "liaison" and r.database in floors and floors[r.database].leads_per_s
            else "-"
            for r in results
        ),
    )
    console.print(table)
    load1, load5, _ = os.getloadavg()
    console.print(
        f"[dim]{os.cpu_count()} CPUs, load average {load1:.2f} (1 min) {load5:.2f} (5 min) "
        f"at the end, Python {platform.python_version()}; pace: {args.pace_burst} posts "
        f"then 1/s per conversation[/]"
    )
    for problem in problems:
        console.print(f"[red]{problem}[/]")
    ok = not problems
    for r in results:
        for refusal in r.refusals:
            console.print(f"[red]{r.name}: refused {refusal}[/]")
        if r.server != "liaison":
            continue
        for line in r.log_common:
            console.print(f"[dim]{r.name} log: {line}[/]")
        if r.doubled_leads:
            console.print(f"[red]{r.name}: leads whose card came twice: {r.doubled_leads}[/]")
        for label, passed, figure in verdicts(r, args):
            mark = "[green]PASS[/]" if passed else "[red]FAIL[/]"
            console.print(f"{mark}  {r.name}: {label}: {figure}")
            ok = ok and passed
    return ok


def verdicts(r: Result, args: argparse.Namespace) -> list[tuple[str, bool, str]]:
    """The issue's targets for one Liaison run."""
    exactly_once = (
        r.created == r.leads
        and r.created_twice == 0
        and r.missing == 0
        and r.doubled == 0
        and r.wrong_channel == 0
        and r.unknown_leads == 0
    )
    return [
        (
            f"≥ {TARGET_LEADS_PER_S:,.0f} leads/s accepted",
            r.leads_per_s >= TARGET_LEADS_PER_S,
            f"{r.leads_per_s:,.1f}/s",
        ),
        (
            "every lead created once, its card delivered exactly once",
            exactly_once,
            f"{r.created:,}/{r.leads:,} created, {r.missing} missing, {r.doubled} doubled",
        ),
        (
            f"delivery ≥ {TARGET_PACE_SHARE:.0%} of the pacing limit"
            + (" the storm leaves open" if r.storm else ""),
            ((r.open_pace_share if r.storm else r.pace_share) or 0.0) >= TARGET_PACE_SHARE,
            _percent(r.open_pace_share if r.storm else r.pace_share),
        ),
        ("never over Slack's pace", r.over_limit == 0, f"{r.over_limit} over-limit posts"),
        ("no 5xx", r.server_errors == 0, f"{r.server_errors}"),
        (
            f"bounded memory (peak RSS ≤ {TARGET_RSS_MB:.0f} MiB)",
            (r.peak_rss_mb or 0.0) <= TARGET_RSS_MB,
            _f(r.peak_rss_mb, ".0f", " MiB"),
        ),
    ]


# ------------------------------------------------------------------ main


async def bench(args: argparse.Namespace, problems: list[str]) -> list[Result]:
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="liaison-bench-ingest-") as tmp,
        Progress(
            TextColumn("{task.description:>24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        for database in databases:
            workdir = Path(tmp)
            runs: list[tuple[str, Callable[[], Awaitable[Result]]]] = [
                ("floor", partial(run_floor, database, workdir, args, progress)),
                ("liaison", partial(run_liaison, database, False, workdir, args, progress)),
            ]
            if args.storm:
                storm = partial(run_liaison, database, True, workdir, args, progress)
                runs.append(("liaison storm", storm))
            for label, run in runs:
                try:
                    results.append(await run())
                except Exception as error:  # report the other runs; say what broke this one
                    traceback.print_exc()
                    problems.append(f"{label} {database}: {type(error).__name__}: {error}")
    return results


def cleanup() -> None:
    """Last resort after Ctrl-C or a crash: kill the children, drop the databases."""
    for pid in list(LIVE):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if DATABASES:
        import psycopg

        with psycopg.connect(_plain(PG_ADMIN_URL), autocommit=True) as admin:
            for name in list(DATABASES):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100, help="leads per request body")
    parser.add_argument("--parallel", type=int, default=4, help="requests in flight")
    parser.add_argument("--reps", type=int, default=200, help="owners, all new to Liaison")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--storm", action="store_true", help="also a run under a 429 storm")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=120.0,
        help="how long after the last answer cards may still arrive",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=600.0, help="bodies not sent by then are given up"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="client time-out, seconds")
    parser.add_argument("--pace-burst", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="1,000 leads for 50 reps")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--logs", type=Path, help="keep each `liaison serve` log in this folder")
    parser.add_argument("--serve", choices=("standin", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--db-url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if args.serve == "standin":
        asyncio.run(serve_standin(args))
        return
    if args.serve == "floor":
        asyncio.run(serve_floor(args))
        return
    if args.quick:
        args.leads, args.reps = QUICK["leads"], QUICK["reps"]
    if min(args.leads, args.batch, args.parallel, args.reps) < 1:
        parser.error("--leads, --batch, --parallel and --reps must be ≥ 1")
    problems: list[str] = []
    # Ctrl-C (or a SIGINT a shell left ignored for a background job) and SIGTERM cancel the
    # run, whose `finally` blocks stop the children and drop the databases; cleanup() then
    # catches whatever they missed.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        results = asyncio.run(bench(args, problems))
    except (KeyboardInterrupt, asyncio.CancelledError):
        cleanup()
        console.print("[red]interrupted: children stopped, scratch databases dropped[/]")
        sys.exit(130)
    finally:
        cleanup()
    ok = report(results, problems, args)
    if args.json:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        data = {"args": settings, "problems": problems, "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(data, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
