"""Lead ingestion (webhook and CSV): validate, store once, hand off to the owner's DMs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator
from sqlmodel import Session

from bot.delivery import Deliverer, Directory
from bot.effects import Effect, Notify, Post
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


class LeadIn(BaseModel):
    """One lead as the webhook and the CSV import accept it; other keys become attributes."""

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

    @field_validator("email", "owner_email", "company", "title", "campaign", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def attributes(self) -> dict[str, str]:
        extra = self.model_extra or {}
        return {str(k): "" if v is None else str(v) for k, v in extra.items() if k not in KNOWN}


@dataclass(frozen=True)
class Problem:
    """Why one lead was refused: its position, the field and the reason."""

    index: int
    field: str
    message: str


def validate(items: Sequence[Any]) -> tuple[list[LeadIn], list[Problem]]:
    """Parse each item; returns the good leads and a problem per bad field."""
    good: list[LeadIn] = []
    problems: list[Problem] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(Problem(index, "", "each lead must be a JSON object"))
            continue
        try:
            good.append(LeadIn.model_validate(item))
        except ValidationError as error:
            for detail in error.errors(include_url=False, include_input=False):
                where = ".".join(str(p) for p in detail["loc"]) or ""
                problems.append(Problem(index, where, detail["msg"]))
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
) -> tuple[list[Outcome], list[Effect]]:
    """Store new leads and hand them off; known `(source, external_id)` are no-ops.

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
        if not created:
            continue
        if lead.owner_id is None:
            unassigned.append(lead)
        else:
            card = lead_card(session, lead, now, company)
            effects.append(
                Notify(
                    lead.owner_id, card, lead_id=lead.id, purpose=HANDOFF, key=f"handoff:{lead.id}"
                )
            )
            effects += _flag_if_away(session, lead, now)
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
) -> tuple[Lead, bool]:
    """The stored lead and whether this call created it (with its events and clocks)."""
    owner = queries.member_by(session, email=str(item.owner_email)) if item.owner_email else None
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
            owner_email=str(item.owner_email).lower() if item.owner_email else None,
            definition_id=definition_id,
            state=(LeadState.handed_off if owner else LeadState.unassigned).value,
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
        queries.add_event(
            session, lead_id=lead.id or 0, kind=EventKind.handed_off, now=now, member_id=owner.id
        )
    sla.on_handoff(session, lead, now)
    return lead, True


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
    return [Notify(owner.manager_id, card, key=f"away-flag:{lead.id}")]


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
        Notify(admin.id or 0, card) for admin in queries.members_with_role(session, role=Role.admin)
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
        unassigned report) in the same transaction; the returned effects say so."""
        await self._resolve_owners({str(lead.owner_email) for lead in leads if lead.owner_email})
        return await asyncio.to_thread(self._store, leads, now)

    def _store(self, leads: Sequence[LeadIn], now: datetime) -> tuple[list[Outcome], list[Effect]]:
        with self.store.session() as session:
            # New campaigns first, in a short transaction of their own: batches sharing one
            # then do not wait for each other's whole batch to commit.
            for name in sorted({item.campaign for item in leads if item.campaign}):
                queries.ensure_campaign(session, name=name)
        with self.store.session() as session:
            outcomes, effects = store_leads(
                session, leads, now=now, admin_channel=self.admin_channel, company=self.company
            )
            return outcomes, owe(session, effects, actor_id=None, now=now, company=self.company)

    async def _resolve_owners(self, emails: set[str]) -> None:
        unknown = await asyncio.to_thread(self._unknown, emails)
        for email in sorted(unknown):
            for directory in self.directories:
                if await directory.find_by_email(email):
                    break

    def _unknown(self, emails: set[str]) -> set[str]:
        with self.store.session() as session:
            return {e for e in emails if queries.member_by(session, email=e) is None}
