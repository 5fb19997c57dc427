"""SLA tick cost with 100,000 open leads, and outbox throughput against Slack's pace.

Run from the repository root:

    .venv/bin/python bench/tick.py [--leads 100000] [--due 200] [--repeat 20] [--inner 10]
                                   [--messages 20] [--fanout 200]
                                   [--skip-sqlite] [--skip-postgres]

About 2 minutes with the defaults on 2 cores. The scratch PostgreSQL database is
`liaison_bench_tick` on the server of LIAISON_TEST_PG (default: the tests' one); it is
dropped at the end. With both databases skipped only the outbox part runs.

For each database (a scratch PostgreSQL database created and dropped here, and a SQLite
file in a temp dir) the schema is migrated with `Store.open`, and a company is loaded with
bulk inserts (PostgreSQL COPY, SQLAlchemy Core executemany on SQLite): managers and reps in
six time zones, company holidays, some time away, `--leads` handed-off leads and their two
open clocks (first_touch and verdict). Each lead was handed off some time in the last two
business days of its owner, and its clocks are as the previous tick left them: the steps
already due taken (stage), `next_at` the next step, computed with the engine's own
`Steps.of` and the owner's `calendar_of`. So most clocks are not due at the measured `now`
(a Monday 14:00 UTC): their next step lies over the coming days, or they are escalated
and wait for the rep (`next_at` NULL). `--due` clocks took a step in the 5 s before `now`,
as in a real tick every 5 s: reminders, breaches and escalations to the manager.

Measured in the same run on the same database, interleaved, many times:

- bare: `SELECT <clock columns> FROM sla_clocks WHERE next_at <= :now AND closed_at IS NULL
  ORDER BY next_at LIMIT 500 FOR UPDATE SKIP LOCKED` (no FOR UPDATE on SQLite, which has no
  row locks) as SQLAlchemy Core text on a connection checked out from the same engine, in
  a transaction that is rolled back; checkout, BEGIN, query, fetch, ROLLBACK are timed;
- tick: one `digests.sla.tick(store, now=now, company=Defaults())`.

Each repetition times `--inner` bare queries with the due rows in place, one tick (which
advances them and writes their messages to the outbox), then `--inner` pairs of bare
query and tick at the same `now`, when nothing is due any more. Between repetitions the
due rows' stage and next_at are restored and the outbox is emptied, outside the timed
part, so every repetition does the same work.

The target (tick ≤ 1.5× the bare query, < 50 ms) is held against the empty tick: that is
the cost of a tick as such with 100,000 open leads, and it is what must not grow with the
number of open leads. A tick with due rows also does per-row work that the bare query does
not (owner, lead, calendar, messages written to the outbox), proportional to the number of
due rows; its figures and its cost per due row are printed alongside, for information.

Outbox throughput: the Slack Web API stand-in (tests/slack_standin.py) runs in this event
loop; a `bot.outbox.sender.Sender` over a `bot.core.delivery.Deliverer` with a `SlackMessenger`
(client from `bot.slack.app.make_client` pointed at the stand-in) drains `--messages` DMs owed
to one member, i.e. one channel, where Slack allows about 1 message per second. The
arrival time of every chat.postMessage at the stand-in gives the achieved rate and the
most messages in any 1-second window. Then, for information, `--fanout` DMs to as many
different members (a busy tick's worth) show how fast the outbox drains across channels.
The outbox part uses the first database measured.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import DateTime, Engine, bindparam, event, insert, text  # noqa: E402

from bot.core.business_time import Calendar, add_business  # noqa: E402
from bot.core.business_time import Company as Defaults  # noqa: E402
from digests import sla  # noqa: E402
from handlers.clocks import TickReport  # noqa: E402
from storage import definitions, policies  # noqa: E402
from storage import members as stored_members  # noqa: E402
from storage import outbox as stored_outbox  # noqa: E402
from storage.calendars import calendar_of  # noqa: E402
from storage.clocks import HOUR  # noqa: E402
from storage.db import Store  # noqa: E402
from storage.models import (  # noqa: E402
    Away,
    Clock,
    ClockKind,
    Holiday,
    Lead,
    Member,
    SlaPolicy,
)

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday: London 14:00, New York 09:00
TICK_EVERY = timedelta(seconds=5)  # the due clocks took their step since the last tick
LEAD_AGE_MINUTES = 16 * 60  # leads were handed off over the last two business days
TARGET_RATIO = 1.5
TARGET_MS = 50.0
PG_ADMIN_URL = os.environ.get(
    "LIAISON_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PG_DB = "liaison_bench_tick"
TEAMS = 30
REPS_PER_TEAM = 10
ZONES = (
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "UTC",
    "America/Chicago",
    "Asia/Kolkata",
)
HOLIDAYS = {
    date(2026, 12, 24): "Christmas Eve",
    date(2026, 12, 25): "Christmas Day",
    date(2026, 12, 31): "New Year's Eve",
    date(2027, 1, 1): "New Year's Day",
}
CLOCK_COLUMNS = (
    "id, lead_id, kind, ref, owner_id, policy_version, started_at, budget_seconds, "
    "remind_share, grace_seconds, stage, snoozes, next_at, closed_at, outcome"
)
BARE_SQL = (
    f"SELECT {CLOCK_COLUMNS} FROM sla_clocks WHERE next_at <= :now AND closed_at IS NULL "
    "ORDER BY next_at LIMIT 500"
)
STEPS = ("remind", "due", "escalate")

console = Console()


# ------------------------------------------------------------------ the company


def business_before(calendar: Calendar, end: datetime, seconds: float) -> datetime:
    """The moment `seconds` of working time before `end` (the inverse of add_business)."""
    left = seconds
    day = end.astimezone(ZoneInfo(calendar.tz)).date() + timedelta(days=1)
    for _ in range(3 * 366):
        span = calendar.day_span(day)
        day -= timedelta(days=1)
        if span is None or span[0] >= end:
            continue
        pieces = [(span[0], min(span[1], end))]
        for gone_from, gone_until in calendar.away:
            pieces = [
                piece
                for lo, hi in pieces
                for piece in (
                    ((lo, hi),)
                    if gone_until <= lo or gone_from >= hi
                    else ((lo, max(lo, gone_from)), (min(hi, gone_until), hi))
                )
                if piece[1] > piece[0]
            ]
        for lo, hi in sorted(pieces, reverse=True):
            length = (hi - lo).total_seconds()
            if left <= length:
                return hi - timedelta(seconds=left)
            left -= length
    raise ValueError("no working time within the horizon")


@dataclass(frozen=True)
class Budgets:
    """Per clock kind: (budget, remind share, grace) from the SLA policy in force."""

    policy_version: int
    of: dict[str, tuple[float, float, float]]

    @classmethod
    def from_policy(cls, policy: SlaPolicy) -> Budgets:
        grace = policy.escalate_after_hours * HOUR
        return cls(
            policy.version,
            {
                ClockKind.first_touch.value: (
                    policy.first_touch_hours * HOUR,
                    policy.remind_share,
                    grace,
                ),
                ClockKind.verdict.value: (
                    policy.verdict_hours * HOUR,
                    policy.remind_share,
                    grace,
                ),
            },
        )


_steps_cache: dict[tuple[Calendar, datetime, str], tuple[datetime, datetime, datetime]] = {}
_start_cache: dict[tuple[Calendar, int], datetime] = {}


def steps_of(calendar: Calendar, start: datetime, kind: str, budgets: Budgets) -> tuple[Any, ...]:
    """(remind, due, escalate) exactly as the tick computes them (`sla.Steps.of`)."""
    key = (calendar, start, kind)
    if key not in _steps_cache:
        budget, share, grace = budgets.of[kind]
        clock = SimpleNamespace(
            snoozes=[],
            started_at=start,
            budget_seconds=budget,
            remind_share=share,
            grace_seconds=grace,
        )
        steps = sla.Steps.of(clock, calendar)  # type: ignore[arg-type]
        _steps_cache[key] = (steps.remind, steps.due, steps.escalate)
    return _steps_cache[key]


def state_at(steps: tuple[datetime, ...], moment: datetime) -> tuple[int, datetime | None]:
    """Stage and next_at of a clock as a tick at `moment` leaves them."""
    stage = sum(1 for step in steps if step <= moment)
    return stage, (steps[stage] if stage < len(steps) else None)


@dataclass
class Company:
    members: list[dict[str, Any]]
    holidays: list[dict[str, Any]]
    aways: list[dict[str, Any]]
    leads: list[dict[str, Any]] = field(default_factory=list)
    clocks: list[dict[str, Any]] = field(default_factory=list)
    due: list[tuple[int, int, datetime]] = field(default_factory=list)  # id, stage, next_at


def people(seed: int) -> Company:
    """Managers and reps (some with their own hours or a four-day week), holidays, away."""
    rng = random.Random(seed)
    members: list[dict[str, Any]] = []
    aways: list[dict[str, Any]] = []
    created = NOW - timedelta(days=400)
    for team in range(TEAMS):
        zone = ZONES[team % len(ZONES)]
        manager_id = len(members) + 1
        members.append(
            _member(manager_id, f"Manager {team}", "manager", f"team{team}", None, zone, created)
        )
        for n in range(REPS_PER_TEAM):
            rep_id = len(members) + 1
            rep = _member(
                rep_id, f"Rep {team}-{n}", "rep", f"team{team}", manager_id, zone, created
            )
            if n == 7:
                rep.update(work_start="08:00", work_end="16:00")
            if n == 8:
                rep.update(workdays="0,1,2,3")
            members.append(rep)
            if rng.random() < 0.1:  # time away: some last month, some next month
                starts = NOW + timedelta(days=rng.choice([-30, -20, 20, 30]))
                aways.append(
                    dict(
                        id=len(aways) + 1,
                        member_id=rep_id,
                        starts_at=starts,
                        until=starts + timedelta(days=5),
                        created_at=created,
                    )
                )
    holidays = [dict(day=day, name=name) for day, name in HOLIDAYS.items()]
    return Company(members, holidays, aways)


def _member(
    member_id: int,
    name: str,
    role: str,
    team: str,
    manager_id: int | None,
    zone: str,
    created: datetime,
) -> dict[str, Any]:
    handle = name.lower().replace(" ", "").replace("-", "_")
    return dict(
        id=member_id,
        email=f"{handle}@example.com",
        name=name,
        handle=handle,
        role=role,
        team=team,
        manager_id=manager_id,
        timezone=zone,
        slack_user_id=f"U{member_id:07d}",
        slack_dm_channel=None,
        teams_user_id=None,
        teams_reference=None,
        work_start=None,
        work_end=None,
        workdays=None,
        created_at=created,
    )


def leads_and_clocks(
    company: Company,
    calendars: dict[int, Calendar],
    budgets: Budgets,
    definition_id: int,
    leads: int,
    due: int,
    seed: int,
) -> None:
    """`leads` handed-off leads with their first_touch and verdict clocks; `due` of the
    clocks took their step since the previous tick, 5 s ago."""
    rng = random.Random(seed)
    reps = [m for m in company.members if m["role"] == "rep"]
    earlier = NOW - TICK_EVERY
    # Reps who worked through the last tick interval can have a step in it.
    on_duty = [
        m
        for m in reps
        if add_business(calendars[m["id"]], earlier, TICK_EVERY.total_seconds()) == NOW
    ]
    due_leads = set(rng.sample(range(1, leads + 1), due))
    company.leads, company.clocks, company.due = [], [], []
    for lead_id in range(1, leads + 1):
        if lead_id in due_leads:
            owner, start, clocks = _due_lead(rng, on_duty, calendars, budgets, earlier)
        else:
            owner = rng.choice(reps)
            calendar = calendars[owner["id"]]
            age = rng.randint(1, LEAD_AGE_MINUTES)
            start = _start_cache.get((calendar, age))
            if start is None:
                start = _start_cache[(calendar, age)] = business_before(calendar, NOW, age * 60.0)
            clocks = [
                (kind, *state_at(steps_of(calendar, start, kind, budgets), NOW))
                for kind in budgets.of
            ]
        company.leads.append(
            dict(
                id=lead_id,
                source="bench",
                external_id=f"B{lead_id:07d}",
                name=f"Lead {lead_id}",
                company=f"Company {lead_id % 997}",
                email=f"lead{lead_id}@example.org",
                title="Head of Operations",
                campaign_id=None,
                owner_id=owner["id"],
                owner_email=owner["email"],
                definition_id=definition_id,
                state="handed_off",
                attributes={},
                created_at=start,
                handed_off_at=start,
            )
        )
        for n, (kind, stage, next_at) in enumerate(clocks):
            clock_id = 2 * lead_id - 1 + n
            budget, share, grace = budgets.of[kind]
            company.clocks.append(
                dict(
                    id=clock_id,
                    lead_id=lead_id,
                    kind=kind,
                    ref="",
                    owner_id=owner["id"],
                    policy_version=budgets.policy_version,
                    started_at=start,
                    budget_seconds=budget,
                    remind_share=share,
                    grace_seconds=grace,
                    stage=stage,
                    snoozes=[],
                    next_at=next_at,
                    closed_at=None,
                    outcome=None,
                )
            )
            if next_at is not None and next_at <= NOW:
                company.due.append((clock_id, stage, next_at))


def _due_lead(
    rng: random.Random,
    on_duty: list[dict[str, Any]],
    calendars: dict[int, Calendar],
    budgets: Budgets,
    earlier: datetime,
) -> tuple[dict[str, Any], datetime, list[tuple[str, int, datetime | None]]]:
    """A lead one of whose clocks reminds, breaches or escalates within the last 5 s."""
    while True:
        owner = rng.choice(on_duty)
        calendar = calendars[owner["id"]]
        kind = rng.choice(list(budgets.of))
        step = rng.randrange(len(STEPS))
        budget, share, grace = budgets.of[kind]
        offset = (budget * share, budget, budget + grace)[step]
        moment = NOW - timedelta(microseconds=rng.randrange(0, 4_900_000))
        start = business_before(calendar, moment, offset)
        clocks = [
            (k, *state_at(steps_of(calendar, start, k, budgets), earlier)) for k in budgets.of
        ]
        due_here = [c for c in clocks if c[2] is not None and earlier < c[2] <= NOW]
        if len(due_here) == 1 and due_here[0][0] == kind and due_here[0][1] == step:
            return owner, start, clocks


# ------------------------------------------------------------------ loading


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:>28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def chunks(rows: list[dict[str, Any]], size: int = 5000) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def insert_rows(store: Store, table: Any, rows: list[dict[str, Any]], progress: Progress) -> None:
    """Bulk insert: COPY on PostgreSQL, Core executemany elsewhere."""
    if not rows:
        return
    task = progress.add_task(f"{store.engine.dialect.name} {table.name}", total=len(rows))
    if store.engine.dialect.name == "postgresql":
        from psycopg.types.json import Json

        columns = list(rows[0])
        json_columns = {c.name for c in table.columns if c.type.__class__.__name__ == "JSON"}
        raw = store.engine.raw_connection()
        try:
            cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
            names = ", ".join(f'"{c}"' for c in columns)
            with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                for part in chunks(rows):
                    for row in part:
                        copy.write_row(
                            [
                                Json(row[c]) if c in json_columns and row[c] is not None else row[c]
                                for c in columns
                            ]
                        )
                    progress.advance(task, len(part))
            if "id" in columns:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"(SELECT max(id) FROM {table.name}))"
                )
            raw.commit()
        finally:
            raw.close()
        return
    with store.engine.begin() as connection:
        for part in chunks(rows):
            connection.execute(insert(table), part)
            progress.advance(task, len(part))


def load(store: Store, args: argparse.Namespace, progress: Progress) -> Company:
    """The company, leads and clocks, loaded into `store`; returns the rows and the due ids."""
    company = people(args.seed)
    insert_rows(store, Member.__table__, company.members, progress)  # type: ignore[attr-defined]
    insert_rows(store, Holiday.__table__, company.holidays, progress)  # type: ignore[attr-defined]
    insert_rows(store, Away.__table__, company.aways, progress)  # type: ignore[attr-defined]
    with store.session() as session:
        budgets = Budgets.from_policy(policies.current_policy(session))
        definition, _ = definitions.current_definition(session)
        calendars = {
            m.id or 0: calendar_of(session, m, Defaults())
            for m in stored_members.all_members(session)
        }
    leads_and_clocks(
        company,
        calendars,
        budgets,
        definition.id or 0,
        args.leads,
        args.due,
        args.seed,
    )
    insert_rows(store, Lead.__table__, company.leads, progress)  # type: ignore[attr-defined]
    insert_rows(store, Clock.__table__, company.clocks, progress)  # type: ignore[attr-defined]
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))
    else:
        with store.engine.begin() as c:
            c.execute(text("ANALYZE"))
    return company


# ------------------------------------------------------------------ measuring


@dataclass
class Series:
    name: str
    seconds: list[float] = field(default_factory=list)

    def ms(self, q: float) -> float:
        """The median (q = 50) or the nearest-rank q-th percentile, in milliseconds."""
        data = sorted(self.seconds)
        if not data:
            return float("nan")
        if q == 50:
            return statistics.median(data) * 1000
        return data[max(0, math.ceil(q / 100 * len(data)) - 1)] * 1000


@dataclass
class DbResult:
    name: str
    due: int
    series: dict[str, Series]
    statements_due: Counter[str]
    statements_empty: Counter[str]
    messages: int
    plan: str
    shape: dict[str, Any]


def bare_query(engine: Engine) -> Callable[[datetime], tuple[float, int]]:
    sql = BARE_SQL + (" FOR UPDATE SKIP LOCKED" if engine.dialect.name == "postgresql" else "")
    statement = text(sql).bindparams(bindparam("now", type_=DateTime(timezone=True)))

    def run(now: datetime) -> tuple[float, int]:
        started = time.perf_counter()
        with engine.connect() as connection:
            transaction = connection.begin()
            rows = connection.execute(statement, {"now": now}).fetchall()
            transaction.rollback()
        return time.perf_counter() - started, len(rows)

    return run


def timed_tick(store: Store, now: datetime) -> tuple[float, TickReport]:
    started = time.perf_counter()
    report = sla.tick(store, now=now, company=Defaults())
    return time.perf_counter() - started, report


def restore(store: Store, due: list[tuple[int, int, datetime]]) -> None:
    """Put the due rows back as they were before the tick, and empty the outbox."""
    statement = text("UPDATE sla_clocks SET stage = :stage, next_at = :next_at WHERE id = :id")
    statement = statement.bindparams(bindparam("next_at", type_=DateTime(timezone=True)))
    with store.engine.begin() as connection:
        connection.execute(statement, [dict(id=i, stage=stage, next_at=at) for i, stage, at in due])
        connection.execute(text("DELETE FROM outbox"))


def count_statements(engine: Engine, action: Callable[[], Any]) -> Counter[str]:
    """Statements `action` sends, by verb and table (an untimed extra run)."""
    seen: Counter[str] = Counter()

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        verb = words[0].upper() if words else "?"
        table = ""
        upper = [w.upper() for w in words]
        for marker in ("FROM", "INTO", "UPDATE"):
            if marker in upper[:60] and upper.index(marker) + 1 < len(words):
                table = words[upper.index(marker) + 1].strip('"')
                break
        if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
            table = ""
        seen[f"{verb} {table}".strip()] += 1

    event.listen(engine, "before_cursor_execute", before)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", before)
    return seen


def query_plan(engine: Engine) -> str:
    sql = BARE_SQL.replace(":now", "'2026-11-23 14:00:00+00'")
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("BEGIN"))
            rows = connection.execute(
                text(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql} FOR UPDATE SKIP LOCKED")
            ).all()
            connection.rollback()
            return "\n".join(r[0] for r in rows)
        sql = BARE_SQL.replace(":now", "'2026-11-23 14:00:00.000000'")
        rows = connection.execute(text(f"EXPLAIN QUERY PLAN {sql}")).all()
        return "\n".join(str(r[-1]) for r in rows)


def measure(
    name: str, store: Store, company: Company, args: argparse.Namespace, progress: Progress
) -> DbResult:
    bare = bare_query(store.engine)
    series = {
        key: Series(key)
        for key in ("bare, due rows", "tick, due rows", "bare, nothing due", "tick, nothing due")
    }
    due = len(company.due)
    messages = 0
    task = progress.add_task(f"{name} repetitions", total=args.repeat + 1)
    for repetition in range(args.repeat + 1):  # the first is a warm-up, not recorded
        restore(store, company.due)
        record = repetition > 0
        for _ in range(args.inner):
            seconds, found = bare(NOW)
            if found != due:
                raise RuntimeError(f"bare query found {found} due rows, expected {due}")
            if record:
                series["bare, due rows"].seconds.append(seconds)
        seconds, report = timed_tick(store, NOW)
        if report.looked_at != due:
            raise RuntimeError(f"the tick looked at {report.looked_at} clocks, expected {due}")
        messages = report.messages
        if record:
            series["tick, due rows"].seconds.append(seconds)
        for _ in range(args.inner):
            seconds, found = bare(NOW)
            if found:
                raise RuntimeError(f"{found} rows still due after the tick")
            if record:
                series["bare, nothing due"].seconds.append(seconds)
            seconds, report = timed_tick(store, NOW)
            if report.looked_at:
                raise RuntimeError(f"an empty tick looked at {report.looked_at} clocks")
            if record:
                series["tick, nothing due"].seconds.append(seconds)
        progress.advance(task)
    restore(store, company.due)
    statements_due = count_statements(
        store.engine, lambda: sla.tick(store, now=NOW, company=Defaults())
    )
    statements_empty = count_statements(
        store.engine, lambda: sla.tick(store, now=NOW, company=Defaults())
    )
    restore(store, company.due)
    plan = query_plan(store.engine)
    stages = Counter(c["stage"] for c in company.clocks)
    future = sorted(c["next_at"] for c in company.clocks if c["next_at"] and c["next_at"] > NOW)
    shape = dict(
        leads=len(company.leads),
        clocks=len(company.clocks),
        members=len(company.members),
        stages=dict(sorted(stages.items())),
        waiting=sum(1 for c in company.clocks if c["next_at"] is None),
        future=len(future),
        next_min=future[0] if future else None,
        next_median=future[len(future) // 2] if future else None,
        next_max=future[-1] if future else None,
        due_steps=Counter(
            (company.clocks[i - 1]["kind"], STEPS[stage]) for i, stage, _ in company.due
        ),
    )
    return DbResult(name, due, series, statements_due, statements_empty, messages, plan, shape)


# ------------------------------------------------------------------ databases


def pg_urls(admin_url: str) -> tuple[str, str]:
    base = admin_url.rsplit("/", 1)[0]
    return admin_url.replace("postgresql+psycopg://", "postgresql://"), f"{base}/{PG_DB}"


def create_pg(admin_url: str) -> str:
    import psycopg

    plain, url = pg_urls(admin_url)
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{PG_DB}"')
    return url


def drop_pg(admin_url: str) -> None:
    import psycopg

    plain, _ = pg_urls(admin_url)
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')


def run_database(name: str, url: str, args: argparse.Namespace) -> DbResult:
    console.rule(f"[bold]{name}")
    started = time.perf_counter()
    store = Store.open(url)
    with progress_bar() as progress:
        company = load(store, args, progress)
        loaded = time.perf_counter() - started
        console.print(
            f"[dim]migrated and loaded {len(company.leads):,} leads, {len(company.clocks):,} "
            f"clocks in {loaded:.1f} s; {len(company.due)} clocks due at {NOW:%a %Y-%m-%d %H:%M} "
            "UTC[/]"
        )
        gc.collect()
        gc.freeze()  # as `liaison serve` does after start-up (bot/web/server.py)
        result = measure(name, store, company, args, progress)
    del company
    gc.unfreeze()
    gc.collect()
    store.engine.dispose()
    return result


# ------------------------------------------------------------------ outbox throughput


@dataclass
class Throughput:
    messages: int
    sent: int
    failed: int
    seconds: float
    arrivals: dict[str, list[float]]  # per channel, at the stand-in
    client_starts: list[float]
    refused: int
    database: str

    @property
    def all_arrivals(self) -> list[float]:
        return sorted(t for times in self.arrivals.values() for t in times)

    @property
    def rate(self) -> float:
        """Messages per second at the stand-in, first arrival to last."""
        times = self.all_arrivals
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        return (len(times) - 1) / span if span > 0 else float("nan")

    @property
    def max_in_window(self) -> int:
        """Most chat.postMessage arrivals to one channel in any 1-second window [t, t + 1 s)."""
        best = 0
        for times in self.arrivals.values():
            j = 0
            for i, t in enumerate(times):
                while j < len(times) and times[j] - t < 1.0:
                    j += 1
                best = max(best, j - i)
        return best

    @property
    def min_gap(self) -> float:
        """The smallest gap between two arrivals to the same channel."""
        gaps = [b - a for times in self.arrivals.values() for a, b in pairwise(times)]
        return min(gaps) if gaps else float("nan")


async def outbox_throughput(url: str, database: str, recipients: list[int]) -> Throughput:
    """Owe one DM to each of `recipients` (a member id may repeat) and drain the outbox."""
    from bot.core.delivery import Deliverer
    from bot.core.messages import Card, card_to_dict
    from bot.core.settings import Settings
    from bot.outbox.sender import Sender
    from bot.slack.app import SlackMessenger, make_client
    from storage.models import OutboxMessage
    from tests.slack_standin import SlackStandIn

    @dataclass
    class TimedStandIn(SlackStandIn):
        """The stand-in, noting when each chat.postMessage arrives, per channel."""

        arrivals: dict[str, list[float]] = field(default_factory=dict)

        async def _api(self, request: Any) -> Any:
            arrived = time.monotonic()
            answer = await super()._api(request)
            if request.match_info["method"] == "chat.postMessage" and self.calls:
                channel = str(self.calls[-1].params.get("channel"))
                self.arrivals.setdefault(channel, []).append(arrived)
            return answer

    class TimedMessenger(SlackMessenger):
        """The Slack messenger, noting when each send starts on our side."""

        starts: list[float]

        async def post(self, channel: str, card: Card) -> Any:
            self.starts.append(time.monotonic())
            return await super().post(channel, card)

    store = Store.open(url)
    standin = await TimedStandIn(token="xoxb-bench-token").start()
    settings = Settings(SLACK_BOT_TOKEN="xoxb-bench-token", SLACK_API_URL=standin.api_url)  # type: ignore[call-arg]
    client = make_client(settings)
    try:
        now = datetime.now(UTC)
        with store.session() as session:
            session.execute(text("DELETE FROM outbox"))
            for i, member_id in enumerate(recipients):
                stored_outbox.enqueue(
                    session,
                    message=OutboxMessage(
                        key=f"bench:throughput:{i}",
                        member_id=member_id,
                        card=card_to_dict(Card(title=f"Reminder {i}", text="A bench message.")),
                        not_before=now,
                        created_at=now,
                    ),
                )
        messenger = TimedMessenger(client, store)
        messenger.starts = []
        sender = Sender(store, Deliverer(store, [messenger]), owner="bench")
        started = time.perf_counter()
        report = await sender.drain(now)
        seconds = time.perf_counter() - started
        return Throughput(
            len(recipients),
            report.sent,
            report.failed + report.retried,
            seconds,
            standin.arrivals,
            messenger.starts,
            len(standin.refused),
            database,
        )
    finally:
        if client.session is not None:
            await client.session.close()
        await standin.stop()
        store.engine.dispose()


# ------------------------------------------------------------------ report


def verdict(passed: bool) -> str:
    return "[green]PASS[/]" if passed else "[red]FAIL[/]"


def report_db(result: DbResult) -> None:
    shape = result.shape
    console.print(
        f"[dim]{shape['members']} members, {shape['leads']:,} open leads, {shape['clocks']:,} "
        f"open clocks; by stage {shape['stages']}; {shape['waiting']:,} escalated and waiting "
        f"(next_at NULL); {shape['future']:,} with next_at over the coming days "
        f"({shape['next_min']:%a %H:%M:%S} … median {shape['next_median']:%a %d %b %H:%M} … "
        f"{shape['next_max']:%a %d %b %H:%M}); due now: {result.due} "
        f"({', '.join(f'{k} {s} {n}' for (k, s), n in sorted(shape['due_steps'].items()))})[/]"
    )
    console.print(f"[dim]plan of the bare query:\n{result.plan}[/]")
    s = result.series
    table = Table(title=f"{result.name}: one SLA tick vs the bare due-rows query")
    for column in ("measurement", "rows", "samples", "median ms", "p90 ms", "min ms", "max ms"):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for key, rows in (
        ("bare, due rows", result.due),
        ("tick, due rows", result.due),
        ("bare, nothing due", 0),
        ("tick, nothing due", 0),
    ):
        data = s[key]
        table.add_row(
            key,
            str(rows),
            str(len(data.seconds)),
            f"{data.ms(50):.3f}",
            f"{data.ms(90):.3f}",
            f"{min(data.seconds) * 1000:.3f}",
            f"{max(data.seconds) * 1000:.3f}",
        )
    console.print(table)
    empty_ratio = s["tick, nothing due"].ms(50) / s["bare, nothing due"].ms(50)
    empty_ratio90 = s["tick, nothing due"].ms(90) / s["bare, nothing due"].ms(90)
    full_ratio = s["tick, due rows"].ms(50) / s["bare, due rows"].ms(50)
    per_row = (s["tick, due rows"].ms(50) - s["tick, nothing due"].ms(50)) / max(result.due, 1)
    total_due = sum(result.statements_due.values())
    console.print(
        f"empty tick / bare query: median {empty_ratio:.2f}×, p90 {empty_ratio90:.2f}×; "
        f"tick with {result.due} due rows / bare query: median {full_ratio:.1f}×"
    )
    console.print(
        f"per due row: {per_row:.3f} ms (median tick with due rows minus median empty tick, "
        f"÷ {result.due}); {result.messages} messages written to the outbox per tick"
    )
    console.print(
        f"statements per tick: {sum(result.statements_empty.values())} with nothing due, "
        f"{total_due} with {result.due} due rows ({total_due / max(result.due, 1):.1f} per due "
        f"row): " + ", ".join(f"{k} {v}" for k, v in result.statements_due.most_common())
    )
    console.print(
        "[bold]held against the target: the empty tick[/] (a tick as such, which must not grow "
        "with the open leads; due rows add per-row work the bare query does not do)"
    )
    console.print(
        f"{verdict(empty_ratio <= TARGET_RATIO)}  empty tick ≤ {TARGET_RATIO:g}× the bare query "
        f"(medians): {empty_ratio:.2f}×"
    )
    console.print(
        f"{verdict(s['tick, nothing due'].ms(90) < TARGET_MS)}  empty tick p90 < "
        f"{TARGET_MS:g} ms: {s['tick, nothing due'].ms(90):.3f} ms"
    )
    console.print(f"[dim]for information, the tick with {result.due} due rows:[/]")
    console.print(
        f"{verdict(full_ratio <= TARGET_RATIO)}  ≤ {TARGET_RATIO:g}× the bare query "
        f"(medians): {full_ratio:.1f}×"
    )
    console.print(
        f"{verdict(s['tick, due rows'].ms(90) < TARGET_MS)}  p90 < {TARGET_MS:g} ms: "
        f"{s['tick, due rows'].ms(90):.1f} ms"
    )


async def report_throughput(url: str, database: str, messages: int, fanout: int) -> None:
    from bot.outbox.sender import MIN_INTERVAL

    allowed = 1.0 / MIN_INTERVAL["slack"]
    result = await outbox_throughput(url, database, [1] * messages)
    share = result.rate / allowed
    console.rule("[bold]outbox throughput, Slack, one channel")
    times = result.all_arrivals
    console.print(
        f"{result.sent}/{result.messages} sent ({result.failed} failed or retried, "
        f"{result.refused} refused by the stand-in) in {result.seconds:.2f} s on "
        f"{result.database}; arrivals at the stand-in: first to last {times[-1] - times[0]:.3f} s"
    )
    console.print(
        f"achieved {result.rate:.4f} msg/s against {allowed:g} msg/s allowed per channel: "
        f"{share:.1%}; smallest gap between arrivals {result.min_gap * 1000:.1f} ms; "
        f"most in any 1 s window: {result.max_in_window}"
    )
    starts = result.client_starts
    client_gaps = [b - a for a, b in pairwise(starts)]
    if client_gaps:
        console.print(
            f"[dim]gaps between send starts on our side: min {min(client_gaps) * 1000:.1f} ms, "
            f"max {max(client_gaps) * 1000:.1f} ms[/]"
        )
    console.print(f"{verdict(share >= 0.9)}  ≥ 90% of the allowed rate: {share:.1%}")
    console.print(
        f"{verdict(result.max_in_window <= allowed)}  never over (at most {allowed:g} in any 1 s "
        f"window at the stand-in): {result.max_in_window}"
    )
    if fanout:
        spread = await outbox_throughput(url, database, list(range(1, fanout + 1)))
        console.print(
            f"[dim]for information, one tick's worth: {spread.sent}/{spread.messages} DMs to "
            f"{len(spread.arrivals)} different members in {spread.seconds:.2f} s, "
            f"{spread.sent / spread.seconds:.1f} msg/s; most to one channel in any 1 s window: "
            f"{spread.max_in_window}[/]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000, help="open leads (2 clocks each)")
    parser.add_argument("--due", type=int, default=200, help="clocks due at the measured now")
    parser.add_argument(
        "--repeat", type=int, default=20, help="measured ticks with due rows (+1 warm-up)"
    )
    parser.add_argument(
        "--inner",
        type=int,
        default=10,
        help="bare queries and empty ticks per repetition (so repeat × inner samples)",
    )
    parser.add_argument(
        "--messages", type=int, default=20, help="DMs to one member for the throughput run"
    )
    parser.add_argument(
        "--fanout",
        type=int,
        default=200,
        help="then one DM to each of this many members (0: skip; at most the members)",
    )
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.leads < 1 or not 0 <= args.due <= min(args.leads, 500) or args.repeat < 1:
        parser.error("--leads ≥ 1, 0 ≤ --due ≤ min(--leads, 500) and --repeat ≥ 1")
    if args.inner < 1 or args.messages < 2 or not 0 <= args.fanout <= TEAMS * (REPS_PER_TEAM + 1):
        parser.error(f"--inner ≥ 1, --messages ≥ 2, 0 ≤ --fanout ≤ {TEAMS * (REPS_PER_TEAM + 1)}")

    with tempfile.TemporaryDirectory(prefix="liaison-bench-") as tmp:
        sent_on = ""  # the outbox run uses the first database measured
        if not args.skip_postgres:
            try:
                url = create_pg(args.pg_admin_url)
            except Exception as error:  # no PostgreSQL here: say so and go on
                console.print(f"[red]PostgreSQL skipped: {error}[/]")
            else:
                try:
                    report_db(run_database("PostgreSQL", url, args))
                    asyncio.run(report_throughput(url, "PostgreSQL", args.messages, args.fanout))
                    sent_on = "PostgreSQL"
                finally:
                    drop_pg(args.pg_admin_url)
        if not args.skip_sqlite:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            report_db(run_database("SQLite", url, args))
            if not sent_on:
                asyncio.run(report_throughput(url, "SQLite", args.messages, args.fanout))
                sent_on = "SQLite"
        if not sent_on:  # both skipped: only the outbox run, on a SQLite file with the people
            url = f"sqlite:///{Path(tmp) / 'outbox.db'}"
            store = Store.open(url)
            with progress_bar() as progress:
                insert_rows(store, Member.__table__, people(args.seed).members, progress)  # type: ignore[attr-defined]
            store.engine.dispose()
            asyncio.run(report_throughput(url, "SQLite", args.messages, args.fanout))
    load1, load5, _ = os.getloadavg()
    console.print(
        f"[dim]{os.cpu_count()} CPUs, load average {load1:.2f} (1 min) {load5:.2f} (5 min) "
        f"at the end, Python {platform.python_version()}[/]"
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
