"""Lead ingestion (webhook and CSV): validate, store once, hand off to the owner's DMs."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from typing import Any, Protocol, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError
from sqlmodel import Session

from bot.core.business_time import Company
from bot.core.delivery import Deliverer, Directory
from bot.core.effects import Effect, Notify, Owed
from bot.core.messages import Card, Fact
from bot.core.owing import for_admins, write_to_outbox
from bot.core.tasks import Background
from bot.core.text import text_for, when
from handlers import clocks as sla
from handlers.cards import HANDOFF, LeadFacts, new_lead_card
from handlers.owners import CACHE_SECONDS, Lookup, OwnerLookups
from storage import away as stored_away
from storage import channels, definitions
from storage import leads as stored_leads
from storage.db import Store
from storage.models import Campaign, EventKind, Lead, LeadDefinition, LeadState, Member
from storage.values import NewEvent, NewLead

log = logging.getLogger(__name__)
T = TypeVar("T")

KNOWN = {
    "external_id",
    "name",
    "company",
    "email",
    "title",
    "campaign",
    "source",
    "owner_email",
    "created_at",
}


# A lead's `created_at` is refused outside [2000-01-01, now + 1 day]: earlier is a typo or
# a placeholder, later is a clock or time-zone mistake at the sender.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
AHEAD = timedelta(days=1)
# Extra attributes are kept as typed JSON, within these limits.
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTES_BYTES = 16 * 1024


# An address whose part before the @ is lower-case letters, digits and `_+-` between dots,
# and whose domain is plain ASCII: most addresses a batch holds. For these the full check
# below comes down to the domain's, which is remembered (a batch has a few domains).
PLAIN_EMAIL = re.compile(r"([a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*)@([A-Za-z0-9.-]+)")
MAX_PLAIN_EMAIL = 254  # email-validator's limit on the whole address, in bytes


def email_address(value: str) -> str:
    """`value` checked and normalised as pydantic's `EmailStr` does (the same errors).

    A plain address (`PLAIN_EMAIL`, within the length limit) is checked by its domain,
    remembered: the rest of the full check cannot fail for it and changes nothing of it.
    Anything else, and any address whose domain is refused, gets the full check, so every
    error reads as the full check words it."""
    plain = PLAIN_EMAIL.fullmatch(value)
    if plain is not None and len(value) <= MAX_PLAIN_EMAIL:
        domain = _plain_domain(plain.group(2))
        if domain is not None:
            return f"{plain.group(1)}@{domain}"
    return _checked_email(value)


@lru_cache(maxsize=10_000)
def _checked_email(value: str) -> str:
    """The full check, remembered: a batch names the same few owners again and again."""
    return validate_email(value)[1]


@lru_cache(maxsize=1_000)
def _plain_domain(domain: str) -> str | None:
    """The normalised form of an ASCII domain the full check accepts (as the domain of a
    plain address, whose length it keeps), else None."""
    try:
        checked = validate_email(f"x@{domain}")[1].partition("@")[2]
    except PydanticCustomError:
        return None
    return checked if len(checked) == len(domain) and checked.isascii() else None


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored (a NUL byte, a lone surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL byte (\\u0000), which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds a lone surrogate)"
    return None


class LeadIn(BaseModel):
    """One lead as the webhook and the CSV import accept it; other keys become attributes.

    Validated with `context={"now": …}`, `created_at` must also not be more than a day
    ahead of now."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    external_id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=300)
    company: str | None = Field(None, max_length=300)
    email: str | None = None
    title: str | None = Field(None, max_length=300)
    campaign: str | None = Field(None, max_length=200)
    source: str = Field("", max_length=100)
    owner_email: str | None = None
    created_at: datetime | None = None

    @field_validator("external_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator(
        "external_id",
        "name",
        "company",
        "email",
        "title",
        "campaign",
        "source",
        "owner_email",
        mode="before",
    )
    @classmethod
    def _storable(cls, value: Any) -> Any:
        problem = text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("email", "owner_email", "company", "title", "campaign", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("email", "owner_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else email_address(value)

    @field_validator("created_at")
    @classmethod
    def _in_range(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        now = (info.context or {}).get("now")
        latest = now + AHEAD if isinstance(now, datetime) else None
        # The year first: 9999-12-31T23:59:59-14:00 in UTC would overflow.
        if value.year > 9998:
            raise ValueError("must not be more than a day in the future")
        if value.year < EARLIEST.year - 1 or value.astimezone(UTC) < EARLIEST:
            raise ValueError(f"must be on or after {EARLIEST.date().isoformat()}")
        if latest is not None and value.astimezone(UTC) > latest:
            raise ValueError("must not be more than a day in the future")
        return value.astimezone(UTC)

    def attributes(self) -> dict[str, Any]:
        """The keys that are not lead fields, with their JSON values as sent."""
        return {str(k): v for k, v in (self.model_extra or {}).items() if k not in KNOWN}


def _first_bad_text(value: Any) -> str | None:
    """Why some string inside a JSON value (keys included) cannot be stored, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return problem
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def attribute_problems(attributes: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, why) for each extra attribute that cannot be kept, and for the whole set
    (`attributes`) when there are too many or they are too big."""
    problems: list[tuple[str, str]] = []
    if len(attributes) > MAX_ATTRIBUTES:
        return [("attributes", f"{len(attributes)} extra attributes; at most {MAX_ATTRIBUTES}")]
    for key, value in attributes.items():
        problem = _first_bad_text(key) or _first_bad_text(value)
        if problem is None and len(key) > MAX_ATTRIBUTE_KEY:
            problem = f"attribute names are at most {MAX_ATTRIBUTE_KEY} characters"
        if problem is not None:
            problems.append((key, problem))
    if not problems:
        size = len(json.dumps(attributes, ensure_ascii=False).encode())
        if size > MAX_ATTRIBUTES_BYTES:
            why = f"extra attributes take {size} bytes; at most {MAX_ATTRIBUTES_BYTES}"
            problems.append(("attributes", why))
    return problems


@dataclass(frozen=True)
class Problem:
    """Why one lead was refused: its position, the field and the reason."""

    index: int
    field: str
    message: str


def validate(
    items: Sequence[Any], *, now: datetime | None = None
) -> tuple[list[LeadIn], list[Problem]]:
    """Parse each item; returns the good leads and a problem per bad field. With `now`,
    a `created_at` more than a day ahead of it is a problem too."""
    good: list[LeadIn] = []
    problems: list[Problem] = []
    context = {"now": now} if now is not None else None
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(Problem(index, "", "each lead must be a JSON object"))
            continue
        try:
            lead = LeadIn.model_validate(item, context=context)
        except ValidationError as error:
            for detail in error.errors(include_url=False, include_input=False):
                where = ".".join(str(p) for p in detail["loc"]) or ""
                problems.append(Problem(index, where, detail["msg"]))
            continue
        bad = attribute_problems(lead.attributes())
        problems += [Problem(index, field, message) for field, message in bad]
        if not bad:
            good.append(lead)
    return good, problems


@dataclass(frozen=True)
class Outcome:
    external_id: str
    source: str
    lead_id: int
    status: str  # "created" or "duplicate"
    owner: str | None
    routing: bool = False  # created, waiting for its owner to be looked up


@dataclass(frozen=True)
class Created(NewLead):
    """A lead this batch stored, with its id: what its card and events need of it."""

    id: int = 0


class Ingested(LeadFacts, Protocol):
    """A stored lead as handing it off needs it: a `Lead`, or one just `Created`."""

    @property
    def campaign_id(self) -> int | None: ...
    @property
    def definition_id(self) -> int: ...
    @property
    def owner_email(self) -> str | None: ...


def store_leads(
    session: Session,
    leads: Sequence[LeadIn],
    *,
    now: datetime,
    admin_channel: str | None,
    company: Company,
    routing: Collection[str] = frozenset(),
    route_unknown: bool = False,
) -> tuple[list[Outcome], list[Effect]]:
    """Store new leads with a few bulk statements and hand those whose owner is a member to
    them; known `(source, external_id)` are no-ops. A lead whose owner nobody knows yet
    waits as `routing` (no card, no admin notice) when `route_unknown` (the webhook looks
    owners up after answering) or when its owner's lookup failed (`routing`: lower-case
    emails); otherwise, and without an owner email, it is unassigned and the admins told.

    Leads are written in one order (by source and id) whatever the order given, so two
    batches racing on the same rows wait for each other instead of deadlocking; a row a
    racer wrote first is read back, reported as a duplicate."""
    stored = store_batch(
        session,
        leads,
        now=now,
        admin_channel=admin_channel,
        company=company,
        routing=routing,
        route_unknown=route_unknown,
    )
    return stored.outcomes, stored.effects


@dataclass(frozen=True)
class Stored:
    """What `store_batch` did: each lead's outcome, the effects to owe, and the owners it
    read, by id (owing their cards reads them no second time)."""

    outcomes: list[Outcome]
    effects: list[Effect]
    members: dict[int, Member]


def store_batch(
    session: Session,
    leads: Sequence[LeadIn],
    *,
    now: datetime,
    admin_channel: str | None,
    company: Company,
    routing: Collection[str] = frozenset(),
    route_unknown: bool = False,
) -> Stored:
    """`store_leads`, saying which members it read.

    Campaigns come first, in name order, then leads in key order: batches racing to create
    the same new campaign or lead wait for each other, never deadlock (a campaign that
    exists already is never waited for)."""
    names = {item.campaign for item in leads if item.campaign}
    campaigns = stored_leads.ensure_campaigns(session, names=names)
    definition_id, version = definitions.definition_in_force(session)
    emails = {str(item.owner_email).lower() for item in leads if item.owner_email}
    owners = stored_leads.members_by_email(session, emails=emails)
    rows = [
        _new_lead(item, owners, campaigns, definition_id, now, routing, route_unknown)
        for item in leads
    ]
    stored = stored_leads.add_leads(session, leads=rows)
    outcomes: list[Outcome] = []
    created: list[Created] = []
    for item, row, found in zip(leads, rows, stored, strict=True):
        routed = found.created and row.state == LeadState.routing
        status = "created" if found.created else "duplicate"
        outcomes.append(
            Outcome(item.external_id, item.source, found.id, status, found.owner_email, routed)
        )
        if found.created:
            created.append(Created(**vars(row), id=found.id))
    ingested = [
        NewEvent(
            lead.id,
            EventKind.ingested,
            now,
            data={"source": lead.source, "owner_email": lead.owner_email},
        )
        for lead in created
    ]
    names_of = {campaign_id: name for name, campaign_id in campaigns.items()}
    handed: list[tuple[Ingested, Member]] = [
        (lead, owners[lead.owner_email or ""]) for lead in created if lead.owner_id
    ]
    effects = _hand_off(
        session, handed, now, company, names_of, {definition_id: version}, events=ingested
    )
    unassigned = [lead for lead in created if lead.state == LeadState.unassigned]
    if unassigned:
        effects += _report_unassigned(session, unassigned, admin_channel)
    return Stored(outcomes, effects, {owner.id or 0: owner for owner in owners.values()})


def _new_lead(
    item: LeadIn,
    owners: dict[str, Member],
    campaigns: Mapping[str, int],
    definition_id: int,
    now: datetime,
    routing: Collection[str],
    route_unknown: bool,
) -> NewLead:
    owner_email = str(item.owner_email).lower() if item.owner_email else None
    owner = owners.get(owner_email) if owner_email else None
    state = LeadState.handed_off if owner else LeadState.unassigned
    if owner is None and owner_email and (route_unknown or owner_email in routing):
        state = LeadState.routing
    return NewLead(
        source=item.source,
        external_id=item.external_id,
        name=item.name,
        company=item.company,
        email=str(item.email) if item.email else None,
        title=item.title,
        campaign_id=campaigns.get(item.campaign or ""),
        owner_id=owner.id if owner else None,
        owner_email=owner_email,
        definition_id=definition_id,
        state=state.value,
        attributes=item.attributes(),
        created_at=item.created_at or now,
        handed_off_at=now if owner else None,
    )


def _hand_off(
    session: Session,
    handed: Sequence[tuple[Ingested, Member]],
    now: datetime,
    company: Company,
    campaigns: dict[int, str],
    versions: dict[int, int],
    events: Sequence[NewEvent] = (),
) -> list[Effect]:
    """Leads just handed to their owners: the events and SLA clocks, in bulk, and the
    effects to owe: each owner's card (once per lead) and, for an owner who is away, a
    note to their manager. `events`: others of the batch's, written with these."""
    if not handed:
        stored_leads.add_events(session, events=events)
        return []
    stored_leads.add_events(
        session,
        events=[
            *events,
            *(
                NewEvent(lead.id or 0, EventKind.handed_off, now, member_id=owner.id)
                for lead, owner in handed
            ),
        ],
    )
    owner_ids = {owner.id or 0 for _, owner in handed}
    spans = stored_away.away_spans_of(session, member_ids=owner_ids)
    lines = sla.on_handoffs(
        session, [(lead.id or 0, owner) for lead, owner in handed], now, company, away=spans
    )
    away = {
        owner_id: until
        for owner_id, owned in spans.items()
        for starts_at, until in owned
        if starts_at <= now < until
    }
    effects: list[Effect] = []
    for lead, owner in handed:
        card = new_lead_card(
            lead,
            owner=owner,
            campaign=campaigns.get(lead.campaign_id or 0),
            version=versions.get(lead.definition_id, 0),
            sla_lines=lines.get(lead.id or 0, ()),
        )
        effects.append(
            Notify(owner.id or 0, card, lead_id=lead.id, purpose=HANDOFF, key=f"handoff:{lead.id}")
        )
        if owner.id in away and owner.manager_id is not None:
            effects.append(_away_flag(lead, owner, away[owner.id or 0]))
    return effects


def route_found(
    session: Session,
    *,
    found: Collection[str],
    not_found: Collection[str],
    now: datetime,
    admin_channel: str | None,
    company: Company,
) -> list[Effect]:
    """Leads that waited as `routing` whose owner's directory has now answered: handed to
    the owner it found, or unassigned (the admin told once) when nobody has that email.
    Each lead moves once, whichever pass or instance gets there first: the leads are
    locked (another instance's are skipped) and moved only while still routing."""
    owners = stored_leads.members_by_email(session, emails=found)
    leads = stored_leads.take_routing(session, emails={*found, *not_found})
    for lead in leads:
        session.expunge(lead)  # moved by `move_leads`; the copies only describe them
    mine: dict[int, list[Lead]] = {}
    nobody: list[Lead] = []
    for lead in leads:
        owner = owners.get(lead.owner_email or "") if lead.owner_email in found else None
        if owner is None:
            nobody.append(lead)
        else:
            mine.setdefault(owner.id or 0, []).append(lead)
    handed: list[tuple[Ingested, Member]] = []
    by_id = {owner.id: owner for owner in owners.values()}
    moved = stored_leads.hand_leads(
        session,
        owners={lead.id or 0: owner_id for owner_id, group in mine.items() for lead in group},
        now=now,
    )
    for owner_id, group in mine.items():
        for lead in group:
            if lead.id in moved:
                lead.state, lead.owner_id, lead.handed_off_at = "handed_off", owner_id, now
                handed.append((lead, by_id[owner_id]))
    effects = _hand_off(session, handed, now, company, *_names_and_versions(session, leads))
    moved = stored_leads.move_leads(
        session,
        lead_ids=[lead.id or 0 for lead in nobody],
        to=LeadState.unassigned.value,
        owner_id=None,
        now=now,
    )
    unassigned = [lead for lead in nobody if lead.id in moved]
    for lead in unassigned:
        lead.state = LeadState.unassigned.value
    if unassigned:
        effects += _report_unassigned(session, unassigned, admin_channel)
    return effects


def _names_and_versions(
    session: Session, leads: Sequence[Lead]
) -> tuple[dict[int, str], dict[int, int]]:
    """The campaign names and lead-definition versions these leads refer to."""
    names: dict[int, str] = {}
    for campaign_id in {lead.campaign_id for lead in leads if lead.campaign_id}:
        campaign = session.get(Campaign, campaign_id)
        names[campaign_id] = campaign.name if campaign else ""
    versions: dict[int, int] = {}
    for definition_id in {lead.definition_id for lead in leads}:
        definition = session.get(LeadDefinition, definition_id)
        versions[definition_id] = definition.version if definition else 0
    return names, versions


def _away_flag(lead: Ingested, owner: Member, away_until: datetime) -> Notify:
    """A lead handed to someone who is away: their manager hears of it, privately."""
    until = when(away_until, owner.timezone)
    card = Card(
        title=text_for("away_flag_title", who=owner.name),
        text=text_for("away_flag_text", who=owner.name, until=until, lead=lead.name),
        context=text_for("lead_context_short", lead_id=lead.id),
    )
    # An escalation Liaison raises on its own: it waits for the manager's working hours.
    return Notify(owner.manager_id or 0, card, key=f"away-flag:{lead.id}", nudge=True)


def _report_unassigned(
    session: Session, leads: Sequence[Ingested], admin_channel: str | None
) -> list[Effect]:
    card = Card(
        title=text_for("unassigned_title", count=len(leads)),
        text=text_for("unassigned_intro"),
        fields=tuple(
            Fact(
                f"Lead #{lead.id}",
                text_for("unassigned_line", name=lead.name, owner_email=lead.owner_email),
            )
            for lead in leads[:20]
        ),
    )
    target = channels.channel_target(session, kind="admin") or admin_channel
    effects = for_admins(session, card, nudge=True, channel=target)
    if not effects:
        log.warning(
            "%d unassigned leads and no admin to tell; set one with "
            "`liaison members set EMAIL --role admin`",
            len(leads),
        )
    return effects


ROUTING_BATCH = 200  # owner emails a routing pass looks up
# Lead ingestion's own threads: a burst of leads never takes the threads Slack clicks and
# Teams activities run on (asyncio's default executor).
INGEST_THREADS = 2
# Leads the webhook takes in before it answers 429: those being stored plus those whose
# owner is being looked up. At ~1,000 leads/s stored that is seconds of work.
QUEUE_LIMIT = 20_000


@dataclass(frozen=True)
class Accepted:
    """A stored batch: each lead's outcome, and the effects owed (to deliver now)."""

    outcomes: list[Outcome]
    effects: list[Effect]

    @property
    def routing(self) -> dict[str, int]:
        """Owner emails to look up, with how many of the batch's leads wait for each."""
        waiting: dict[str, int] = {}
        for outcome in self.outcomes:
            if outcome.routing and outcome.owner:
                waiting[outcome.owner] = waiting.get(outcome.owner, 0) + 1
        return waiting


@dataclass(frozen=True)
class Routing:
    """Owners whose routing leads wait for the next routing pass (`done`: messages owed)."""

    found: set[str]
    not_found: set[str]
    now: datetime | None
    done: asyncio.Future[int]


class Ingestor:
    """Validate → store (owners known: handed off; unknown: routing) → answer; then find
    the unknown owners in the platform directories and hand their leads over.

    Storing runs on the ingestor's own small thread pool. The work queued behind the
    webhook — leads being stored and leads whose owner is being looked up — is bounded:
    `admit` refuses a batch that would take it past `queue_limit`."""

    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        directories: Sequence[Directory],
        admin_channel: str | None,
        company: Company,
        *,
        threads: int = INGEST_THREADS,
        queue_limit: int = QUEUE_LIMIT,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.store = store
        self.company = company
        self.deliverer = deliverer
        self.directories = directories
        self.admin_channel = admin_channel
        self.lookups = OwnerLookups(directories, cache_seconds=cache_seconds)
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ingest")
        self.queue_limit = queue_limit
        self.storing = 0  # leads admitted, not yet stored
        self.waiting = 0  # leads stored as routing whose owners are being looked up
        self._to_route: list[Routing] = []
        self._router: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return self.storing + self.waiting

    def admit(self, count: int) -> bool:
        """Take `count` leads in (to `accept`), unless that takes the queued work past the
        limit; an idle ingestor takes any batch."""
        if self.queued and self.queued + count > self.queue_limit:
            return False
        self.storing += count
        return True

    async def accept(self, items: Sequence[Any], *, now: datetime) -> Accepted | list[Problem]:
        """Validate and store `items` admitted by `admit`, on the ingest threads: the
        problems when any lead is invalid (nothing stored), else what was stored."""
        try:
            return await self._run(self._validate_and_store, items, now)
        finally:
            self.storing -= len(items)

    def resolve_later(self, background: Background, accepted: Accepted) -> None:
        """Look up the owners the batch's routing leads wait for, after the answer."""
        waiting = accepted.routing
        if waiting:
            count = sum(waiting.values())
            self.waiting += count
            background.spawn(self._resolve_counted(set(waiting), count))

    async def _resolve_counted(self, emails: set[str], count: int) -> None:
        try:
            await self.resolve(emails)
        finally:
            self.waiting -= count

    async def ingest(self, leads: Sequence[LeadIn], *, now: datetime) -> list[Outcome]:
        """Store the leads, owing their cards to the outbox, look their new owners up, and
        wake the sender (`liaison import-leads`: everything done when it returns)."""
        accepted = await self._run(self._store, leads, now)
        await self.deliverer.deliver(accepted.effects, None)
        if accepted.routing:
            await self.resolve(set(accepted.routing), now)
        return accepted.outcomes

    async def resolve(
        self, emails: Collection[str], now: datetime | None = None, *, members_first: bool = False
    ) -> int:
        """Find these owners in the directories (with `members_first`, those who became
        members meanwhile without asking) and move their routing leads: handed to those
        found, unassigned for those nobody has; the others stay routing for
        `retry_routing`. How many messages were owed.

        Without `members_first` (owners nobody knew a moment ago, when their leads were
        stored), no transaction is spent on asking the database first: a member found
        meanwhile is found again, at the cost of one lookup (or none, remembered)."""
        known = await self._run(self._known, set(emails)) if members_first else set()
        results = await self.lookups.look_up(set(emails) - known)
        found = known | {e for e, result in results.items() if result is Lookup.found}
        not_found = {e for e, result in results.items() if result is Lookup.not_found}
        if not found and not not_found:
            return 0
        return await self._route_in_turn(found, not_found, now)

    async def _route_in_turn(
        self, found: set[str], not_found: set[str], now: datetime | None
    ) -> int:
        """Move the routing leads of these owners in the next routing pass. Passes run one
        at a time, and whoever arrives while one runs shares the next: fewer, larger
        transactions, and at most one ingest thread routing while batches are stored."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()
        self._to_route.append(Routing(found, not_found, now, waiter))
        if self._router is None or self._router.done() or self._router.get_loop() is not loop:
            self._router = loop.create_task(self._routing_passes())
        return await waiter

    async def _routing_passes(self) -> None:
        while self._to_route:
            queued, self._to_route = self._to_route, []
            by_now: dict[datetime | None, list[Routing]] = {}
            for routing in queued:
                by_now.setdefault(routing.now, []).append(routing)
            for now, group in by_now.items():
                found = set().union(*(r.found for r in group))
                not_found = set().union(*(r.not_found for r in group)) - found
                try:
                    effects = await self._run(self._route, found, not_found, now)
                    await self.deliverer.deliver(effects, None)
                except Exception as error:
                    for routing in group:
                        if not routing.done.done():
                            routing.done.set_exception(error)
                    continue
                owed = sum(effect.count for effect in effects if isinstance(effect, Owed))
                for routing in group:
                    if not routing.done.done():
                        routing.done.set_result(owed)

    async def retry_routing(self, *, now: datetime) -> sla.TickReport:
        """A scheduler pass: look the owners of `routing` leads up again; hand the leads
        to those found, unassign (and tell the admin of) those nobody has, and leave the
        rest for the next pass while their directory still cannot answer."""
        emails = await self._run(self._routing_emails)
        if not emails:
            return sla.TickReport()
        owed = await self.resolve(emails, now, members_first=True)
        return sla.TickReport(looked_at=len(emails), messages=owed)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` on an ingest thread, in this task's context (its request id)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, partial(context.run, work, *args)
        )

    def _validate_and_store(self, items: Sequence[Any], now: datetime) -> Accepted | list[Problem]:
        good, problems = validate(items, now=now)
        return problems if problems else self._store(good, now)

    def _store(self, leads: Sequence[LeadIn], now: datetime) -> Accepted:
        with self.store.session() as session:
            stored = store_batch(
                session,
                leads,
                now=now,
                admin_channel=self.admin_channel,
                company=self.company,
                route_unknown=bool(self.directories),
            )
            owed = write_to_outbox(
                session,
                stored.effects,
                actor_id=None,
                now=now,
                company=self.company,
                members=stored.members,
            )
            return Accepted(stored.outcomes, owed)

    def _routing_emails(self) -> list[str]:
        with self.store.session() as session:
            return stored_leads.routing_emails(session, limit=ROUTING_BATCH)

    def _route(self, found: set[str], not_found: set[str], now: datetime | None) -> list[Effect]:
        now = now or datetime.now(UTC)
        with self.store.session() as session:
            effects = route_found(
                session,
                found=found,
                not_found=not_found,
                now=now,
                admin_channel=self.admin_channel,
                company=self.company,
            )
            return write_to_outbox(session, effects, actor_id=None, now=now, company=self.company)

    def _known(self, emails: set[str]) -> set[str]:
        with self.store.session() as session:
            return set(stored_leads.members_by_email(session, emails=emails))
