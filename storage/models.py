"""SQLModel tables, and the values written to them in bulk. Datetimes are timezone-aware
and stored in UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import IntEnum, StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class Role(StrEnum):
    rep = "rep"
    marketer = "marketer"
    manager = "manager"
    leader = "leader"
    admin = "admin"


class LeadState(StrEnum):
    routing = "routing"  # its owner's directory look-up failed: retried until it answers
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
    weekly_digest: bool = False  # opted in to a private "your week" DM
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
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_leads_verdict_at_state", "verdict_at", "state", "campaign_id"),
    )

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
    created_at: datetime = Field(index=True)
    handed_off_at: datetime | None = Field(default=None, index=True)
    # Projections of the lead's events, kept in the same transaction, for SQL aggregates:
    verdict_at: datetime | None = None  # indexed with the state and campaign (below)
    first_touch_at: datetime | None = Field(default=None, index=True)
    attempts: int = 0
    outcome: str | None = None  # the best so far: meeting_booked, opportunity, won; or lost


class LeadEvent(SQLModel, table=True):
    """Append-only log of everything that happened to a lead."""

    __tablename__ = "lead_events"
    # The digest counts one kind of event in a week: kind, then time, then the lead.
    __table_args__ = (Index("ix_lead_events_kind_at", "kind", "at", "lead_id"),)

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="leads.id", index=True)
    kind: str
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
    __table_args__ = (
        UniqueConstraint("lead_id", "kind", "ref"),
        # The digest's clock figures read only this index: kind and week, then the rest.
        Index(
            "ix_sla_clocks_kind_closed_at",
            "kind",
            "closed_at",
            "outcome",
            "business_seconds",
            "lead_id",
        ),
    )

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
    outcome: str | None = None  # met, missed, cancelled, ended (the buyer answered first)
    business_seconds: float | None = None  # business time from start to close


@dataclass(frozen=True)
class ClockChange:
    """Where a tick leaves one clock: its stage and next look, or closed with an outcome."""

    clock_id: int
    stage: int
    next_at: datetime | None
    closed_at: datetime | None = None
    outcome: str | None = None
    business_seconds: float | None = None


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
    in_thread: bool = False  # on the thread of the lead's handoff card, else a DM
    # Rendered when sent: the kind of card (`bot.core.rendering`) built then from the lead's
    # state; `card` keeps what it looked like when owed (shown, never sent). Empty: send
    # `card` as it is.
    render: str = ""
    # An update in place of the card posted there (one row per location: a newer state
    # owed while it waits is coalesced into it; `revision` counts the states owed).
    location_id: int | None = Field(default=None, foreign_key="card_locations.id")
    revision: int = 0
    status: str = Field(default=OutboxStatus.pending.value, index=True)
    not_before: datetime = Field(index=True)
    attempts: int = 0
    claimed_until: datetime | None = None
    claimed_by: str | None = None
    last_error: str | None = None
    platform: str | None = None
    message_id: str | None = None
    # The parts of a multi-part message already delivered (part → where it went), so a
    # retry sends only what is left: `slack` (the message), `slack:chart`, `teams`…
    parts_done: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime
    sent_at: datetime | None = None
    # Set when a send starts, cleared when its outcome is known: a row that still has it
    # may already be on the platform (a timeout, a crash), so it is checked, not resent.
    sending_since: datetime | None = None
    # When platform failures first parked it; kept once delivered (the admin's notices).
    parked_at: datetime | None = None
    # The request or activity it was owed in (its log lines carry the same id).
    request_id: str | None = Field(default=None, max_length=64)


class CompanySetting(SQLModel, table=True):
    """A company-wide choice made in chat or the CLI (e.g. who is on insights duty)."""

    __tablename__ = "company_settings"

    key: str = Field(primary_key=True)
    value: str


# ---------------------------------------------------------------- field feedback (non-blocking)


class FeedbackAbout(StrEnum):
    campaign = "campaign"
    asset = "asset"
    message = "message"


class QuestionKind(StrEnum):
    text = "text"
    rating = "rating"  # 1 to 5
    choice = "choice"


class FeedbackRequest(SQLModel, table=True):
    """A marketer asks the field what it thinks; nothing ever waits on the answers."""

    __tablename__ = "feedback_requests"

    id: int | None = Field(default=None, primary_key=True)
    requester_id: int = Field(foreign_key="members.id", index=True)
    about: str  # FeedbackAbout
    subject: str  # what it is about, in the requester's words
    link: str | None = None
    campaign_id: int | None = Field(default=None, foreign_key="campaigns.id")
    audience: str  # "all", "team:<name>" or "campaign" (the reps who handled its leads)
    deadline: datetime = Field(index=True)
    remind_at: datetime | None = Field(default=None, index=True)  # one reminder, then None
    closed_at: datetime | None = None
    closed_by: str | None = None  # "deadline" or "requester"
    created_at: datetime


class FeedbackQuestion(SQLModel, table=True):
    __tablename__ = "feedback_questions"

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="feedback_requests.id", index=True)
    position: int = 0
    kind: str  # QuestionKind
    text: str
    options: list[str] = Field(default_factory=list, sa_column=Column(JSON))


class FeedbackRecipient(SQLModel, table=True):
    """Who was asked (the audience as it was when the request went out)."""

    __tablename__ = "feedback_recipients"

    request_id: int = Field(foreign_key="feedback_requests.id", primary_key=True)
    member_id: int = Field(foreign_key="members.id", primary_key=True)
    reminded_at: datetime | None = None


class FeedbackAnswer(SQLModel, table=True):
    """One person's answer to one question; edited in place until the deadline."""

    __tablename__ = "feedback_answers"
    __table_args__ = (UniqueConstraint("question_id", "member_id"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="feedback_requests.id", index=True)
    question_id: int = Field(foreign_key="feedback_questions.id")
    member_id: int = Field(foreign_key="members.id", index=True)
    value: str
    answered_at: datetime
    updated_at: datetime


# ---------------------------------------------------------------- approvals (blocking)


class ApprovalSubject(StrEnum):
    leaddef = "leaddef"
    sla = "sla"


class ApprovalStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    bootstrap = "bootstrap"  # set by an admin from the CLI, without sign-off


class Approver(SQLModel, table=True):
    """Who signs off new lead-definition and SLA versions, for each side."""

    __tablename__ = "approvers"

    member_id: int = Field(foreign_key="members.id", primary_key=True)
    side: str = Field(primary_key=True)  # "sales" or "marketing"


class ApprovalRequest(SQLModel, table=True):
    """A proposed new version of the lead definition or the SLA; it comes into force only
    when every approver named for it, of both sides, has approved."""

    __tablename__ = "approval_requests"

    id: int | None = Field(default=None, primary_key=True)
    subject: str  # ApprovalSubject
    proposed_by: int | None = Field(default=None, foreign_key="members.id", index=True)
    proposer_label: str = ""  # who, when not a member ("admin (CLI)")
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    note: str = ""
    status: str = Field(default=ApprovalStatus.pending.value, index=True)
    version: int | None = None  # the version it created, once in force
    created_at: datetime
    decided_at: datetime | None = None
    remind_at: datetime | None = Field(default=None, index=True)
    reminders: int = 0


class ApprovalSignoff(SQLModel, table=True):
    """One approver's decision on one request (None while they have not decided)."""

    __tablename__ = "approval_signoffs"

    request_id: int = Field(foreign_key="approval_requests.id", primary_key=True)
    member_id: int = Field(foreign_key="members.id", primary_key=True)
    side: str
    decision: str | None = None  # "approved" or "rejected"
    comment: str = ""
    decided_at: datetime | None = None


# ---------------------------------------------------------------- insights, content, wins


class InsightStatus(StrEnum):
    open = "open"
    claimed = "claimed"
    closed = "closed"


class Insight(SQLModel, table=True):
    """What a buyer asked or objected to, as a rep heard it; marketing answers it, ideally
    with content, and the rep hears back."""

    __tablename__ = "insights"

    id: int | None = Field(default=None, primary_key=True)
    author_id: int = Field(foreign_key="members.id", index=True)
    kind: str  # question, objection, request, other
    text: str
    lead_id: int | None = Field(default=None, foreign_key="leads.id")
    campaign_id: int | None = Field(default=None, foreign_key="campaigns.id")
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    status: str = Field(default=InsightStatus.open.value, index=True)
    marketer_id: int | None = Field(default=None, foreign_key="members.id", index=True)
    answer: str | None = None
    content_id: int | None = Field(default=None, foreign_key="content.id")
    created_at: datetime
    claimed_at: datetime | None = None
    closed_at: datetime | None = None


class ContentItem(SQLModel, table=True):
    """A piece of content reps can send; searched with the database's full-text index."""

    __tablename__ = "content"

    id: int | None = Field(default=None, primary_key=True)
    title: str
    link: str
    description: str = ""
    tags: str = ""  # comma-separated
    stage: str = ""  # awareness, consideration, decision, retention
    added_by: int | None = Field(default=None, foreign_key="members.id")
    created_at: datetime


class Win(SQLModel, table=True):
    """A win shared in public, crediting the rep and the campaign's marketer."""

    __tablename__ = "wins"

    id: int | None = Field(default=None, primary_key=True)
    author_id: int = Field(foreign_key="members.id", index=True)
    story: str
    lead_id: int | None = Field(default=None, foreign_key="leads.id")
    campaign_id: int | None = Field(default=None, foreign_key="campaigns.id")
    marketer_id: int | None = Field(default=None, foreign_key="members.id")
    created_at: datetime = Field(index=True)


# ---------------------------------------------------------------- tone


class ToneKind(StrEnum):
    blame = "blame"
    contempt = "contempt"
    insult = "insult"


class ToneRule(SQLModel, table=True):
    """A phrase that is not relayed as written between the two sides (editable data)."""

    __tablename__ = "tone_rules"

    id: int | None = Field(default=None, primary_key=True)
    phrase: str = Field(unique=True)  # matched as whole words, case-insensitively
    kind: str = ToneKind.blame.value
    suggestion: str = ""
    created_by: str = "system"
    created_at: datetime


# ---------------------------------------------------------------- the weekly digest


class LeadRejection(SQLModel, table=True):
    """One failed criterion of one not-a-fit verdict (for counts by campaign and version)."""

    __tablename__ = "lead_rejections"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="leads.id", index=True)
    campaign_id: int | None = Field(default=None, foreign_key="campaigns.id")
    definition_version: int
    criterion: str  # its key
    text: str
    at: datetime = Field(index=True)


class DigestRun(SQLModel, table=True):
    """One week's digest: due at its time, claimed and posted exactly once."""

    __tablename__ = "digest_runs"

    week: str = Field(primary_key=True)  # ISO week, "2026-W48"
    due_at: datetime = Field(index=True)
    status: str = "pending"  # pending, posted
    target: str | None = None
    created_at: datetime
    posted_at: datetime | None = None
