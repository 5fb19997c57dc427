"""SQLModel tables, and the values written to them in bulk. Datetimes are timezone-aware
and stored in UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import IntEnum, StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


class Role(StrEnum):
    rep = "rep"
    marketer = "marketer"
    manager = "manager"
    leader = "leader"
    admin = "admin"


class LeadState(StrEnum):
    unassigned = "unassigned"
    handed_off = "handed_off"
    accepted = "accepted"
    not_a_fit = "not_a_fit"


class EventKind(StrEnum):
    ingested = "ingested"
    handed_off = "handed_off"
    accepted = "accepted"
    not_a_fit = "not_a_fit"
    info_requested = "info_requested"
    info_answered = "info_answered"
    attempt_logged = "attempt_logged"
    clock_snoozed = "clock_snoozed"


class Member(SQLModel, table=True):
    __tablename__ = "members"

    id: int | None = Field(default=None, primary_key=True)
    email: str | None = Field(default=None, unique=True, index=True)
    name: str
    handle: str = Field(unique=True, index=True)
    role: str = Field(default=Role.rep.value)
    team: str | None = None
    manager_id: int | None = Field(default=None, foreign_key="members.id")
    timezone: str | None = None
    slack_user_id: str | None = Field(default=None, unique=True, index=True)
    slack_dm_channel: str | None = None
    teams_user_id: str | None = Field(default=None, unique=True, index=True)
    teams_reference: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    work_start: str | None = None  # "09:00" local; None = company default
    work_end: str | None = None
    workdays: str | None = None  # "0,1,2,3,4" (Monday = 0); None = Monday to Friday
    created_at: datetime


class LeadDefinition(SQLModel, table=True):
    __tablename__ = "lead_definitions"

    id: int | None = Field(default=None, primary_key=True)
    version: int = Field(unique=True, index=True)
    note: str = ""
    created_by: str = "system"
    created_at: datetime


class Criterion(SQLModel, table=True):
    __tablename__ = "criteria"
    __table_args__ = (UniqueConstraint("definition_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    definition_id: int = Field(foreign_key="lead_definitions.id", index=True)
    key: str
    text: str
    position: int = 0


class Campaign(SQLModel, table=True):
    __tablename__ = "campaigns"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    marketer_id: int | None = Field(default=None, foreign_key="members.id")


class Lead(SQLModel, table=True):
    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = ""
    external_id: str
    name: str
    company: str | None = None
    email: str | None = None
    title: str | None = None
    campaign_id: int | None = Field(default=None, foreign_key="campaigns.id", index=True)
    owner_id: int | None = Field(default=None, foreign_key="members.id", index=True)
    owner_email: str | None = None
    definition_id: int = Field(foreign_key="lead_definitions.id")
    state: str = Field(default=LeadState.unassigned.value, index=True)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime
    handed_off_at: datetime | None = None


class LeadEvent(SQLModel, table=True):
    """Append-only log of everything that happened to a lead."""

    __tablename__ = "lead_events"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="leads.id", index=True)
    kind: str = Field(index=True)
    member_id: int | None = Field(default=None, foreign_key="members.id")
    at: datetime = Field(index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class CardLocation(SQLModel, table=True):
    """Where a card about a lead was posted, so it can be updated in place."""

    __tablename__ = "card_locations"
    __table_args__ = (UniqueConstraint("platform", "channel", "message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="leads.id", index=True)
    purpose: str = "handoff"
    member_id: int | None = Field(default=None, foreign_key="members.id")
    platform: str
    channel: str
    message_id: str
    reference: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime


class ProcessedRequest(SQLModel, table=True):
    """Platform request ids already acted on, so retries and double clicks act once."""

    __tablename__ = "processed_requests"

    platform: str = Field(primary_key=True)
    request_id: str = Field(primary_key=True)
    at: datetime


class ChannelSetting(SQLModel, table=True):
    __tablename__ = "channels"

    kind: str = Field(primary_key=True)
    target: str


class SlaPolicy(SQLModel, table=True):
    """One version of the two-sided service-level agreement; the newest is in force."""

    __tablename__ = "sla_policies"

    id: int | None = Field(default=None, primary_key=True)
    version: int = Field(unique=True, index=True)
    note: str = ""
    created_by: str = "system"
    created_at: datetime
    # sales' side
    first_touch_hours: float = 4
    attempts: int = 5
    attempts_days: float = 10
    verdict_hours: float = 24
    # marketing's side
    leads_per_week: int = 40
    acceptance_rate: float = 0.6
    info_answer_hours: float = 4
    # reminders: a DM at this share of the window, escalation this long after a breach
    remind_share: float = 0.75
    escalate_after_hours: float = 4


class Holiday(SQLModel, table=True):
    """A company holiday: nobody's SLA clock runs on it."""

    __tablename__ = "holidays"

    day: date = Field(primary_key=True)
    name: str = ""


class Away(SQLModel, table=True):
    """A member's time away: their clocks pause and DMs wait."""

    __tablename__ = "away"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    starts_at: datetime
    until: datetime
    created_at: datetime


class ClockKind(StrEnum):
    first_touch = "first_touch"
    verdict = "verdict"
    attempts = "attempts"
    info_answer = "info_answer"


class ClockStage(IntEnum):
    running = 0
    reminded = 1
    breached = 2
    escalated = 3


class Clock(SQLModel, table=True):
    """One SLA commitment being timed: who owes what on which lead, in business time.

    `next_at` is when the scheduler must look at it again (the reminder, the deadline,
    the escalation); None once it is closed. Snoozes are spans the clock does not count.
    """

    __tablename__ = "sla_clocks"
    __table_args__ = (UniqueConstraint("lead_id", "kind", "ref"),)

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="leads.id", index=True)
    kind: str
    ref: str = ""
    owner_id: int = Field(foreign_key="members.id", index=True)
    policy_version: int
    started_at: datetime
    budget_seconds: float
    remind_share: float
    grace_seconds: float
    stage: int = ClockStage.running.value
    snoozes: list[list[str]] = Field(default_factory=list, sa_column=Column(JSON))
    next_at: datetime | None = Field(default=None, index=True)
    closed_at: datetime | None = None
    outcome: str | None = None  # met, missed, cancelled


@dataclass(frozen=True)
class ClockChange:
    """Where a tick leaves one clock: its stage and next look, or closed with an outcome."""

    clock_id: int
    stage: int
    next_at: datetime | None
    closed_at: datetime | None = None
    outcome: str | None = None


class OutboxStatus(StrEnum):
    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"


class OutboxMessage(SQLModel, table=True):
    """A message the bot owes someone, written in the same transaction as the fact behind
    it and delivered by the sender; `key` makes writing it twice impossible."""

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    member_id: int | None = Field(default=None, foreign_key="members.id")
    target: str | None = None  # a channel: slack:C0123 or teams:<conversation id>
    card: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    lead_id: int | None = Field(default=None, foreign_key="leads.id")
    purpose: str = ""
    status: str = Field(default=OutboxStatus.pending.value, index=True)
    not_before: datetime = Field(index=True)
    attempts: int = 0
    claimed_until: datetime | None = None
    claimed_by: str | None = None
    last_error: str | None = None
    platform: str | None = None
    message_id: str | None = None
    created_at: datetime
    sent_at: datetime | None = None


@dataclass(frozen=True)
class NewMessage:
    """A message to owe, as `queries.enqueue_many` writes it: a pending outbox row. A plain
    value, so a tick's hundreds of them cost no ORM bookkeeping."""

    key: str
    member_id: int | None
    card: dict[str, Any]
    not_before: datetime
    created_at: datetime
    lead_id: int | None = None
    target: str | None = None
    purpose: str = ""
