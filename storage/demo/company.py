"""A realistic, reproducible demo company: members, campaigns, lead definitions, the SLA,
26 weeks of leads and their history, and the marketer's side (content, insights, wins,
feedback, approvals).

`liaison demo` (24 leads) is what the console quick start needs: the named members below,
a few fresh leads waiting for Alice and Bob, and some older history. `liaison demo --leads
1000000` is a company at scale for the weekly digest: more reps and marketers in several
time zones, written in chunks with bulk inserts (storage.bulk), never a million objects at
once. The same seed gives the same company; running it again adds nothing."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from random import Random

from sqlalchemy import Table
from sqlmodel import Session, SQLModel

from bot.core.business_time import Company
from storage import away as stored_away
from storage import campaigns as stored_campaigns
from storage import definitions as stored_definitions
from storage import members as stored_members
from storage import policies
from storage.bulk import BulkWriter
from storage.calendars import calendar_of
from storage.demo import extras as demo_extras
from storage.demo import reads as stored
from storage.demo.history import (
    BLOCK,
    CLOCK_COLUMNS,
    EVENT_COLUMNS,
    FRESH,
    HOUR,
    LEAD_COLUMNS,
    REJECTION_COLUMNS,
    Budgets,
    Docs,
    History,
    Marketer,
    Quality,
    Rep,
    Rows,
    Schedule,
    Source,
    Timeline,
    Version,
)
from storage.demo.worktime import SECOND, WorkTime, micros, moment
from storage.models import (
    Away,
    Campaign,
    Clock,
    LeadEvent,
    LeadRejection,
    Member,
    SlaPolicy,
)
from storage.models import Lead as LeadTable

MEMBERS = [
    # handle-ish name, email, role, team, manager email, time zone
    ("Dave Dawson", "dave@demo.liaison.dev", "manager", "sales", None, "Europe/London"),
    ("Maya Moreno", "maya@demo.liaison.dev", "manager", "marketing", None, "Europe/London"),
    (
        "Alice Adams",
        "alice@demo.liaison.dev",
        "rep",
        "sales",
        "dave@demo.liaison.dev",
        "Europe/London",
    ),
    (
        "Bob Brown",
        "bob@demo.liaison.dev",
        "rep",
        "sales",
        "dave@demo.liaison.dev",
        "America/New_York",
    ),
    (
        "Carol Chen",
        "carol@demo.liaison.dev",
        "marketer",
        "marketing",
        "maya@demo.liaison.dev",
        "Europe/London",
    ),
    (
        "Mark Miller",
        "mark@demo.liaison.dev",
        "marketer",
        "marketing",
        "maya@demo.liaison.dev",
        "America/New_York",
    ),
    ("Erin Ellis", "erin@demo.liaison.dev", "admin", None, None, "Europe/London"),
    ("Leo Lang", "leo@demo.liaison.dev", "leader", None, None, "Europe/London"),
]
CAMPAIGNS = {
    # campaign → its marketer (who answers reps' questions about its leads)
    "Webinar: Pipeline Hygiene": "carol@demo.liaison.dev",
    "Ebook: The Buyer's Guide": "carol@demo.liaison.dev",
    "Paid search: CRM alternatives": "mark@demo.liaison.dev",
    "Trade show: SaaS Connect": "mark@demo.liaison.dev",
    "Partner referrals: Integrators": "carol@demo.liaison.dev",
    "Customer stories: Retail": "mark@demo.liaison.dev",
    "LinkedIn ads: RevOps leaders": "carol@demo.liaison.dev",
    "Free trial sign-ups": "mark@demo.liaison.dev",
    "Newsletter: The Handover": "carol@demo.liaison.dev",
    "Purchased list: Industry directory": "mark@demo.liaison.dev",
    "Analyst report: Market Guide": "carol@demo.liaison.dev",
    "Webinar: Forecasting 101": "mark@demo.liaison.dev",
}
QUALITY = {
    # volume share, acceptance, the criteria its leads tend to fail, conversion, schedule
    "Webinar: Pipeline Hygiene": Quality(
        1.0, 0.72, {"timing": 3, "need": 1}, 1.05, Schedule("burst", 4, 1)
    ),
    "Ebook: The Buyer's Guide": Quality(
        1.4, 0.55, {"authority": 4, "timing": 2, "company_size": 2}, 0.85
    ),
    "Paid search: CRM alternatives": Quality(1.6, 0.66, {"budget": 3, "territory": 1}),
    "Trade show: SaaS Connect": Quality(
        0.8, 0.62, {"valid_contact": 3, "territory": 2}, 0.95, Schedule("event", at=(9, 10))
    ),
    "Partner referrals: Integrators": Quality(0.5, 0.85, {"budget": 1, "timing": 1}, 1.3),
    "Customer stories: Retail": Quality(0.6, 0.70, {"territory": 1, "need": 1}, 1.1),
    "LinkedIn ads: RevOps leaders": Quality(
        1.0, 0.60, {"authority": 2, "company_size": 3}, 0.95, Schedule("from", offset=6)
    ),
    "Free trial sign-ups": Quality(1.2, 0.68, {"company_size": 3, "budget": 2}, 1.1),
    "Newsletter: The Handover": Quality(0.5, 0.58, {"timing": 2, "need": 2}, 0.9),
    "Purchased list: Industry directory": Quality(
        0.7, 0.38, {"valid_contact": 4, "need": 2, "authority": 1}, 0.7
    ),
    "Analyst report: Market Guide": Quality(
        0.6, 0.74, {"budget": 1, "timing": 1}, 1.05, Schedule("from", offset=14)
    ),
    "Webinar: Forecasting 101": Quality(
        0.7, 0.70, {"timing": 2, "authority": 1}, 1.0, Schedule("burst", 4, 3)
    ),
}
log = logging.getLogger(__name__)
CHUNK = 5 * BLOCK  # leads written per transaction
LEADS_PER_REP = 25_000  # over the 26 weeks
MAX_REPS = 40
REVISED_FROM = 100  # a history of this many leads has seen the lead definition revised
ZONES = ("Europe/Berlin", "America/Chicago", "America/Los_Angeles", "Asia/Singapore")
STAFF_FIRST = (
    "Nina", "Omar", "Priya", "Quentin", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen",
    "Xavier", "Yara", "Zane", "Ines", "Jonas", "Kira", "Lars", "Mei", "Nadia", "Oscar",
)  # fmt: skip
STAFF_LAST = (
    "Fischer", "Gupta", "Hughes", "Iversen", "Jensen", "Khan", "Lopez", "Meyer", "Nakamura",
    "Olsen", "Petrov", "Quinn", "Reyes", "Sato", "Torres", "Ueda", "Vogel", "Wong",
)  # fmt: skip
V2_NOTE = "Demo: authority means director or above; company size added"
V2_CRITERIA_CHANGES = {
    "authority": "Talks to or is a decision maker (director or above)",
    "company_size": "Company of 50 employees or more",
}
SLA_NOTE = "Demo: weekly lead target set for the demo company"
OPTED_IN = ("alice@demo.liaison.dev", "carol@demo.liaison.dev")  # the "your week" DM


@dataclass(frozen=True)
class Staff:
    """One member of the demo company, as written to `members`."""

    name: str
    email: str
    role: str
    team: str | None
    manager: str | None
    timezone: str
    hours: tuple[str, str] | None = None
    workdays: str | None = None


def staff(leads: int) -> list[Staff]:
    """The named members, and for a large history more reps (one per LEADS_PER_REP leads,
    at most MAX_REPS) with their sales managers, a few more marketers and a second
    marketing manager, in several time zones."""
    people = [Staff(n, e, r, t, m, z) for n, e, r, t, m, z in MEMBERS]
    reps = min(MAX_REPS, max(2, round(leads / LEADS_PER_REP))) - 2
    managers = [("dave@demo.liaison.dev", "Europe/London")]
    for k in range(math.ceil(reps / 8)):
        managers.append((_email(len(people)), ZONES[k % len(ZONES)]))
        people.append(_staff(len(people), "manager", "sales", None, ZONES[k % len(ZONES)]))
    for j in range(reps):
        boss, zone = managers[j % len(managers)]
        hours = ("08:00", "16:00") if j % 7 == 3 else None
        workdays = "0,1,2,3" if j % 11 == 5 else None
        people.append(_staff(len(people), "rep", "sales", boss, zone, hours, workdays))
    marketers = min(4, reps // 8)
    lead_of_marketing = "maya@demo.liaison.dev"
    if marketers >= 3:
        lead_of_marketing = _email(len(people))
        people.append(_staff(len(people), "manager", "marketing", None, ZONES[1]))
    for j in range(marketers):
        boss = "maya@demo.liaison.dev" if j % 2 == 0 else lead_of_marketing
        people.append(_staff(len(people), "marketer", "marketing", boss, ZONES[j % len(ZONES)]))
    return people


def _name(n: int) -> str:
    return f"{STAFF_FIRST[n % len(STAFF_FIRST)]} {STAFF_LAST[n % len(STAFF_LAST)]}"


def _email(n: int) -> str:
    return _name(n).lower().replace(" ", ".") + "@demo.liaison.dev"


def _staff(
    n: int,
    role: str,
    team: str,
    manager: str | None,
    zone: str,
    hours: tuple[str, str] | None = None,
    workdays: str | None = None,
) -> Staff:
    return Staff(_name(n), _email(n), role, team, manager, zone, hours, workdays)


def create_demo(
    session: Session,
    *,
    leads: int,
    seed: int,
    now: datetime,
    company: Company | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Fill the database; returns how many leads were new. Re-running adds nothing.

    Commits after each chunk of leads, so an interrupted run keeps what it wrote and the
    next run goes on from there. `progress(n)` hears of every n leads done."""
    started = time.perf_counter()
    setting = _Setting.build(session, leads=leads, seed=seed, now=now, company=company)
    log.debug("demo company set up in %.1f s", time.perf_counter() - started)
    created = _write_leads(session, setting.history(), leads, progress)
    log.debug("%d demo leads written in %.1f s", created, time.perf_counter() - started)
    demo_extras.add(session, setting.extras())
    if created >= 10_000:
        BulkWriter(session).analyze(
            [_table(LeadTable), _table(LeadEvent), _table(Clock), _table(LeadRejection)]
        )
    log.debug("demo done in %.1f s", time.perf_counter() - started)
    return created


def _write_leads(
    session: Session, history: History, leads: int, progress: Callable[[int], None]
) -> int:
    """Chunk by chunk, a transaction each: skip the leads already there, write the others'
    rows in bulk. On PostgreSQL a chunk is planned while the previous one is written."""
    created = 0
    with BulkWriter(session, trusted=True) as writer:
        chunks = [(start, min(leads, start + CHUNK)) for start in range(0, leads, CHUNK)]
        ids = _new_ids(session, writer, history, *chunks[0]) if chunks else {}
        for n, (start, stop) in enumerate(chunks):
            rows = Rows()
            if ids:  # a chunk already written is not even planned
                history.generate(start, stop, ids, rows)
            writer.wait()  # the previous chunk is written
            session.commit()
            if n:
                progress(start - chunks[n - 1][0])
            written = len(ids)
            ids = _new_ids(session, writer, history, *chunks[n + 1]) if n + 1 < len(chunks) else {}
            writer.submit(
                [
                    (_table(LeadTable), LEAD_COLUMNS, rows.leads),
                    (_table(LeadEvent), EVENT_COLUMNS, rows.events),
                    (_table(Clock), CLOCK_COLUMNS, rows.clocks),
                    (_table(LeadRejection), REJECTION_COLUMNS, rows.rejections),
                ]
            )
            created += written
    session.commit()
    if chunks:
        progress(chunks[-1][1] - chunks[-1][0])
    return created


def _new_ids(
    session: Session, writer: BulkWriter, history: History, start: int, stop: int
) -> dict[int, int]:
    """The leads of [start, stop) not in the database yet, each with the id it will have."""
    wanted = {history.external_id(i): i for i in range(start, stop)}
    known = stored.existing_external_ids(session, source="demo", external_ids=wanted)
    new = [i for external_id, i in wanted.items() if external_id not in known]
    return dict(zip(new, writer.reserve_ids(_table(LeadTable), len(new)), strict=True))


def _table(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


# ---------------------------------------------------------------- the company


@dataclass
class _Setting:
    """The company the history happens in, as stored, and as the generator sees it."""

    seed: int
    now: datetime
    start: datetime  # Monday 00:00 UTC, 25 weeks before this week's
    leads: int
    members: dict[str, Member]
    reps: list[Rep]
    named: list[Rep]
    sources: list[Source]
    campaigns: list[Campaign]
    versions: list[Version]
    budgets: Budgets
    timeline: Timeline

    @classmethod
    def build(
        cls, session: Session, *, leads: int, seed: int, now: datetime, company: Company | None
    ) -> _Setting:
        company = company or Company()
        rng = Random(f"liaison-demo:{seed}:company")
        timeline = Timeline.build(
            Random(f"liaison-demo:{seed}:weeks"),
            now,
            [QUALITY[name] for name in CAMPAIGNS],
            list(_holidays(now)),
            max(0, leads - FRESH),
        )
        begin = moment(timeline.starts[0])
        members = _members(session, staff(leads), joined=begin - timedelta(days=60))
        for day, name in _holidays(now).items():
            stored_away.add_holiday(session, day=day, name=name)
        _time_away(session, rng, members, begin)
        session.flush()
        people = _working_time(session, members, company, begin, now)
        policy = _policy(session, begin, timeline.expected)
        reps = [
            _rep(session, rng, members[s.email], people[s.email], policy)
            for s in staff(leads)
            if s.role == "rep"
        ]
        campaigns, sources = _campaigns(session, rng, members, people)
        versions = _versions(session, leads=leads, start=begin, now=now, members=members)
        return cls(
            seed,
            now,
            begin,
            leads,
            members,
            reps,
            reps[:2],
            sources,
            campaigns,
            versions,
            _budgets(policy),
            timeline,
        )

    def history(self) -> History:
        return History(
            seed=self.seed,
            now=self.now,
            timeline=self.timeline,
            reps=self.reps,
            named_reps=self.named,
            sources=self.sources,
            versions=self.versions,
            budgets=self.budgets,
            docs=Docs(),
        )

    def extras(self) -> demo_extras.Company:
        return demo_extras.Company(
            seed=self.seed,
            now=self.now,
            start=self.start,
            leads=self.leads,
            members=self.members,
            campaigns=self.campaigns,
        )


def _members(session: Session, people: Sequence[Staff], joined: datetime) -> dict[str, Member]:
    """Upsert every member by email, then their managers."""
    members: dict[str, Member] = {}
    for person in people:
        members[person.email] = stored_members.upsert_member(
            session,
            now=joined,
            email=person.email,
            name=person.name,
            role=person.role,
            team=person.team,
            timezone=person.timezone,
            work_start=person.hours[0] if person.hours else None,
            work_end=person.hours[1] if person.hours else None,
            workdays=person.workdays,
            weekly_digest=True if person.email in OPTED_IN else None,
        )
    for person in people:
        if person.manager and person.manager in members:
            members[person.email].manager_id = members[person.manager].id
            session.add(members[person.email])
    return members


def _holidays(now: datetime) -> dict[date, str]:
    """The company's holidays in the history (past ones only)."""
    found: dict[date, str] = {}
    first = (now - timedelta(weeks=27)).date()
    for year in range(first.year, now.year + 1):
        for day, name in (
            (_last_monday(year, 5), "Spring bank holiday"),
            (_last_monday(year, 8), "Summer bank holiday"),
            (date(year, 12, 25), "Christmas Day"),
            (date(year, 12, 26), "Boxing Day"),
            (date(year, 1, 1), "New Year's Day"),
        ):
            if first <= day < now.date():
                found[day] = name
    return dict(sorted(found.items()))


def _last_monday(year: int, month: int) -> date:
    day = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return day - timedelta(days=day.weekday())


def _time_away(session: Session, rng: Random, members: dict[str, Member], start: datetime) -> None:
    """About half the reps took a week off at some point (Monday to Friday, their time)."""
    from zoneinfo import ZoneInfo

    for member in members.values():
        if member.role != "rep" or rng.random() > 0.5:
            continue
        monday = (start + timedelta(weeks=rng.randrange(2, 22))).date()
        zone = ZoneInfo(member.timezone or "UTC")
        starts = datetime(monday.year, monday.month, monday.day, tzinfo=zone).astimezone(
            start.tzinfo
        )
        if not stored.has_away(session, member_id=member.id or 0, starts_at=starts):
            until = starts + timedelta(days=5)
            session.add(
                Away(member_id=member.id or 0, starts_at=starts, until=until, created_at=starts)
            )


def _working_time(
    session: Session, members: dict[str, Member], company: Company, start: datetime, now: datetime
) -> dict[str, WorkTime]:
    """Everyone's business time over the history and the weeks after now, from their own
    calendar (hours, time zone, holidays, time away)."""
    holidays = frozenset(stored_away.holidays(session))
    since, until = start - timedelta(days=2), now + timedelta(days=120)
    return {
        email: WorkTime(calendar_of(session, member, company, holidays), since, until)
        for email, member in members.items()
        if member.role in ("rep", "marketer")
    }


def _rep(session: Session, rng: Random, member: Member, work: WorkTime, policy: SlaPolicy) -> Rep:
    """A rep's habits: how fast they touch and decide, how persistent they are."""
    away = tuple(
        (micros(lo), micros(hi))
        for lo, hi in stored_away.away_spans(session, member_id=member.id or 0)
    )
    day = work.calendar.day_seconds  # as `clocks.on_accepted` sizes the attempts window
    return Rep(
        member_id=member.id or 0,
        email=member.email or "",
        time=work,
        first_touch=rng.uniform(35, 110) * 60,
        verdict=rng.uniform(50, 160) * 60,
        persistence=rng.choice((-1, 0, 0, 1)),
        spacing=rng.uniform(1.0, 1.9),
        fit=rng.uniform(0.93, 1.07),
        attempts_budget=round(policy.attempts_days * day * SECOND),
        away=away,
    )


def _campaigns(
    session: Session, rng: Random, members: dict[str, Member], people: dict[str, WorkTime]
) -> tuple[list[Campaign], list[Source]]:
    """The campaigns and their marketers; with more marketers, the newer campaigns are
    theirs."""
    extra = [e for e, m in members.items() if m.role == "marketer" and e not in CAMPAIGNS.values()]
    marketers = {
        email: Marketer(members[email].id or 0, email, people[email], rng.uniform(40, 120) * 60)
        for email in sorted({*CAMPAIGNS.values(), *extra})
    }
    campaigns, sources = [], []
    for n, (name, email) in enumerate(CAMPAIGNS.items()):
        owner = extra[(n - 4) % len(extra)] if extra and n >= 4 else email
        campaign = stored_campaigns.ensure_campaign(session, name=name)
        campaign.marketer_id = members[owner].id
        session.add(campaign)
        campaigns.append(campaign)
        sources.append(Source(campaign.id or 0, marketers[owner], QUALITY[name]))
    return campaigns, sources


def _versions(
    session: Session, *, leads: int, start: datetime, now: datetime, members: dict[str, Member]
) -> list[Version]:
    """The lead definitions leads were judged by: version 1, and for a long enough history
    a revision part-way through (approved by both sides), as `liaison leaddef set` records it."""
    revised = stored.definition_noted(session, note=V2_NOTE)
    if revised is None and leads >= REVISED_FROM:
        first = stored.earliest_definition(session)
        assert first is not None
        criteria = [
            (c.key, V2_CRITERIA_CHANGES.get(c.key, c.text))
            for c in stored_definitions.criteria_of(session, definition_id=first.id or 0)
        ]
        criteria += [(k, t) for k, t in V2_CRITERIA_CHANGES.items() if k not in dict(criteria)]
        at = start + timedelta(weeks=15, days=1, hours=10)
        revised = stored_definitions.create_definition(
            session, criteria=criteria, note=V2_NOTE, created_by="carol@demo.liaison.dev", now=at
        )
        demo_extras.approve_definition(session, revised, criteria, members)
    if revised is None:
        current, _ = stored_definitions.current_definition(session)
        return [_version(session, current.id or 0, current.version, None)]
    first = stored.earliest_definition(session)
    assert first is not None
    return [
        _version(session, first.id or 0, first.version, None),
        _version(session, revised.id or 0, revised.version, revised.created_at),
    ]


def _version(session: Session, definition_id: int, version: int, since: datetime | None) -> Version:
    criteria = stored_definitions.criteria_of(session, definition_id=definition_id)
    return Version(
        definition_id,
        version,
        micros(since) if since else -(2**62),
        {c.key: c.text for c in criteria},
    )


def _policy(session: Session, start: datetime, expected: float) -> SlaPolicy:
    """The SLA in force: the demo company's weekly lead target, set by an admin from the
    CLI before the history starts (once)."""
    if stored.policy_noted(session, note=SLA_NOTE) is None:
        target = _round_target(0.9 * expected)
        at = start - timedelta(days=3)
        policy = policies.create_policy(
            session,
            fields={"leads_per_week": target},
            note=SLA_NOTE,
            created_by="admin (CLI)",
            now=at,
        )
        demo_extras.bootstrap_policy(session, policy, {"leads_per_week": target})
    return policies.current_policy(session)


def _round_target(value: float) -> int:
    """A target a person would set: 37 → 35, 3,480 → 3,500."""
    if value < 10:
        return max(1, round(value))
    step = int(10 ** (len(str(int(value))) - 2)) * (5 if value < 100 else 1)
    return max(step, round(value / step) * step)


def _budgets(policy: SlaPolicy) -> Budgets:
    return Budgets(
        policy_version=policy.version,
        first_touch=round(policy.first_touch_hours * HOUR),
        verdict=round(policy.verdict_hours * HOUR),
        info_answer=round(policy.info_answer_hours * HOUR),
        attempts=policy.attempts,
        remind_share=policy.remind_share,
        grace=round(policy.escalate_after_hours * HOUR),
    )
