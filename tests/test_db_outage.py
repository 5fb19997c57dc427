"""The database goes away: requests that need it answer 503 with `Retry-After` (Slack: a
private "try again in a minute"), the loops back off with one log line per state change,
and a server started without one says so in one line. On real PostgreSQL, whose database
is made to refuse connections mid-test and then let back in."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import psycopg
import pytest
from sqlalchemy import exc
from sqlmodel import select, text

from bot.core.business_time import Company
from bot.core.delivery import Deliverer
from bot.core.text import text_for
from bot.slack.app import database_down_ack
from digests import sla
from digests.scheduler import Scheduler
from storage import campaigns, members
from storage.db import Store, busy, make_engine, reason, unavailable
from storage.models import EventKind, Lead, LeadEvent
from tests.conftest import PG_ADMIN_URL
from tests.loopback import free_port
from tests.slack_standin import SlackStandIn
from tests.support import (
    WEBHOOK_SECRET,
    LiveServer,
    eventually,
    make_settings,
    signed_lead_headers,
    slack_settings,
    slack_with,
    teams_settings,
)
from tests.teams_standin import Person, TeamsStandIn, connector_with
from tests.test_slack import post_slack, posted_cards, press, submit, text_of
from tests.test_teams import Teams

ROOT = Path(__file__).parent.parent
LIAISON = [sys.executable, "-c", "from app import main; main()"]
TRY_AGAIN = text_for("database_down")
ALICE = Person("alice", "Alice", "Adams")


# ---------------------------------------------------------------- the outage


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(
        PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    )


def cut_off(url: str) -> None:
    """The database refuses new connections and drops the ones it has (as when it is
    restarted or failed over)."""
    name = url.rsplit("/", 1)[1]
    with _admin() as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )


def let_back(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with _admin() as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@contextmanager
def outage(url: str) -> Iterator[None]:
    cut_off(url)
    try:
        yield
    finally:
        let_back(url)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None]


def lead(external_id: str, name: str, owner: str = "alice@example.com") -> dict[str, Any]:
    return {
        "external_id": external_id,
        "name": name,
        "company": "Globex",
        "campaign": "Webinar",
        "owner_email": owner,
    }


async def post_leads(
    http: aiohttp.ClientSession, url: str, body: Any
) -> tuple[int, dict[str, str], Any]:
    raw = json.dumps(body).encode()
    async with http.post(f"{url}/api/leads", data=raw, headers=signed_lead_headers(raw)) as r:
        return r.status, dict(r.headers), await r.json()


def leads_of(store: Store) -> list[Lead]:
    with store.session() as session:
        return list(session.exec(select(Lead).order_by(Lead.id)).all())  # type: ignore[arg-type]


# ---------------------------------------------------------------- the lead webhook


async def test_the_webhook_answers_503_while_the_database_is_away(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    live = await LiveServer(make_settings(pg_url, SLACK_BOT_TOKEN="")).start()
    try:
        async with aiohttp.ClientSession() as http:
            status, _, body = await post_leads(http, live.url, lead("L-1", "Jordan Patel"))
            assert status == 200 and body["leads"][0]["status"] == "created"
            before = leads_of(live.store)

            caplog.clear()
            with outage(pg_url):
                status, headers, body = await post_leads(
                    http, live.url, [lead("L-2", "Priya Rossi"), lead("L-3", "Sam Wu")]
                )
                assert status == 503
                assert int(headers["Retry-After"]) > 0
                assert headers["Content-Type"].startswith("application/json")
                assert body == {"error": TRY_AGAIN}
                async with http.get(f"{live.url}/healthz") as health:
                    assert health.status == 503
            assert not tracebacks(caplog), [r.getMessage() for r in tracebacks(caplog)]

            # Back: the sender retries what was refused, and nothing stored before is lost.
            status, _, body = await post_leads(
                http, live.url, [lead("L-1", "Jordan Patel"), lead("L-2", "Priya Rossi")]
            )
            assert status == 200
            assert [x["status"] for x in body["leads"]] == ["duplicate", "created"]
        after = leads_of(live.store)
        assert [x.external_id for x in after] == ["L-1", "L-2"]
        assert after[0].model_dump() == before[0].model_dump()
    finally:
        await live.stop()


# ---------------------------------------------------------------- Slack


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = await slack_with("alice", "carol")
    yield standin
    await standin.stop()


@pytest.fixture
async def slack_server(pg_url: str, slack: SlackStandIn) -> AsyncIterator[LiveServer]:
    settings = slack_settings(
        pg_url,
        slack,
    )
    live = await LiveServer(settings).start()
    with live.store.session() as session:
        carol = members.upsert_member(
            session,
            now=datetime.now(UTC),
            email="carol@example.com",
            name="Carol Chen",
            role="marketer",
        )
        campaign = campaigns.ensure_campaign(session, name="Webinar")
        campaign.marketer_id = carol.id
        session.add(campaign)
    yield live
    await live.stop()


def two(cards: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    return cards[:2] if len(cards) >= 2 else None


def answers(slack: SlackStandIn) -> list[dict[str, Any]]:
    return slack.of("response_url")


def not_a_fit_events(store: Store) -> list[LeadEvent]:
    with store.session() as session:
        query = select(LeadEvent).where(LeadEvent.kind == EventKind.not_a_fit.value)
        return list(session.exec(query).all())


PICKED = {
    "criteria": {
        "criteria": {
            "type": "multi_static_select",
            "selected_options": [
                {"value": "budget", "text": {"type": "plain_text", "text": "Budget"}}
            ],
        }
    },
    "comment": {"comment": {"type": "plain_text_input", "value": "No budget this year"}},
}


async def test_slack_users_are_told_privately_to_try_again(
    pg_url: str,
    slack_server: LiveServer,
    slack: SlackStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = slack_server
    async with aiohttp.ClientSession() as http:
        status, _, _ = await post_leads(
            http, server.url, [lead("L-1", "Jordan Patel"), lead("L-2", "Priya Rossi")]
        )
    assert status == 200
    await server.settle()
    first, second = await eventually(lambda: two(posted_cards(slack, "U0ALICE")))
    # A "Not a fit" modal opened while all was well, submitted during the outage.
    status, _ = await post_slack(
        server,
        urlencode(
            {"payload": json.dumps(press(slack, "U0ALICE", second, "lead.not_a_fit"))}
        ).encode(),
        "application/x-www-form-urlencoded",
    )
    assert status == 200
    view = (await eventually(lambda: slack.of("views.open")))[-1]["view"]
    await server.settle()
    before = leads_of(server.store)
    answered = len(answers(slack))

    caplog.clear()
    with outage(pg_url):
        # A slash command: acked, then a private "try again" at its response_url.
        command = {
            "command": "/leads",
            "text": "",
            "user_id": "U0ALICE",
            "user_name": "alice",
            "channel_id": "D0ALICE",
            "team_id": "T0CAG",
            "trigger_id": "t-1",
            "response_url": slack.response_url("leads"),
        }
        status, body = await post_slack(
            server, urlencode(command).encode(), "application/x-www-form-urlencoded"
        )
        assert status == 200 and body == ""
        (said,) = await eventually(lambda: answers(slack)[answered:])
        assert said["response_type"] == "ephemeral" and TRY_AGAIN in text_of(said)

        # A click on the lead's card: the same, at the click's response_url.
        click = press(slack, "U0ALICE", first, "lead.accept")
        status, body = await post_slack(
            server,
            urlencode({"payload": json.dumps(click)}).encode(),
            "application/x-www-form-urlencoded",
        )
        assert status == 200
        (said,) = await eventually(lambda: answers(slack)[answered + 1 :])
        assert said["response_type"] == "ephemeral" and TRY_AGAIN in text_of(said)
        assert said["replace_original"] is False  # the card itself is left as it was

        # The modal stays open with what was typed, the reason under its first field.
        status, body = await post_slack(
            server,
            urlencode({"payload": json.dumps(submit("U0ALICE", view, PICKED))}).encode(),
            "application/x-www-form-urlencoded",
        )
        assert status == 200
        assert json.loads(body) == {
            "response_action": "errors",
            "errors": {"criteria": TRY_AGAIN},
        }
    assert not tracebacks(caplog), [r.getMessage() for r in tracebacks(caplog)]
    assert not [c for c in slack.calls if c.method == "chat.update"]

    # Back: the same click and the same submission go through; nothing was lost.
    click = press(slack, "U0ALICE", first, "lead.accept")
    status, _ = await post_slack(
        server,
        urlencode({"payload": json.dumps(click)}).encode(),
        "application/x-www-form-urlencoded",
    )
    assert status == 200
    update = (await eventually(lambda: slack.of("chat.update")))[-1]
    assert update["ts"] == first["ts"] and "Accepted by Alice Adams" in text_of(update)
    status, body = await post_slack(
        server,
        urlencode({"payload": json.dumps(submit("U0ALICE", view, PICKED))}).encode(),
        "application/x-www-form-urlencoded",
    )
    assert status == 200 and body == ""
    await server.settle()
    (verdict,) = not_a_fit_events(server.store)
    assert verdict.data["criteria"] == ["budget"]
    after = leads_of(server.store)
    assert [(x.id, x.external_id, x.name) for x in after] == [
        (x.id, x.external_id, x.name) for x in before
    ]


# ---------------------------------------------------------------- Teams


async def test_teams_activities_answer_503_while_the_database_is_away(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    connector: TeamsStandIn = await connector_with([ALICE])
    live = await LiveServer(teams_settings(pg_url)).start()
    try:
        async with aiohttp.ClientSession() as http:

            def message(words: str) -> dict[str, Any]:
                return Teams(live, connector, http).activity("personal_message", ALICE, text=words)

            async def post(activity: dict[str, Any]) -> tuple[int, dict[str, str], str]:
                async with http.post(f"{live.url}/api/messages", json=activity) as response:
                    return response.status, dict(response.headers), await response.text()

            status, _, _ = await post(message("help"))
            assert status == 202
            with live.store.session() as session:
                alice = members.member_by(session, teams_user_id=ALICE.user_id)
            assert alice is not None and alice.email == ALICE.email
            said = len(connector.calls)

            caplog.clear()
            with outage(pg_url):
                status, headers, body = await post(message("leads"))
                assert status == 503
                assert int(headers["Retry-After"]) > 0
                assert json.loads(body) == {"error": TRY_AGAIN}
                # Alice hears it in her own chat (no silence, no stack trace).
                told = [
                    c.body.get("text", "")
                    for c in connector.calls[said:]
                    if c.conversation == ALICE.conversation
                ]
                assert told == [TRY_AGAIN]
            assert not tracebacks(caplog), [r.getMessage() for r in tracebacks(caplog)]

            status, _, _ = await post(message("help"))
            assert status == 202
        with live.store.session() as session:
            again = members.member_by(session, teams_user_id=ALICE.user_id)
        assert again is not None and (again.id, again.email) == (alice.id, alice.email)
    finally:
        await live.stop()
        await connector.stop()


# ---------------------------------------------------------------- the loops


def counting_work(calls: list[datetime]) -> Any:
    def work(store: Store, *, now: datetime, company: Company) -> sla.TickReport:
        calls.append(now)
        with store.session() as session:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        return sla.TickReport()

    return work


@pytest.mark.parametrize("where", ["server", "console"])
async def test_the_loops_back_off_and_say_so_once(
    pg_store: Store, pg_url: str, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    """In a server (tick job + sender loop in the event loop) and in the console (a pass
    from a background thread)."""
    caplog.set_level(logging.INFO)
    calls: list[datetime] = []
    jobs = Scheduler(
        pg_store, Deliverer(pg_store, []), Company(), interval=0.1, work=(counting_work(calls),)
    )
    if where == "server":
        jobs.start(ticks=True)
    else:
        jobs.start_in_background()
    try:
        await eventually(lambda: len(calls) >= 2)
        caplog.clear()
        with outage(pg_url):
            calls.clear()
            await asyncio.sleep(3.0)  # 30 ticks' worth
            attempts = len(calls)
        ours = [r for r in caplog.records if not r.name.startswith("apscheduler")]
        # Doubling from 0.1 s: 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s — not one try per tick.
        assert 1 <= attempts <= 7, attempts
        assert not tracebacks(caplog), [r.getMessage() for r in tracebacks(caplog)]
        assert [r.getMessage().split(":")[0] for r in ours] == ["database unreachable"]
        assert ours[0].getMessage().endswith(", retrying")
        # Back: one line saying so, and the tick runs at its pace again.
        await eventually(lambda: "database reachable again after" in caplog.text, timeout=10)
        calls.clear()
        await asyncio.sleep(1.0)
        assert len(calls) >= 5
        ours = [r for r in caplog.records if not r.name.startswith("apscheduler")]
        assert [r.getMessage().split(" after")[0] for r in ours][1:] == ["database reachable again"]
    finally:
        jobs.stop()


def test_an_idle_server_logs_a_handful_of_lines_through_an_outage(pg_url: str) -> None:
    """`liaison serve` with its tick at 0.25 s: twelve ticks are its idle minute."""
    import threading

    port = free_port()
    env = dict(
        os.environ,
        LIAISON_DATABASE_URL=pg_url,
        LIAISON_WEBHOOK_SECRET=WEBHOOK_SECRET,
        LIAISON_TICK_SECONDS="0.25",
        SLACK_BOT_TOKEN="",
    )
    server = subprocess.Popen(
        [*LIAISON, "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert server.stdout is not None
    stdout = server.stdout
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    reader.start()

    def health() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    try:
        deadline = time.monotonic() + 30
        while health() != 200:
            assert server.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        time.sleep(1.0)  # a few healthy ticks
        start = len(lines)
        with outage(pg_url):
            time.sleep(3.0)  # the idle minute: twelve ticks of 0.25 s
            during = lines[start:]
            assert health() == 503
        deadline = time.monotonic() + 15
        while not any("database reachable again" in line for line in lines[start:]):
            assert time.monotonic() < deadline, "".join(lines[start:])
            time.sleep(0.2)
        assert health() == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
        reader.join(timeout=10)
    assert len(during) <= 4, "".join(during)
    assert not any("Traceback" in line for line in lines), "".join(lines)
    unreachable = [line for line in during if "database unreachable" in line]
    assert len(unreachable) == 1 and unreachable[0].rstrip().endswith(", retrying")


# ---------------------------------------------------------------- starting without one


@pytest.mark.parametrize("command", ["serve", "socket", "console"])
def test_starting_without_a_database_says_so_in_one_line(tmp_path: Path, command: str) -> None:
    port = free_port()  # nobody listens there
    url = f"postgresql+psycopg://liaison:s3cret@127.0.0.1:{port}/liaison"
    if command == "console":
        url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'liaison.db'}"
    env = dict(
        os.environ,
        LIAISON_DATABASE_URL=url,
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_APP_TOKEN="xapp-test",
        SLACK_SIGNING_SECRET="s",
    )
    done = subprocess.run(
        [*LIAISON, command, *(["--port", str(free_port())] if command == "serve" else [])],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        input="",
        timeout=60,
    )
    output = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0
    assert len(output) == 1, "\n".join(output)
    (line,) = output
    assert line.startswith("database unreachable")
    assert "s3cret" not in line
    if command == "console":
        assert "liaison.db" in line and "unable to open database file" in line
    else:
        assert f"postgresql+psycopg://liaison:***@127.0.0.1:{port}/liaison" in line
        assert "Connection refused" in line


# ---------------------------------------------------------------- what counts as "away"


def error_of(store: Store, sql: str) -> BaseException:
    try:
        with store.session() as session:
            session.exec(text(sql))  # type: ignore[call-overload]
    except Exception as error:
        return error
    raise AssertionError(f"{sql} did not fail")


def test_only_a_database_that_does_not_answer_counts_as_away(
    sqlite_store: Store, pg_store: Store, pg_url: str, tmp_path: Path
) -> None:
    """A bad query is a fault of ours (a 500 and a traceback, to be fixed), never a 503."""
    assert not unavailable(error_of(sqlite_store, "SELECT * FROM no_such_table"))
    assert not unavailable(error_of(pg_store, "SELECT * FROM no_such_table"))
    assert not unavailable(error_of(pg_store, "SELECT 1/0"))
    assert not unavailable(ValueError("not a database error"))

    gone = Store(make_engine(f"sqlite:///{tmp_path / 'no' / 'dir' / 'x.db'}"))
    assert unavailable(error_of(gone, "SELECT 1"))
    with outage(pg_url):
        away = error_of(pg_store, "SELECT 1")
    assert unavailable(away) and "not currently accepting connections" in reason(away)
    # Dropped mid-transaction (57P01, "terminating connection due to administrator command").
    with pytest.raises(exc.OperationalError) as dropped, pg_store.session() as session:
        session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        with outage(pg_url):
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    assert unavailable(dropped.value) and "terminating connection" in reason(dropped.value)
    closed = Store(make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"))
    assert unavailable(error_of(closed, "SELECT 1"))
    assert "\n" not in reason(error_of(closed, "SELECT 1"))


def test_a_pool_ping_that_finds_the_socket_closed_counts_as_away() -> None:
    """psycopg's answer when the pool's ping finds the connection cut: SQLAlchemy wraps a
    ProgrammingError ("can't change 'autocommit' now") raised while handling the driver's
    OperationalError ("connection socket closed"); seen in CI as a traceback per pass."""
    import psycopg

    inner = psycopg.ProgrammingError("can't change 'autocommit' now")
    inner.__context__ = psycopg.OperationalError("connection socket closed")
    pinged = exc.ProgrammingError("ping", {}, inner)
    pinged.__cause__ = inner
    assert unavailable(pinged)
    assert not busy(pinged)
    locked = exc.OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked"))
    assert unavailable(locked) and busy(locked)  # away for a moment: retried, not backed off


def test_a_modal_without_fields_and_a_command_are_told_too() -> None:
    """The acks for payloads the journey above does not reach: a modal with nothing to type
    in (no field to put the reason under) and a listener that failed before acking."""
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Digest"}, "blocks": []}
    answer = json.loads(database_down_ack({"type": "view_submission", "view": view}).body)
    assert answer["response_action"] == "update"
    assert answer["view"]["title"] == view["title"]
    assert TRY_AGAIN in json.dumps(answer["view"]["blocks"], ensure_ascii=False)
    command = database_down_ack({"command": "/leads", "user_id": "U0ALICE"})
    assert command.status == 200
    assert json.loads(command.body) == {"response_type": "ephemeral", "text": TRY_AGAIN}
