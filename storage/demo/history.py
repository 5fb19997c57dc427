"""The demo's leads and what happened to them, generated as plain rows, a block at a time.

Lead i's history depends only on the seed, i and the company (team, campaigns, lead
definitions, SLA): each block of BLOCK leads draws from its own random stream, so a block
already in the database can be skipped and the same seed always gives the same rows.

A lead's whole life is planned first, in its owner's business time — handoff, a question
to the campaign's marketer, the verdict, attempts and their outcomes — and then cut at
`now`: what would happen later has not happened yet, so recent leads wait and their SLA
clocks run, with the stage and next step the tick would have given them. The events are
the facts; the lead's projections (verdict time, first touch, attempts, best outcome), its
rejected criteria and its clocks are derived from the same plan, as the handlers,
`storage.clocks` and the tick (`digests.sla`) would have written them."""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from random import Random
from typing import Any

from storage.demo.worktime import SECOND, WorkTime, micros, moment
from storage.leads import DECISIVE, better_outcome

BLOCK = 1000  # leads per random stream
FRESH = 6  # the first leads: just handed to Alice and Bob, nothing done yet
WEEKS = 26
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
WEEK = 7 * 24 * HOUR
Row = tuple[Any, ...]

FIRST = (
    "Jordan", "Priya", "Lukas", "Sofia", "Tom", "Aiko", "Mateo", "Grace", "Noah", "Lena",
    "Omar", "Chloe", "Ivan", "Zoe", "Ravi", "Emma", "Felix", "Hana", "Luis", "Mia",
)  # fmt: skip
LAST = (
    "Patel", "Schmidt", "Rossi", "Nguyen", "Okafor", "Tanaka", "Garcia", "Murphy",
    "Kowalski", "Silva", "Haddad", "Larsen", "Dubois", "Novak", "Kim", "Walsh", "Moreau", "Ito",
)  # fmt: skip
COMPANIES = (
    "Northwind", "Globex", "Initech", "Umbrella Health", "Stark Logistics", "Hooli",
    "Vandelay Imports", "Acme Retail", "Wayne Foods", "Cyberdyne", "Soylent", "Tyrell",
    "Brightline Energy", "Pied Piper", "Oscorp Labs", "Blue Harbor Bank", "Kestrel Freight",
    "Monarch Hotels", "Juniper Schools", "Redwood Clinics",
)  # fmt: skip
TITLES = (
    "VP Sales", "Head of Marketing", "Operations Manager", "CTO", "Sales Director",
    "Founder", "RevOps Lead", "Procurement Officer", "Head of Customer Success", "COO",
)  # fmt: skip
JUNIOR_TITLES = ("Intern", "Marketing Coordinator", "Student", "Sales Assistant")
SIZES = ("1-10", "11-50", "51-200", "201-1000", "1000+")
SMALL_SIZES = ("1-10", "11-50")
COUNTRIES = ("UK", "US", "DE", "FR", "NL", "SG")

# How many attempts an accepted lead gets (0 to 8), and how often a lead with that many
# reached a meeting or better: persistence pays, with diminishing returns.
ATTEMPT_WEIGHTS = (4, 11, 13, 13, 12, 14, 12, 11, 10)
CONVERSION = (0.0, 0.14, 0.25, 0.34, 0.44, 0.54, 0.59, 0.62, 0.65)
WON = (("meeting_booked", 0.55), ("opportunity", 0.30), ("won", 0.15))
TRYING = (("no_answer", 0.5), ("left_message", 0.35), ("connected", 0.15))
CHANNELS = (("call", 0.55), ("email", 0.35), ("social", 0.10))
CLOSING_CHANNELS = (("call", 0.6), ("email", 0.2), ("meeting", 0.2))
LATE_REASONS = (("budget", 0.4), ("timing", 0.35), ("need", 0.25))
COMMENTS = {
    "budget": "No budget until the next financial year.",
    "authority": "Researching for a manager; not the buyer.",
    "need": "Happy with the tool they use today.",
    "timing": "Looking again next year.",
    "territory": "Based outside the regions we cover.",
    "valid_contact": "The email bounced and there is no phone number.",
    "company_size": "A team of three, below the size we serve.",
}
QUESTIONS = (
    ("Is this the EMEA or the US office?", "EMEA, the Berlin office."),
    ("Which session did they attend?", "The live one; they stayed for the Q&A."),
    ("Did they download anything besides the guide?", "Only the guide, twice."),
    ("Is a partner involved?", "Yes, they came through an integrator."),
    ("Did they mention a budget on the form?", "They ticked the 10–50k range."),
    ("Which product line were they asking about?", "Forecasting, per their form."),
)


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(accumulate(weights))


def _pick(rng: Random, cumulative: Sequence[float]) -> int:
    """An index drawn with the weights behind `cumulative`."""
    return bisect_right(cumulative, rng.random() * cumulative[-1])


def _any(rng: Random, choices: Sequence[str]) -> str:
    """One of `choices` (`rng.choice`, without its cost)."""
    return choices[int(rng.random() * len(choices))]


def _table(pairs: Sequence[tuple[str, float]]) -> tuple[tuple[str, ...], list[float]]:
    return tuple(name for name, _ in pairs), _cumulative([w for _, w in pairs])


_WON, _TRYING = _table(WON), _table(TRYING)
_CHANNELS, _CLOSING = _table(CHANNELS), _table(CLOSING_CHANNELS)
_ATTEMPTS = _cumulative(ATTEMPT_WEIGHTS)


# ---------------------------------------------------------------- the company, as generated


@dataclass(frozen=True)
class Person:
    """A member who owes SLA clocks: id, email, working time."""

    member_id: int
    email: str
    time: WorkTime


@dataclass(frozen=True)
class Rep(Person):
    """A rep and their habits (team-level figures come out of many such habits)."""

    first_touch: float  # median business seconds from handoff to the first attempt
    verdict: float  # median business seconds from handoff to a verdict
    persistence: int  # added to the number of attempts drawn
    spacing: float  # business days between attempts (the median)
    fit: float  # how often they accept, against the campaign's rate
    attempts_budget: int  # microseconds: the attempts window in their working days
    away: tuple[tuple[int, int], ...] = ()

    def away_at(self, at: int) -> bool:
        return any(lo <= at < hi for lo, hi in self.away)


@dataclass(frozen=True)
class Marketer(Person):
    answer: float  # median business seconds to answer a rep's question


@dataclass(frozen=True)
class Schedule:
    """When a campaign brings leads: always, in bursts every `period` weeks, at an event
    (weeks `at`), or from a week on. Weeks count from the oldest (0) to this one."""

    kind: str = "always"
    period: int = 4
    offset: int = 0
    at: tuple[int, ...] = ()

    def weight(self, week: int) -> float:
        if self.kind == "burst":
            return 1.8 if (week - self.offset) % self.period == 0 else 0.75
        if self.kind == "event":
            return 4.0 if week in self.at else 0.15
        if self.kind == "from":
            return 1.0 if week >= self.offset else 0.0
        return 1.0


@dataclass(frozen=True)
class Quality:
    """What a campaign's leads are like: volume, acceptance, the criteria they tend to
    fail (weights), how well they convert once worked."""

    share: float
    accept: float
    weak: Mapping[str, float]
    conversion: float = 1.0
    schedule: Schedule = Schedule()


@dataclass(frozen=True)
class Source:
    campaign_id: int
    marketer: Marketer
    quality: Quality


@dataclass(frozen=True)
class Version:
    """A lead-definition version and when it came into force."""

    definition_id: int
    version: int
    since: int
    texts: Mapping[str, str]  # criterion key → text, in the definition's order


@dataclass(frozen=True)
class Budgets:
    """The SLA in force, in microseconds."""

    policy_version: int
    first_touch: int
    verdict: int
    info_answer: int
    attempts: int  # how many attempts meet the commitment
    remind_share: float
    grace: int


@dataclass(frozen=True)
class Timeline:
    """The 26 weeks of history: when leads arrive, from which campaign, how fast sales is."""

    now: int
    starts: tuple[int, ...]  # each week's Monday 00:00 UTC, oldest first
    weeks: list[float]  # cumulative weights of the weeks (this one only so far)
    mixes: tuple[list[float], ...]  # per week, cumulative weights of the campaigns
    pace: tuple[float, ...]  # per week: 1 = sales' usual speed, above 1 slower
    slots: list[float]  # cumulative weights of the week's 168 hours (UTC)
    expected: float  # leads in a whole week, on average

    @classmethod
    def build(
        cls,
        rng: Random,
        now: datetime,
        qualities: Sequence[Quality],
        holidays: Sequence[date],
        leads: int,
    ) -> Timeline:
        this_monday = (now - timedelta(days=now.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        starts = tuple(micros(this_monday - timedelta(weeks=WEEKS - 1 - w)) for w in range(WEEKS))
        hourly = [_hour_weight(slot) for slot in range(168)]
        slots = _cumulative(hourly)
        so_far = (micros(now) - starts[-1]) / HOUR
        done = int(so_far)
        partial = (slots[done - 1] if done else 0.0) + hourly[min(done, 167)] * (so_far - done)
        holiday_weeks = {(micros(_midnight(d)) - starts[0]) // WEEK for d in holidays}
        dips = set(rng.sample(range(3, WEEKS - 2), 2))
        volume, pace, mixes = [], [], []
        for week in range(WEEKS):
            mix = [q.share * q.schedule.weight(week) for q in qualities]
            drift = max(0.55, rng.gauss(1.0, 0.1)) * (0.72 if week in dips else 1.0)
            drift *= 0.8 if week in holiday_weeks else 1.0
            volume.append(drift * sum(mix) * (partial / slots[-1] if week == WEEKS - 1 else 1.0))
            pace.append(max(0.7, rng.gauss(1.0, 0.12)))
            mixes.append(_cumulative(mix))
        pace[rng.randrange(4, WEEKS - 4)] = 1.6  # the week of the sales kick-off
        total = sum(volume)
        expected = leads * (sum(volume[:-1]) / (WEEKS - 1)) / total if total else 0.0
        return cls(
            micros(now), starts, _cumulative(volume), tuple(mixes), tuple(pace), slots, expected
        )

    def moment(self, rng: Random, week: int) -> int:
        """A moment in `week`, at the hours leads arrive (not after now)."""
        start = self.starts[week]
        if week < WEEKS - 1:
            slot = _pick(rng, self.slots)
            return start + slot * HOUR + int(rng.random() * HOUR)
        limit = min(self.now - start, WEEK)
        for _ in range(20):
            at = start + _pick(rng, self.slots) * HOUR + int(rng.random() * HOUR)
            if at <= start + limit:
                return at
        return start + int(rng.random() * limit)


def _hour_weight(slot: int) -> float:
    """How many leads arrive in this hour of the week (Monday 00:00 UTC = 0)."""
    day, hour = divmod(slot, 24)
    if day >= 5:
        return 0.12
    if 9 <= hour < 18:
        return 1.0
    if 7 <= hour < 9 or 18 <= hour < 22:
        return 0.5
    return 0.1


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# ---------------------------------------------------------------- a lead's plan


@dataclass(slots=True)
class Plan:
    """Everything that will have happened to one lead, in microseconds; cut at now later."""

    created: int
    source: Source
    rep: Rep
    handoff: int
    accepted: bool = False
    verdict: int | None = None  # the first verdict
    rejected: int | None = None  # not a fit: the verdict itself, or after some attempts
    reasons: tuple[str, ...] = ()
    version: Version | None = None  # the definition the reasons belong to
    comment: str = ""
    question: tuple[int, int, int] | None = None  # asked, answered, which
    attempts: list[tuple[int, str, str]] = field(default_factory=list)  # at, channel, outcome
    person: tuple[str, str, str, str] = ("", "", "", "")  # name, company, email, title
    size: str = ""
    country: str = ""


@dataclass
class Rows:
    """One chunk's rows, per table, in the column orders below."""

    leads: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    clocks: list[Row] = field(default_factory=list)
    rejections: list[Row] = field(default_factory=list)


LEAD_COLUMNS = (
    "id", "source", "external_id", "name", "company", "email", "title", "campaign_id",
    "owner_id", "owner_email", "definition_id", "state", "attributes", "created_at",
    "handed_off_at", "verdict_at", "first_touch_at", "attempts", "outcome",
)  # fmt: skip
EVENT_COLUMNS = ("lead_id", "kind", "member_id", "at", "data")
CLOCK_COLUMNS = (
    "lead_id", "kind", "ref", "owner_id", "policy_version", "started_at", "budget_seconds",
    "remind_share", "grace_seconds", "stage", "snoozes", "next_at", "closed_at", "outcome",
    "business_seconds",
)  # fmt: skip
REJECTION_COLUMNS = ("lead_id", "campaign_id", "definition_version", "criterion", "text", "at")


class Docs:
    """JSON values encoded for the bulk writer, the frequent ones once."""

    def __init__(self) -> None:
        self._known: dict[Any, str] = {}

    def __call__(self, value: Any) -> str:
        return json.dumps(value)

    def once(self, key: Any, make: Callable[[], Any]) -> str:
        if key not in self._known:
            self._known[key] = json.dumps(make())
        return self._known[key]


class History:
    """Plans leads and writes their rows."""

    def __init__(
        self,
        *,
        seed: int,
        now: datetime,
        timeline: Timeline,
        reps: Sequence[Rep],
        named_reps: Sequence[Rep],
        sources: Sequence[Source],
        versions: Sequence[Version],
        budgets: Budgets,
        docs: Docs,
    ) -> None:
        self.seed = seed
        self.now = micros(now)
        self.timeline = timeline
        self.reps = list(reps)
        self.named = list(named_reps)
        self.sources = list(sources)
        self.versions = sorted(versions, key=lambda v: v.since)
        self.budgets = budgets
        self.docs = docs
        self._reasons: dict[tuple[int, int], tuple[tuple[str, ...], list[float]]] = {}  # fmt: skip

    def external_id(self, index: int) -> str:
        return f"demo-{self.seed}-{index:06d}"

    def generate(self, start: int, stop: int, ids: Mapping[int, int], out: Rows) -> None:
        """Plan leads `start` to `stop` (start a multiple of BLOCK) and write the rows of
        those in `ids` (index → the lead id reserved for it)."""
        for block in range(start // BLOCK, math.ceil(stop / BLOCK)):
            rng = Random(f"liaison-demo:{self.seed}:{block}")
            for index in range(block * BLOCK, min(stop, (block + 1) * BLOCK)):
                plan = self.plan(index, rng)
                lead_id = ids.get(index)
                if lead_id is not None:
                    self.emit(index, plan, lead_id, out)

    # ------------------------------------------------------------ planning

    def plan(self, index: int, rng: Random) -> Plan:
        if index < FRESH:  # just arrived: what `liaison console` starts with
            rep = self.named[index % len(self.named)]
            handoff = self.now - int(rng.uniform(5, 240) * MINUTE)
            source = self.sources[rng.randrange(len(self.sources))]
            plan = Plan(handoff - int(rng.uniform(2, 20) * MINUTE), source, rep, handoff)
        else:
            timeline = self.timeline
            week = _pick(rng, timeline.weeks)
            created = timeline.moment(rng, week)
            source = self.sources[_pick(rng, timeline.mixes[week])]
            slow = rng.random() < 0.015  # routing waited for someone
            delay = rng.uniform(4, 60) * HOUR if slow else rng.uniform(1, 15) * MINUTE
            handoff = created + int(delay)
            plan = Plan(created, source, self._route(rng, handoff), handoff)
            self._decide(plan, rng, timeline.pace[week])
        self._profile(plan, rng)
        return plan

    def _profile(self, plan: Plan, rng: Random) -> None:
        """Who the lead is; a title and company size that fit the criteria it fails."""
        first, last, company = _any(rng, FIRST), _any(rng, LAST), _any(rng, COMPANIES)
        junior = "authority" in plan.reasons or rng.random() < 0.04
        titles = JUNIOR_TITLES if junior else TITLES
        email = f"{first}.{last}@{company.split()[0].lower()}.example".lower()
        plan.person = (f"{first} {last}", company, email, _any(rng, titles))
        sizes = SMALL_SIZES if "company_size" in plan.reasons else SIZES
        plan.size, plan.country = _any(rng, sizes), _any(rng, COUNTRIES)
        if "territory" in plan.reasons:
            plan.country = "BR"

    def _route(self, rng: Random, at: int) -> Rep:
        """A rep who is not away (round robin from a random one)."""
        first = int(rng.random() * len(self.reps))
        for step in range(len(self.reps)):
            rep = self.reps[(first + step) % len(self.reps)]
            if not rep.away_at(at):
                return rep
        return self.reps[first]

    def _decide(self, plan: Plan, rng: Random, pace: float) -> None:
        """The verdict, a question, the attempts and their outcomes."""
        rep, quality, time = plan.rep, plan.source.quality, plan.rep.time
        plan.accepted = rng.random() < min(0.97, quality.accept * rep.fit)
        touch = _business(rng, rep.first_touch * pace, 1.0, 5 * 8 * HOUR)
        drawn = _pick(rng, _ATTEMPTS) + rep.persistence
        attempts = max(0, min(8, drawn)) if plan.accepted else 0
        if rng.random() < 0.03:  # it sat unnoticed in the queue
            decide = int(rng.uniform(18, 60) * HOUR)
        elif attempts:  # accepted just before the first call
            decide = int(touch * rng.uniform(0.25, 0.9))
        else:
            decide = _business(rng, rep.verdict * pace, 1.2, 6 * 8 * HOUR)
        verdict = time.add(plan.handoff, decide)
        if rng.random() < 0.07:
            verdict = self._ask(plan, rng, decide, verdict)
        plan.verdict = verdict
        if not plan.accepted:
            self._reject(plan, rng, verdict)
            return
        if attempts:
            first = max(time.add(plan.handoff, touch), time.add(verdict, _minutes(rng, 2, 30)))
            self._attempt(plan, rng, first, attempts)

    def _ask(self, plan: Plan, rng: Random, decide: int, verdict: int) -> int:
        """The rep asks the campaign's marketer first; the verdict waits for the answer."""
        marketer, time = plan.source.marketer, plan.rep.time
        asked = time.add(plan.handoff, int(decide * rng.uniform(0.1, 0.7)))
        answered = marketer.time.add(asked, _business(rng, marketer.answer, 1.1, 10 * 8 * HOUR))
        plan.question = (asked, answered, int(rng.random() * len(QUESTIONS)))
        return max(verdict, time.add(answered, _minutes(rng, 5, 40)))

    def _reject(self, plan: Plan, rng: Random, at: int, late: bool = False) -> None:
        """Not a fit at `at`: one criterion of the definition then in force, or two; the
        campaign's weak spots most often, or (after talking to them) budget, timing, need."""
        version = self._version_at(at)
        names, weights = self._reason_table(None if late else plan.source, version)
        first = _pick(rng, weights)
        picked: tuple[str, ...] = (names[first],)
        if not late and rng.random() < 0.3:
            second = _pick(rng, weights)
            if second != first:
                picked = (names[first], names[second])
        plan.rejected, plan.reasons, plan.version = at, picked, version
        plan.comment = COMMENTS.get(picked[0], "") if rng.random() < 0.2 else ""

    def _reason_table(
        self, source: Source | None, version: Version
    ) -> tuple[tuple[str, ...], list[float]]:
        key = (source.campaign_id if source else 0, version.version)
        if key not in self._reasons:
            names = tuple(version.texts)
            weak = source.quality.weak if source else dict(LATE_REASONS)
            default = 0.25 if source else 0.01
            self._reasons[key] = names, _cumulative([weak.get(n, default) for n in names])
        return self._reasons[key]

    def _attempt(self, plan: Plan, rng: Random, first: int, count: int) -> None:
        """`count` attempts, a business day or so apart (some much further); the lead
        converts on the last one with a probability that grows with `count`."""
        rep, time = plan.rep, plan.rep.time
        converts = rng.random() < min(0.9, CONVERSION[count] * plan.source.quality.conversion)
        gives_up = not converts and count >= 3 and rng.random() < 0.25
        at = first
        for n in range(1, count + 1):
            if n > 1:
                at = time.add(at, _business(rng, rep.spacing * 8 * 3600, 0.6, 5 * 8 * HOUR))
            if n == count and converts:
                outcome = _WON[0][_pick(rng, _WON[1])]
                channel = _CLOSING[0][_pick(rng, _CLOSING[1])]
            else:
                outcome = "lost" if n == count and gives_up else _TRYING[0][_pick(rng, _TRYING[1])]
                channel = _CHANNELS[0][_pick(rng, _CHANNELS[1])]
            plan.attempts.append((at, channel, outcome))
        if not converts and rng.random() < 0.025:  # talking to them showed it is not a fit
            kept = plan.attempts[: 1 + (rng.random() < 0.5)]
            last, channel, _ = kept[-1]
            kept[-1] = (last, channel, "connected")
            plan.attempts = kept
            self._reject(plan, rng, time.add(last, _minutes(rng, 10, 120)), late=True)

    def _version_at(self, at: int) -> Version:
        found = self.versions[0]
        for version in self.versions:
            if version.since <= at:
                found = version
        return found

    # ------------------------------------------------------------ rows, cut at now

    def emit(self, index: int, plan: Plan, lead_id: int, out: Rows) -> None:
        """The lead's rows as of now."""
        now, rep, docs = self.now, plan.rep, self.docs
        assigned = plan.handoff <= now
        events = out.events
        owner_email = rep.email if assigned else None
        events.append(
            (
                lead_id,
                "ingested",
                None,
                moment(plan.created),
                docs.once(("ingested", owner_email), lambda: _ingested(owner_email)),
            )
        )
        state, verdict_at, first_touch, made, best = "unassigned", None, None, 0, None
        if assigned:
            state = "handed_off"
            events.append((lead_id, "handed_off", rep.member_id, moment(plan.handoff), self._empty))
            self._question(plan, index, lead_id, out)
            decided = plan.verdict is not None and plan.verdict <= now
            if decided:
                verdict_at = moment(plan.verdict or 0)
                if plan.accepted:
                    state = "accepted"
                    events.append((lead_id, "accepted", rep.member_id, verdict_at, self._empty))
            for at, channel, outcome in plan.attempts:
                if at > now:
                    break
                made += 1
                when = moment(at)
                first_touch = first_touch or when
                best = better_outcome(best, outcome)
                events.append(
                    (lead_id, "attempt_logged", rep.member_id, when, self._tried(channel, outcome))
                )
            if plan.rejected is not None and plan.rejected <= now:
                state = "not_a_fit"
                self._not_a_fit(plan, lead_id, out)
            self._clocks(plan, lead_id, out)
        out.leads.append(
            (
                lead_id,
                "demo",
                self.external_id(index),
                *plan.person,
                plan.source.campaign_id,
                rep.member_id if assigned else None,
                owner_email,
                self._version_at(plan.created).definition_id,
                state,
                self._attributes(plan),
                moment(plan.created),
                moment(plan.handoff) if assigned else None,
                verdict_at,
                first_touch,
                made,
                best,
            )
        )

    @property
    def _empty(self) -> Any:
        return self.docs.once("empty", dict)

    def _tried(self, channel: str, outcome: str) -> Any:
        return self.docs.once(
            ("attempt", channel, outcome),
            lambda: {"channel": channel, "outcome": outcome, "note": ""},
        )

    def _attributes(self, plan: Plan) -> Any:
        size, country = plan.size, plan.country
        return self.docs.once(
            ("attributes", size, country), lambda: {"company_size": size, "country": country}
        )

    def _question(self, plan: Plan, index: int, lead_id: int, out: Rows) -> None:
        if plan.question is None or plan.question[0] > self.now:
            return
        asked, answered, which = plan.question
        question, answer = QUESTIONS[which]
        marketer = plan.source.marketer
        ref = f"{self.external_id(index)}-q"
        out.events.append(
            (
                lead_id,
                "info_requested",
                plan.rep.member_id,
                moment(asked),
                self.docs(
                    {"question_id": ref, "question": question, "marketer_id": marketer.member_id}
                ),
            )
        )
        done = answered <= self.now
        if done:
            out.events.append(
                (
                    lead_id,
                    "info_answered",
                    marketer.member_id,
                    moment(answered),
                    self.docs({"question_id": ref, "answer": answer}),
                )
            )
        budget = self.budgets.info_answer
        self._clock(
            out,
            lead_id,
            "info_answer",
            marketer,
            asked,
            budget,
            answered if done else None,
            ref=ref,
        )

    def _not_a_fit(self, plan: Plan, lead_id: int, out: Rows) -> None:
        version = plan.version
        assert version is not None and plan.rejected is not None
        at = moment(plan.rejected)
        texts = [version.texts[key] for key in plan.reasons]
        data = self.docs.once(
            ("not_a_fit", version.version, plan.reasons, plan.comment),
            lambda: {
                "criteria": list(plan.reasons),
                "criteria_text": texts,
                "comment": plan.comment,
                "definition_version": version.version,
            },
        )
        out.events.append((lead_id, "not_a_fit", plan.rep.member_id, at, data))
        for key, text in zip(plan.reasons, texts, strict=True):
            out.rejections.append(
                (lead_id, plan.source.campaign_id, version.version, key, text, at)
            )

    def _clocks(self, plan: Plan, lead_id: int, out: Rows) -> None:
        """The rep's clocks: first touch and verdict from the handoff, attempts from the
        acceptance; closed as `storage.clocks` closes them, else running."""
        now, rep, budgets = self.now, plan.rep, self.budgets
        rejected = plan.rejected if plan.rejected is not None and plan.rejected <= now else None
        touched = plan.attempts[0][0] if plan.attempts and plan.attempts[0][0] <= now else None
        if touched is not None:
            self._clock(
                out, lead_id, "first_touch", rep, plan.handoff, budgets.first_touch, touched
            )
        else:
            self._clock(
                out,
                lead_id,
                "first_touch",
                rep,
                plan.handoff,
                budgets.first_touch,
                rejected,
                cancelled=rejected is not None,
            )
        verdict = plan.verdict if plan.verdict is not None and plan.verdict <= now else None
        self._clock(out, lead_id, "verdict", rep, plan.handoff, budgets.verdict, verdict)
        if not plan.accepted or verdict is None:
            return
        wanted = max(1, budgets.attempts)
        made = [a for a in plan.attempts if a[0] <= now]
        decisive = next(
            (n for n, (_, _, outcome) in enumerate(made[: wanted - 1]) if outcome in DECISIVE),
            None,
        )
        if decisive is not None:  # the buyer answered before the attempts were all made
            end = made[decisive][0]
            self._clock(
                out, lead_id, "attempts", rep, verdict, rep.attempts_budget, end, ended=True
            )
        elif len(made) >= wanted:
            end = made[wanted - 1][0]
            self._clock(out, lead_id, "attempts", rep, verdict, rep.attempts_budget, end)
        else:
            cancelled = rejected is not None
            self._clock(
                out,
                lead_id,
                "attempts",
                rep,
                verdict,
                rep.attempts_budget,
                rejected,
                cancelled=cancelled,
            )

    def _clock(
        self,
        out: Rows,
        lead_id: int,
        kind: str,
        owner: Person,
        start: int,
        budget: int,
        end: int | None,
        *,
        cancelled: bool = False,
        ended: bool = False,
        ref: str = "",
    ) -> None:
        """One clock as `storage.clocks` and the tick leave it at now: closed at `end` — met
        or missed, with its business time, or cancelled — else open, with the stage the tick
        gives it (`sla.Steps.of`) and its next step."""
        budgets, time = self.budgets, owner.time
        remind = round(budget * budgets.remind_share)
        next_at = closed = outcome = seconds = None
        if end is not None:
            worked = time.between(start, end)
            stage = (remind <= worked) + (budget <= worked) + (budget + budgets.grace <= worked)
            closed = moment(end)
            if cancelled:
                outcome = "cancelled"
            elif ended:
                outcome, seconds = "ended", worked / SECOND
            else:
                outcome, seconds = ("met" if worked <= budget else "missed"), worked / SECOND
        else:
            due = time.add(start, budget)
            steps = (time.add(start, remind), due, time.add(due, budgets.grace))
            stage = sum(step <= self.now for step in steps)
            next_at = moment(steps[stage]) if stage < len(steps) else None
            if kind == "attempts" and stage == len(steps):
                # As the tick leaves it: the window is over, missed as of its end.
                closed, outcome, seconds = moment(due), "missed", budget / SECOND
        out.clocks.append(
            (
                lead_id,
                kind,
                ref,
                owner.member_id,
                budgets.policy_version,
                moment(start),
                budget / SECOND,
                budgets.remind_share,
                budgets.grace / SECOND,
                stage,
                self.docs.once("snoozes", list),
                next_at,
                closed,
                outcome,
                seconds,
            )
        )


def _ingested(owner_email: str | None) -> dict[str, Any]:
    return {"source": "demo", "owner_email": owner_email}


def _business(rng: Random, median: float, sigma: float, cap: int) -> int:
    """Business microseconds, log-normal around `median` seconds, whole seconds, capped."""
    seconds = rng.lognormvariate(math.log(median), sigma)
    return min(cap, max(60 * SECOND, int(seconds) * SECOND))


def _minutes(rng: Random, low: float, high: float) -> int:
    return int(rng.uniform(low, high) * 60) * SECOND
