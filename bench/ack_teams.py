"""Teams invoke answer time: `adaptiveCard/action` presses against a bare Agents SDK app and
Liaison, the Teams twin of bench/ack.py.

Run from the repository root:

    .venv/bin/python bench/ack_teams.py [--requests 500] [--rate 25] [--warmup 50]

Three child processes are started from this same file (`--serve ROLE`): the Bot Framework
connector stand-in (tests/teams_standin.py), a bare Agents SDK app (the SDK's aiohttp
`CloudAdapter` and an `ActivityHandler` whose `on_adaptive_card_invoke` answers a fixed
card), and Liaison's real web app (`bot.web.server.build_web_app`, Teams in emulator mode: no
token check, as the bare app) on a SQLite file in a temp dir. Each child listens on
127.0.0.1 port 0 and reports its URL as one JSON line on stdout; it stops when its stdin
closes (or after --max-seconds) and then prints one JSON line of statistics. The load
generator runs here, with one aiohttp session: open-loop, one invoke every 1/rate seconds,
the baseline first and then Liaison. Latency is the HTTP round trip of each invoke, from
just before it is sent until its answer (the card) has been read.

Every invoke is the lead's owner pressing Accept on the real handoff card. Teams waits for
the answer, so everything Liaison does for the press happens before it: the first press
accepts the lead; every later one records nothing, posts "already accepted" into the chat
(a connector call to the stand-in) and answers with the card as it stands for the owner.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import math
import os
import platform
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.children, tests.*
from bench.children import Child, serve_until_told, tell_parent, until_told

SCRIPT = Path(__file__).resolve()  # the children run this same file with --serve ROLE
ROOT = SCRIPT.parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "teams" / "card_action.json"
WEBHOOK_SECRET = "bench-webhook-secret"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
# The bare app's answer: a card about the size of Liaison's handoff card.
BARE_CARD = {
    "type": "AdaptiveCard",
    "version": "1.5",
    "body": [
        {"type": "TextBlock", "text": "Jordan Patel (Globex)", "weight": "bolder"},
        {"type": "TextBlock", "text": "Accepted", "wrap": True},
        {"type": "FactSet", "facts": [{"title": "Company", "value": "Globex"}]},
    ],
}

console = Console()


def person() -> Any:
    """The lead's owner, with ids shaped like real Teams ids (tests/teams_standin.py)."""
    sys.path.insert(0, str(ROOT))
    from tests.teams_standin import Person

    return Person("alice", "Alice", "Adams")


# ------------------------------------------------------------------ servers (children)


async def serve_standin(max_seconds: float) -> None:
    from collections import Counter

    from tests.teams_standin import connector_with

    standin = await connector_with([person()])
    try:
        tell_parent({"url": standin.url, "service_url": standin.service_url})
        await until_told("stand-in", max_seconds)
        tell_parent({"calls": dict(Counter(c.verb for c in standin.calls))})
    finally:
        await standin.stop()


async def serve_baseline(max_seconds: float) -> None:
    """A bare Agents SDK app: the same adapter and serving path, one handler that answers
    the invoke with a fixed card (no token check, as Liaison in emulator mode)."""
    from microsoft_agents.activity import AdaptiveCardInvokeResponse
    from microsoft_agents.authentication.msal import MsalConnectionManager
    from microsoft_agents.hosting.aiohttp import CloudAdapter
    from microsoft_agents.hosting.core import ActivityHandler, AgentAuthConfiguration

    class Bare(ActivityHandler):  # type: ignore[misc]
        async def on_adaptive_card_invoke(
            self, turn_context: Any, invoke_value: Any
        ) -> AdaptiveCardInvokeResponse:
            return AdaptiveCardInvokeResponse(status_code=200, type=CARD_TYPE, value=BARE_CARD)

    # The SDK warns on every anonymous turn that its user-token client has no app id.
    logging.getLogger("microsoft_agents.hosting.core.connector.client").setLevel(logging.ERROR)
    connections = MsalConnectionManager(
        connections_configurations={"SERVICE_CONNECTION": AgentAuthConfiguration()}
    )
    adapter = CloudAdapter(connection_manager=connections)
    agent = Bare()

    async def messages(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await adapter.process(request, agent)
        return response

    app = web.Application()
    app.router.add_post("/api/messages", messages)

    async def ready(_: str) -> dict[str, Any]:
        return {}

    async def finish() -> dict[str, Any]:
        return {}

    await serve_until_told(app, max_seconds, ready, finish)


async def serve_liaison(service_url: str, max_seconds: float) -> None:
    """`liaison serve`'s web app (Teams in emulator mode) on a fresh SQLite file, with one
    lead whose handoff card went to its owner's Teams chat."""
    import tempfile
    from datetime import UTC, datetime

    from sqlmodel import select

    from app import build_router
    from bot.core.settings import Settings
    from bot.teams.cards import card_content
    from bot.web.server import SCHEDULER, build_web_app
    from bot.web.webhook import signature
    from handlers.cards import lead_card
    from storage import members
    from storage.db import Store
    from storage.models import CardLocation, EventKind, Lead, LeadEvent

    owner = person()
    with tempfile.TemporaryDirectory(prefix="liaison-bench-") as tmp:
        settings = Settings(
            _env_file=None,
            LIAISON_DATABASE_URL=f"sqlite:///{Path(tmp) / 'liaison.db'}",
            LIAISON_WEBHOOK_SECRET=WEBHOOK_SECRET,
            LIAISON_WORK_HOURS="00:00-24:00",
            LIAISON_WORKDAYS="mon-sun",
            SLACK_BOT_TOKEN="",
            MICROSOFT_APP_ID="",
            LIAISON_TEAMS_EMULATOR="1",
        )
        store = Store.open(settings.database_url)
        reference = {
            "channelId": "msteams",
            "serviceUrl": service_url,
            "conversation": {"id": owner.conversation, "conversationType": "personal"},
            "bot": {"id": "28:liaison"},
            "user": {"id": owner.user_id, "name": owner.name},
        }
        with store.session() as session:
            member = members.upsert_member(
                session,
                now=datetime.now(UTC),
                email=owner.email,
                name=owner.name,
                teams_user_id=owner.user_id,
            )
            member.teams_reference = reference
            session.add(member)
        app = build_web_app(settings, store, build_router())
        stats: dict[str, Any] = {}

        async def ready(url: str) -> dict[str, Any]:
            """One lead through the signed webhook; its card goes to the owner's chat."""
            lead = {"external_id": "BENCH-1", "name": "Jordan Patel", "company": "Globex"}
            body = json.dumps([{**lead, "campaign": "Webinar", "owner_email": owner.email}])
            ts = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-Liaison-Timestamp": ts,
                "X-Liaison-Signature": signature(WEBHOOK_SECRET, ts, body.encode()),
            }
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{url}/api/leads", data=body, headers=headers) as response,
            ):
                answer = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"webhook refused the demo lead: {answer}")
            await asyncio.wait_for(app[SCHEDULER].settled(), timeout=10)  # the card is owed
            lead_id = int(answer["leads"][0]["id"])
            with store.session() as session:
                location = session.exec(
                    select(CardLocation).where(CardLocation.lead_id == lead_id)
                ).first()
                lead_row = session.get(Lead, lead_id)
                assert lead_row is not None
                # The owner's own card, drawn by the adapter's renderer: its Accept button.
                own = card_content(lead_card(session, lead_row), own=True)
            if location is None:
                raise RuntimeError("the demo lead's card was not posted to the stand-in")
            accept = next(a for a in own["actions"] if a["verb"] == "lead.accept")
            return {"message_id": location.message_id, "action": accept}

        async def finish() -> dict[str, Any]:
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
    server: dict[str, Any] = field(default_factory=dict)
    last_answer: dict[str, Any] = field(default_factory=dict)

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    @property
    def mean(self) -> float:
        return sum(self.latencies_ms) / len(self.latencies_ms)


def invokes(
    count: int, *, service_url: str, message_id: str, action: dict[str, Any]
) -> list[bytes]:
    """`count` invokes of the card's Accept by the lead's owner, each its own activity."""
    owner = person()
    template = json.loads(FIXTURE.read_text())
    requests = []
    for _ in range(count):
        activity = copy.deepcopy(template)
        activity.update(id=f"f:{uuid.uuid4().hex}", serviceUrl=service_url, replyToId=message_id)
        activity["from"] = {**activity["from"], "id": owner.user_id, "name": owner.name}
        activity["conversation"]["id"] = owner.conversation
        activity["value"] = {
            "action": {"type": "Action.Execute", "verb": action["verb"], "data": action["data"]},
            "trigger": "manual",
        }
        requests.append(json.dumps(activity).encode())
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
    """Open loop: invoke i is sent at start + i/rate, whether or not earlier ones answered.
    An answer counts when it is HTTP 200 with the card answer Microsoft documents."""
    loop = asyncio.get_running_loop()
    task_id = progress.add_task(run.name, total=len(requests))
    timeout = aiohttp.ClientTimeout(total=15)
    results: list[tuple[float, str]] = [(0.0, "")] * len(requests)
    headers = {"Content-Type": "application/json"}

    async def send(i: int, body: bytes) -> None:
        started = time.perf_counter()
        try:
            async with http.post(url, data=body, headers=headers, timeout=timeout) as response:
                raw = await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as error:
            status, raw = type(error).__name__, b""
        results[i] = ((time.perf_counter() - started) * 1000, status)
        if status == "200":
            answer = json.loads(raw)
            if answer.get("statusCode") != 200 or answer.get("type") != CARD_TYPE:
                results[i] = (results[i][0], "not a card")
            run.last_answer = answer
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
        tasks.append(asyncio.create_task(send(i, body)))
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
    standin = await start_child("standin", max_seconds=lifetime)
    runs: list[Run] = []
    try:
        service_url = standin.info["service_url"]
        with Progress(
            TextColumn("{task.description:>9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            async with aiohttp.ClientSession() as http:
                # The same invoke for both: Liaison's real Accept (its setup reports it).
                press: dict[str, Any] = {}
                children: dict[str, Child] = {}
                try:
                    for role in ("liaison", "baseline"):
                        extra = ("--service-url", service_url) if role == "liaison" else ()
                        children[role] = await start_child(role, *extra, max_seconds=lifetime)
                    press = {k: children["liaison"].info[k] for k in ("message_id", "action")}
                    for role in ("baseline", "liaison"):
                        run = Run(role)
                        requests = invokes(total, service_url=service_url, **press)
                        url = f"{children[role].info['url']}/api/messages"
                        await load(http, run, url, requests, args.warmup, args.rate, progress)
                        runs.append(run)
                except RuntimeError as error:
                    problems.append(str(error))
                finally:
                    for role, child in children.items():
                        stats = await child.stop()
                        for run in runs:
                            if run.name == role:
                                run.server = stats
    finally:
        standin_stats = await standin.stop()
    for run in runs:
        if run.name == "liaison":
            run.server["standin"] = standin_stats
    return runs


def report(runs: list[Run], problems: list[str], args: argparse.Namespace) -> bool:
    """Print the table and the ratio; True when every invoke was answered with a card."""
    table = Table(
        title=f"Teams invoke answer time: {args.requests} adaptiveCard/action invokes at "
        f"{args.rate:g}/s (+{args.warmup} warm-up), loopback"
    )
    columns = ("server", "p50 ms", "p99 ms", "mean ms", "max ms", "errors", "sent/s", "lag ms")
    for column in columns:
        table.add_column(column, justify="left" if column == "server" else "right")
    for run in runs:
        figures = ["-"] * 4
        if run.latencies_ms:
            figures = [
                f"{run.percentile(50):.2f}",
                f"{run.percentile(99):.2f}",
                f"{run.mean:.2f}",
                f"{max(run.latencies_ms):.2f}",
            ]
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
    for problem in problems:
        console.print(f"[red]{problem}[/]")
    for run in runs:
        if run.errors:
            console.print(f"[red]{run.name}: {run.errors} failed invokes: {run.statuses}[/]")
    by_name = {run.name: run for run in runs}
    base, liaison = by_name.get("baseline"), by_name.get("liaison")
    if base and liaison and base.latencies_ms and liaison.latencies_ms:
        p50 = liaison.percentile(50) / base.percentile(50)
        p99 = liaison.percentile(99) / base.percentile(99)
        console.print(f"Liaison/bare Agents SDK app: p50 × {p50:.2f}, p99 × {p99:.2f}")
    if liaison:
        calls = liaison.server.get("standin", {}).get("calls", {})
        console.print(
            f"[dim]Liaison's work per press: {liaison.server.get('accepted_events')} accepted "
            f"event(s), {calls.get('reply', 0)} chat answers and {calls.get('update', 0)} card "
            f"update(s) through the connector stand-in[/]"
        )
        text = json.dumps(liaison.last_answer.get("value", {}))
        console.print(f"[dim]last answer is the owner's card: {'Accepted by' in text}[/]")
    return all(run.errors == 0 for run in runs) and not problems and len(runs) == 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="measured invokes per server")
    parser.add_argument("--rate", type=float, default=25.0, help="invokes per second")
    parser.add_argument("--warmup", type=int, default=50, help="invokes sent first, not counted")
    parser.add_argument(
        "--serve", choices=("standin", "baseline", "liaison"), help=argparse.SUPPRESS
    )
    parser.add_argument("--service-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=300.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if args.serve == "standin":
        asyncio.run(serve_standin(args.max_seconds))
    elif args.serve == "baseline":
        asyncio.run(serve_baseline(args.max_seconds))
    elif args.serve == "liaison":
        asyncio.run(serve_liaison(args.service_url, args.max_seconds))
    else:
        if args.requests < 1 or args.rate <= 0 or args.warmup < 0:
            parser.error("--requests must be ≥ 1, --rate > 0 and --warmup ≥ 0")
        problems: list[str] = []
        runs = asyncio.run(bench(args, problems))
        sys.exit(0 if report(runs, problems, args) else 1)


if __name__ == "__main__":
    main()
