"""The administrator's commands (`liaison leaddef set`, `sla set`, `members set`, …): the
rules they apply, whatever edge asks; the CLI only reads the input and prints the result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlmodel import Session

from bot.core.business_time import format_clock, parse_hours, parse_workdays
from bot.core.settings import CHANNEL_KINDS
from handlers import approvals, proposals
from handlers.sla import SlaFile
from storage import approvals as approval_store
from storage import campaigns as campaign_store
from storage import definitions, policies
from storage import insights as insight_store
from storage import members as stored_members
from storage.models import ApprovalSubject, Member

ROLES = ("rep", "marketer", "manager", "leader", "admin")
TEAMS = ("sales", "marketing")
DUTY_ROLES = ("marketer", "admin")


class AdminError(ValueError):
    """Input an administrator must fix; its text says what and how."""


@dataclass(frozen=True)
class NewVersion:
    """A lead definition or SLA version put in force without sign-off."""

    version: int
    approval_id: int
    waiting: list[int]
    criteria: list[tuple[str, str]] = field(default_factory=list)
    made_keys: list[str] = field(default_factory=list)


def criterion(entry: Any) -> tuple[str | None, str]:
    """One criterion of a lead-definition file: `{key, text}`, `{text}` or just the text."""
    if isinstance(entry, str):
        return None, entry.strip()
    key = entry.get("key")
    return (str(key).strip() or None) if key is not None else None, str(entry["text"]).strip()


def check_criteria(given: Sequence[tuple[str | None, str]]) -> None:
    keys = [k for k, _ in given if k]
    if not given or any(not t for _, t in given) or len(set(keys)) != len(keys):
        raise AdminError("Each criterion needs a text, and each key given must be unique.")


def set_lead_definition(
    session: Session,
    *,
    given: Sequence[tuple[str | None, str]],
    note: str,
    by: str,
    now: datetime,
) -> NewVersion:
    """A new lead-definition version in force at once, recorded as a bootstrap approval."""
    check_criteria(given)
    base, current = definitions.current_definition(session)
    in_force = [(c.key, c.text) for c in current]
    criteria = proposals.with_keys(
        given, current=in_force, used=definitions.criterion_keys(session)
    )
    definition = definitions.create_definition(
        session, criteria=criteria, note=note, created_by=by, now=now
    )
    record = approval_store.record_bootstrap(
        session,
        subject=ApprovalSubject.leaddef,
        label=by,
        payload={
            "base_version": base.version,
            "criteria": criteria,
            **proposals.criteria_changes(in_force, criteria),
        },
        note=note,
        version=definition.version,
        now=now,
    )
    made = [f"{k} ({t})" for (k, t), (g, _) in zip(criteria, given, strict=True) if not g]
    return NewVersion(
        version=definition.version,
        approval_id=record.id or 0,
        waiting=approvals.still_waiting(session),
        criteria=criteria,
        made_keys=made,
    )


def set_sla(session: Session, *, spec: SlaFile, by: str, now: datetime) -> NewVersion:
    """A new SLA version (what `spec` leaves out keeps its value), recorded as a bootstrap
    approval with the fields that changed."""
    base = policies.current_policy(session)
    policy = policies.create_policy(
        session, fields=spec.fields(), note=spec.note, created_by=by, now=now
    )
    fields = {name: getattr(policy, name) for name in proposals.SLA_FIELDS}
    changed = [
        [name, getattr(base, name), value]
        for name, value in fields.items()
        if getattr(base, name) != value
    ]
    record = approval_store.record_bootstrap(
        session,
        subject=ApprovalSubject.sla,
        label=by,
        payload={"base_version": base.version, "fields": fields, "changed": changed},
        note=spec.note,
        version=policy.version,
        now=now,
    )
    return NewVersion(
        version=policy.version, approval_id=record.id or 0, waiting=approvals.still_waiting(session)
    )


@cache
def _zones() -> frozenset[str]:
    from zoneinfo import available_timezones

    return frozenset(available_timezones())


@dataclass(frozen=True)
class MemberFields:
    """What `members set` was given, checked and in stored form."""

    email: str
    role: str | None = None
    team: str | None = None
    timezone: str | None = None
    name: str | None = None
    work_start: str | None = None
    work_end: str | None = None
    workdays: str | None = None


def member_fields(
    *,
    email: str,
    role: str | None = None,
    team: str | None = None,
    timezone: str | None = None,
    name: str | None = None,
    hours: str | None = None,
    workdays: str | None = None,
) -> MemberFields:
    """The fields checked before any database is opened, or AdminError saying which is wrong."""
    if role and role not in ROLES:
        raise AdminError(f"Unknown role {role!r}: use rep, marketer, manager, leader or admin.")
    if team and team not in TEAMS:
        raise AdminError("--team is sales or marketing.")
    if timezone and timezone not in _zones():
        raise AdminError(f"Unknown time zone {timezone!r} (e.g. Europe/Berlin).")
    if "@" not in email:
        raise AdminError(f"{email!r} is not an email address.")
    start = end = None
    if hours:
        try:
            first, last = parse_hours(hours)
        except ValueError as error:
            raise AdminError(f"--hours {error}.") from None
        start, end = format_clock(first), format_clock(last)
    days = None
    if workdays:
        try:
            days = ",".join(str(d) for d in sorted(parse_workdays(workdays)))
        except ValueError as error:
            raise AdminError(f"--workdays {error}.") from None
    return MemberFields(email, role, team, timezone, name, start, end, days)


def set_member(
    session: Session, fields: MemberFields, *, manager: str | None, now: datetime
) -> tuple[Member, Member | None]:
    """Create or update a member (and their manager, named by email); the member and manager."""
    boss = stored_members.member_by(session, email=manager) if manager else None
    if manager and boss is None:
        raise AdminError(f"No member with email {manager}; add the manager first.")
    member = stored_members.upsert_member(
        session,
        now=now,
        email=fields.email,
        name=fields.name,
        role=fields.role,
        team=fields.team,
        timezone=fields.timezone,
        rename=bool(fields.name),
        manager_id=boss.id if boss else None,
        work_start=fields.work_start,
        work_end=fields.work_end,
        workdays=fields.workdays,
    )
    return member, boss


def check_channel(kind: str, target: str) -> None:
    """KIND is one Liaison posts to; TARGET names a platform and a conversation."""
    if kind not in CHANNEL_KINDS:
        raise AdminError(f"KIND is one of {', '.join(CHANNEL_KINDS)}.")
    platform, _, channel = target.partition(":")
    if platform not in ("slack", "teams") or not channel:
        raise AdminError("TARGET looks like slack:C0123ABC or teams:<conversation id>.")


def set_campaign_marketer(session: Session, *, campaign: str, marketer: str) -> Member:
    """Name the marketer (by email) who answers reps' questions about a campaign's leads."""
    member = stored_members.member_by(session, email=marketer)
    if member is None:
        raise AdminError(f"No member with email {marketer}.")
    campaign_store.set_marketer(session, name=campaign, marketer_id=member.id or 0)
    return member


def on_insights_duty(session: Session) -> Member | None:
    """Who takes insights that have no campaign marketer, if anyone."""
    on_duty = insight_store.duty_member_id(session)
    return stored_members.get_member(session, member_id=on_duty) if on_duty else None


def set_insights_duty(session: Session, *, email: str | None) -> Member | None:
    """Put the member with `email` on insights duty (None: nobody); marketers and admins only."""
    if email is None:
        insight_store.set_duty(session, member_id=None)
        return None
    member = stored_members.member_by(session, email=email)
    if member is None:
        raise AdminError(f"No member with email {email}.")
    if member.role not in DUTY_ROLES:
        raise AdminError(
            f"{member.name} is a {member.role}; only marketers and admins take insights "
            f"duty (liaison members set {email} --role marketer)."
        )
    insight_store.set_duty(session, member_id=member.id)
    return member
