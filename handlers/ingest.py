"""Lead ingestion (webhook and CSV): validate, store once, hand off to the owner's DMs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from sqlmodel import Session

from bot.delivery import Deliverer, Directory, LookupFailed
from bot.effects import Effect, Notify, Owed, Post
from bot.messages import Card, Field_
from bot.text import say, when
from digests import sla
from digests.business_time import Company
from digests.owing import owe
from handlers.cards import HANDOFF, lead_card
from storage import queries
from storage.db import Store
from storage.models import EventKind, Lead, LeadState, Member, NewLead, Role

log = logging.getLogger(__name__)

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
    email: EmailStr | None = None
    title: str | None = Field(None, max_length=300)
    campaign: str | None = Field(None, max_length=200)
    source: str = Field("", max_length=100)
    owner_email: EmailStr | None = None
    created_at: datetime | None = None

    @field_validator("external_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator(
        "external_id", "name", "company", "email", "title", "campaign", "source", "owner_email",
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


def store_leads(
    session: Session,
    leads: Sequence[LeadIn],
    *,
    now: datetime,
    admin_channel: str | None,
    company: Company,
    routing: Collection[str] = frozenset(),
) -> tuple[list[Outcome], list[Effect]]:
    """Store new leads and hand them off; known `(source, external_id)` are no-ops. A lead
    whose owner is unknown because their lookup failed (`routing`: lower-case emails)
    waits as `routing` for `Ingestor.retry_routing`, without a card or an admin notice.

    Campaigns, then leads, are written in one order (by name, by source and id) whatever
    the order given, so two batches racing on the same rows wait for each other instead
    of deadlocking; a row a racer wrote first is read back, reported as a duplicate."""
    definition, _ = queries.current_definition(session)
    campaigns = {
        name: queries.ensure_campaign(session, name=name).id
        for name in sorted({item.campaign for item in leads if item.campaign})
    }
    stored: dict[int, tuple[Lead, bool]] = {}
    for index in sorted(range(len(leads)), key=lambda i: (leads[i].source, leads[i].external_id)):
        item = leads[index]
        stored[index] = _create(
            session,
            item,
            definition_id=definition.id or 0,
            campaign_id=campaigns.get(item.campaign or ""),
            now=now,
            routing=routing,
        )
    outcomes: list[Outcome] = []
    effects: list[Effect] = []
    unassigned: list[Lead] = []
    for index, item in enumerate(leads):
        lead, created = stored[index]
        status = "created" if created else "duplicate"
        outcomes.append(
            Outcome(item.external_id, item.source, lead.id or 0, status, lead.owner_email)
        )
        if not created or lead.state == LeadState.routing:
            continue
        if lead.owner_id is None:
            unassigned.append(lead)
        else:
            effects += _handoff_effects(session, lead, now, company)
    if unassigned:
        effects += _report_unassigned(session, unassigned, admin_channel)
    return outcomes, effects


def _create(
    session: Session,
    item: LeadIn,
    *,
    definition_id: int,
    campaign_id: int | None,
    now: datetime,
    routing: Collection[str],
) -> tuple[Lead, bool]:
    """The stored lead and whether this call created it (with its events and clocks)."""
    owner_email = str(item.owner_email).lower() if item.owner_email else None
    owner = queries.member_by(session, email=owner_email) if owner_email else None
    state = LeadState.handed_off if owner else LeadState.unassigned
    if owner is None and owner_email in routing:
        state = LeadState.routing
    lead, created = queries.add_lead(
        session,
        lead=NewLead(
            source=item.source,
            external_id=item.external_id,
            name=item.name,
            company=item.company,
            email=str(item.email) if item.email else None,
            title=item.title,
            campaign_id=campaign_id,
            owner_id=owner.id if owner else None,
            owner_email=owner_email,
            definition_id=definition_id,
            state=state.value,
            attributes=item.attributes(),
            created_at=item.created_at or now,
            handed_off_at=now if owner else None,
        ),
    )
    if not created:
        return lead, False
    queries.add_event(
        session,
        lead_id=lead.id or 0,
        kind=EventKind.ingested,
        now=now,
        data={"source": item.source, "owner_email": lead.owner_email},
    )
    if owner is not None:
        _handed_off(session, lead, now)
    return lead, True


def _handed_off(session: Session, lead: Lead, now: datetime) -> None:
    """Record that the lead reached its owner, and start its SLA clocks."""
    queries.add_event(
        session, lead_id=lead.id or 0, kind=EventKind.handed_off, now=now, member_id=lead.owner_id
    )
    sla.on_handoff(session, lead, now)


def _handoff_effects(session: Session, lead: Lead, now: datetime, company: Company) -> list[Effect]:
    """The owner's handoff card (once per lead), and the away flag for their manager."""
    card = lead_card(session, lead, now, company)
    notify = Notify(
        lead.owner_id or 0, card, lead_id=lead.id, purpose=HANDOFF, key=f"handoff:{lead.id}"
    )
    return [notify, *_flag_if_away(session, lead, now)]


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
    Each lead moves once, whichever pass or instance gets there first."""
    effects: list[Effect] = []
    unassigned: list[Lead] = []
    for email in sorted(found):
        owner = queries.member_by(session, email=email)
        for lead in queries.routing_leads_of(session, email=email):
            if owner is None:
                unassigned += _unassign(session, lead)
            elif queries.route_lead(session, lead=lead, owner_id=owner.id or 0, now=now):
                _handed_off(session, lead, now)
                effects += _handoff_effects(session, lead, now, company)
    for email in sorted(not_found):
        for lead in queries.routing_leads_of(session, email=email):
            unassigned += _unassign(session, lead)
    if unassigned:
        effects += _report_unassigned(session, unassigned, admin_channel)
    return effects


def _unassign(session: Session, lead: Lead) -> list[Lead]:
    moved = queries.move_lead(
        session, lead=lead, to=LeadState.unassigned.value, allowed_from=[LeadState.routing.value]
    )
    return [lead] if moved else []


def _flag_if_away(session: Session, lead: Lead, now: datetime) -> list[Effect]:
    """A lead handed to someone who is away: their manager hears of it, privately."""
    owner = session.get(Member, lead.owner_id) if lead.owner_id else None
    away = queries.current_away(session, member_id=owner.id or 0, now=now) if owner else None
    if owner is None or away is None or owner.manager_id is None:
        return []
    until = when(away.until, owner.timezone)
    card = Card(
        title=say("away_flag_title", who=owner.name),
        text=say("away_flag_text", who=owner.name, until=until, lead=lead.name),
        context=say("lead_context_short", lead_id=lead.id),
    )
    # An escalation Liaison raises on its own: it waits for the manager's working hours.
    return [Notify(owner.manager_id, card, key=f"away-flag:{lead.id}", nudge=True)]


def _report_unassigned(
    session: Session, leads: Sequence[Lead], admin_channel: str | None
) -> list[Effect]:
    card = Card(
        title=say("unassigned_title", count=len(leads)),
        text=say("unassigned_intro"),
        fields=tuple(
            Field_(
                f"Lead #{lead.id}",
                say("unassigned_line", name=lead.name, owner_email=lead.owner_email),
            )
            for lead in leads[:20]
        ),
    )
    effects: list[Effect] = [
        Notify(admin.id or 0, card, nudge=True)
        for admin in queries.members_with_role(session, role=Role.admin)
    ]
    target = queries.channel_target(session, kind="admin") or admin_channel
    if target:
        effects.append(Post(target, card))
    if not effects:
        log.warning(
            "%d unassigned leads and no admin to tell; set one with "
            "`liaison members set EMAIL --role admin`",
            len(leads),
        )
    return effects


class Lookup(StrEnum):
    """What the directories said about an owner's email."""

    found = "found"
    not_found = "not_found"
    failed = "failed"  # no directory found them and at least one could not answer


ROUTING_BATCH = 200  # owner emails a routing pass looks up
LOOKUPS_AT_ONCE = 8


class Ingestor:
    """Validate → find owners in the platform directories → store → deliver cards."""

    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        directories: Sequence[Directory],
        admin_channel: str | None,
        company: Company,
    ) -> None:
        self.store = store
        self.company = company
        self.deliverer = deliverer
        self.directories = directories
        self.admin_channel = admin_channel

    async def ingest(self, leads: Sequence[LeadIn], *, now: datetime) -> list[Outcome]:
        """Store the leads, owing their cards to the outbox, and wake the sender."""
        outcomes, effects = await self.store_and_resolve(leads, now=now)
        await self.deliverer.deliver(effects, None)
        return outcomes

    async def store_and_resolve(
        self, leads: Sequence[LeadIn], *, now: datetime
    ) -> tuple[list[Outcome], list[Effect]]:
        """Find owners, store the leads and owe their cards (handoffs, the away flag, the
        unassigned report) in the same transaction; the returned effects say so. Leads
        whose owner lookup failed are stored as `routing`, retried by `retry_routing`."""
        emails = {str(lead.owner_email).lower() for lead in leads if lead.owner_email}
        unknown = await asyncio.to_thread(self._unknown, emails)
        results = await self._look_up(unknown)
        failed = {email for email, result in results.items() if result is Lookup.failed}
        return await asyncio.to_thread(self._store, leads, now, failed)

    def _store(
        self, leads: Sequence[LeadIn], now: datetime, routing: Collection[str]
    ) -> tuple[list[Outcome], list[Effect]]:
        with self.store.session() as session:
            # New campaigns first, in a short transaction of their own: batches sharing one
            # then do not wait for each other's whole batch to commit.
            for name in sorted({item.campaign for item in leads if item.campaign}):
                queries.ensure_campaign(session, name=name)
        with self.store.session() as session:
            outcomes, effects = store_leads(
                session,
                leads,
                now=now,
                admin_channel=self.admin_channel,
                company=self.company,
                routing=routing,
            )
            return outcomes, owe(session, effects, actor_id=None, now=now, company=self.company)

    async def retry_routing(self, *, now: datetime) -> sla.TickReport:
        """A scheduler pass: look the owners of `routing` leads up again; hand the leads
        to those found, unassign (and tell the admin of) those nobody has, and leave the
        rest for the next pass while their directory still cannot answer."""
        emails = await asyncio.to_thread(self._routing_emails)
        if not emails:
            return sla.TickReport()
        unknown = await asyncio.to_thread(self._unknown, set(emails))
        results = await self._look_up(unknown)  # a member set up meanwhile is found
        results.update({email: Lookup.found for email in set(emails) - unknown})
        found = {e for e, result in results.items() if result is Lookup.found}
        not_found = {e for e, result in results.items() if result is Lookup.not_found}
        if not found and not not_found:
            return sla.TickReport(looked_at=len(emails))
        effects = await asyncio.to_thread(self._route, found, not_found, now)
        await self.deliverer.deliver(effects, None)
        owed = sum(effect.count for effect in effects if isinstance(effect, Owed))
        return sla.TickReport(looked_at=len(emails), messages=owed)

    def _routing_emails(self) -> list[str]:
        with self.store.session() as session:
            return queries.routing_emails(session, limit=ROUTING_BATCH)

    def _route(self, found: set[str], not_found: set[str], now: datetime) -> list[Effect]:
        with self.store.session() as session:
            effects = route_found(
                session,
                found=found,
                not_found=not_found,
                now=now,
                admin_channel=self.admin_channel,
                company=self.company,
            )
            return owe(session, effects, actor_id=None, now=now, company=self.company)

    async def _look_up(self, emails: set[str]) -> dict[str, Lookup]:
        """Ask the directories about each email, a few at a time. A directory that fails
        once is not asked again in this call: its other emails count as failed too, so
        an outage costs one timeout, not one per owner."""
        down: set[int] = set()
        gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)

        async def one(email: str) -> tuple[str, Lookup]:
            async with gate:
                return email, await self._ask(email, down)

        return dict(await asyncio.gather(*(one(email) for email in sorted(emails))))

    async def _ask(self, email: str, down: set[int]) -> Lookup:
        failed = False
        for number, directory in enumerate(self.directories):
            if number in down:
                failed = True
                continue
            try:
                if await directory.find_by_email(email):
                    return Lookup.found
            except LookupFailed as error:
                log.warning("owner lookup failed, will retry: %s", error)
                down.add(number)
                failed = True
        return Lookup.failed if failed else Lookup.not_found

    def _unknown(self, emails: set[str]) -> set[str]:
        with self.store.session() as session:
            return {e for e in emails if queries.member_by(session, email=e) is None}
