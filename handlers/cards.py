"""Cards about leads, built from what is recorded (the same card for every platform)."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from sqlmodel import Session

from bot.core import rendering
from bot.core.business_time import Calendar, Company
from bot.core.interaction import Person
from bot.core.messages import Button, Card, Fact, Refresh, Style
from bot.core.text import text_for, when
from handlers.clocks import clock_lines, status_lines
from storage import away as stored_away
from storage import cards
from storage import leads as stored_leads
from storage import members as stored_members
from storage.calendars import Calendars
from storage.models import (
    Campaign,
    Clock,
    EventKind,
    Lead,
    LeadDefinition,
    LeadEvent,
    LeadState,
    Member,
)

ATTEMPT_CHANNELS = {"call": "Call", "email": "Email", "social": "Social", "meeting": "Meeting"}
ATTEMPT_OUTCOMES = {
    "no_answer": "No answer",
    "left_message": "Left a message",
    "connected": "Talked to them",
    "meeting_booked": "Meeting booked",
    "opportunity": "Opportunity opened",
    "won": "Won",
    "lost": "Lost",
}
HANDOFF = "handoff"


class LeadFacts(Protocol):
    """What a lead's card shows of it: a stored `Lead`, or a lead just written in bulk."""

    @property
    def id(self) -> int | None: ...
    @property
    def name(self) -> str: ...
    @property
    def company(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def title(self) -> str | None: ...
    @property
    def source(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def attributes(self) -> dict[str, Any]: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def handed_off_at(self) -> datetime | None: ...


class OwnerFacts(Protocol):
    """What a card shows of a lead's owner: a stored `Member`, or a row of its columns."""

    @property
    def id(self) -> int | None: ...
    @property
    def name(self) -> str: ...
    @property
    def timezone(self) -> str | None: ...
    @property
    def manager_id(self) -> int | None: ...


ATTRIBUTE_CHARS = 200  # a card shows this much of an attribute's value


def attribute_text(value: Any) -> str:
    """How an extra attribute reads on a card: yes/no, numbers and text as they are, lists
    and objects as compact JSON, cut at ATTRIBUTE_CHARS; "" (not shown) when empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return text_for("attribute_yes") if value else text_for("attribute_no")
    if isinstance(value, list | dict):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(value)
    return text if len(text) <= ATTRIBUTE_CHARS else text[: ATTRIBUTE_CHARS - 1] + "…"


def question_purpose(question_id: str) -> str:
    return f"question:{question_id}"


def member_name(session: Session, member_id: int | None, unknown: str = "someone") -> str:
    member = session.get(Member, member_id) if member_id else None
    return member.name if member else unknown


def _state_line(lead: LeadFacts) -> str:
    """What a lead without a verdict waits for."""
    if lead.state == LeadState.unassigned:
        return text_for("state_unassigned")
    if lead.state == LeadState.routing:
        return text_for("state_routing")
    return text_for("state_waiting")


class EventFacts(Protocol):
    """What a card shows of a lead's event: a stored `LeadEvent`, or a row of its columns."""

    @property
    def kind(self) -> str: ...
    @property
    def member_id(self) -> int | None: ...
    @property
    def at(self) -> datetime: ...
    @property
    def data(self) -> dict[str, Any]: ...


NameOf = Callable[[int | None], str]  # a member's name by id ("someone" when unknown)


def _verdict_line(
    name_of: NameOf, lead: LeadFacts, events: Sequence[EventFacts], tz: str | None
) -> str:
    verdicts = [e for e in events if e.kind in (EventKind.accepted, EventKind.not_a_fit)]
    if not verdicts:
        return _state_line(lead)
    last = verdicts[-1]
    who, at = name_of(last.member_id), when(last.at, tz)
    if last.kind == EventKind.accepted:
        return text_for("state_accepted", who=who, at=at)
    definition_version = last.data.get("definition_version")
    criteria = last.data.get("criteria_text") or last.data.get("criteria") or []
    return text_for(
        "state_not_a_fit",
        who=who,
        at=at,
        criteria=", ".join(criteria),
        comment=last.data.get("comment", ""),
        version=definition_version,
    )


def _questions(name_of: NameOf, events: Sequence[EventFacts], tz: str | None) -> list[Fact]:
    answers = {e.data.get("question_id"): e for e in events if e.kind == EventKind.info_answered}
    fields = []
    for asked in (e for e in events if e.kind == EventKind.info_requested):
        answer = answers.get(asked.data.get("question_id"))
        marketer = name_of(asked.data.get("marketer_id"))
        if answer is None:
            value = text_for("question_open", question=asked.data["question"], marketer=marketer)
        else:
            value = text_for(
                "question_answered",
                question=asked.data["question"],
                answer=answer.data["answer"],
                marketer=marketer,
                at=when(answer.at, tz),
            )
        fields.append(Fact(text_for("label_question"), value))
    return fields


def _attempts(events: Sequence[EventFacts], tz: str | None) -> Fact | None:
    attempts = [e for e in events if e.kind == EventKind.attempt_logged]
    if not attempts:
        return None
    last = attempts[-1]
    return Fact(
        text_for("label_attempts"),
        text_for(
            "attempts_summary",
            count=len(attempts),
            channel=ATTEMPT_CHANNELS.get(last.data.get("channel", ""), "?"),
            outcome=ATTEMPT_OUTCOMES.get(last.data.get("outcome", ""), "?"),
            at=when(last.at, tz),
        ),
    )


VIEW = "lead.view"  # the action that draws a handoff card for whoever looks at it


def lead_card(
    session: Session, lead: Lead, now: datetime | None = None, company: Company | None = None
) -> Card:
    """The handoff card: the lead, its campaign and attributes, state and actions; with
    `now`, also each open SLA clock and the business time it has left."""
    owner = session.get(Member, lead.owner_id) if lead.owner_id else None
    campaign = session.get(Campaign, lead.campaign_id) if lead.campaign_id else None
    definition = session.get(LeadDefinition, lead.definition_id)
    events = stored_leads.events_of(session, lead_id=lead.id or 0)

    def name_of(member_id: int | None) -> str:
        return member_name(session, member_id)

    return lead_card_of(
        lead,
        owner=owner,
        campaign=campaign.name if campaign else None,
        version=definition.version if definition else "?",
        events=events,
        sla_lines=(
            status_lines(session, lead, now, company or Company()) if now is not None else ()
        ),
        name_of=name_of,
    )


def lead_card_of(
    lead: LeadFacts,
    *,
    owner: OwnerFacts | None,
    campaign: str | None,
    version: int | str,
    events: Sequence[EventFacts],
    sla_lines: Sequence[str],
    name_of: NameOf,
) -> Card:
    """`lead_card` from what was read already: the lead's owner, campaign name, definition
    version, events (oldest first), SLA lines, and members' names (`name_of`)."""
    tz = owner.timezone if owner else None
    fields = _lead_fields(lead, campaign)
    attempts = _attempts(events, tz)
    if attempts:
        fields.append(attempts)
    fields += _questions(name_of, events, tz)
    fields += [Fact(text_for("label_sla"), line) for line in sla_lines]
    text = _verdict_line(name_of, lead, events, tz)
    return _lead_card(lead, fields, text, owner, version)


def new_lead_card(
    lead: LeadFacts,
    *,
    owner: Member | None,
    campaign: str | None,
    version: int,
    sla_lines: Sequence[str] = (),
) -> Card:
    """`lead_card` of a lead just handed off (no verdict, attempt or question yet), built
    from what the caller read for a whole batch (its clocks' `sla_lines` too) rather than
    a few queries per lead."""
    fields = _lead_fields(lead, campaign)
    fields += [Fact(text_for("label_sla"), line) for line in sla_lines]
    return _lead_card(lead, fields, _state_line(lead), owner, version)


def _lead_fields(lead: LeadFacts, campaign: str | None) -> list[Fact]:
    fields = [
        Fact(label, value)
        for label, value in (
            (text_for("label_company"), lead.company),
            (text_for("label_title"), lead.title),
            (text_for("label_email"), lead.email),
            (text_for("label_campaign"), campaign),
            (text_for("label_source"), lead.source),
        )
        if value
    ]
    shown = ((str(k), attribute_text(v)) for k, v in sorted(lead.attributes.items()))
    return fields + [Fact(label, text) for label, text in shown if text]


def _lead_card(
    lead: LeadFacts, fields: list[Fact], text: str, owner: OwnerFacts | None, version: int | str
) -> Card:
    tz = owner.timezone if owner else None
    return Card(
        title=text_for("lead_title", name=lead.name, company=lead.company or ""),
        text=text,
        fields=tuple(fields),
        context=text_for(
            "lead_context",
            lead_id=lead.id,
            owner=owner.name if owner else None,
            version=version,
            at=when(lead.handed_off_at or lead.created_at, tz),
        ),
        buttons=_buttons(lead),
        refresh=Refresh(VIEW, f"lead_id={lead.id}", _deciders(owner)),
    )


def _deciders(owner: OwnerFacts | None) -> tuple[int, ...]:
    """Who may act on a lead: its owner and the owner's manager (see `may_act_on`)."""
    if owner is None or owner.id is None:
        return ()
    return (owner.id,) if owner.manager_id is None else (owner.id, owner.manager_id)


def lead_card_for(
    session: Session, lead: Lead, viewer: Person, now: datetime, company: Company
) -> Card:
    """The handoff card as `viewer` should see it: the owner with its buttons, the owner's
    manager with them too (an override) and a line saying so, anyone else the state only."""
    card = lead_card(session, lead, now, company)
    if viewer.id is not None and viewer.id == lead.owner_id:
        return card
    owner = session.get(Member, lead.owner_id) if lead.owner_id else None
    if owner is not None and owner.manager_id is not None and owner.manager_id == viewer.id:
        note = text_for("lead_manager_view", owner=owner.name)
        return replace(card, context=f"{card.context}\n{note}" if card.context else note)
    return replace(card, buttons=(), selects=())


def _buttons(lead: LeadFacts) -> tuple[Button, ...]:
    value = f"lead_id={lead.id}"
    share = Button(text_for("button_share_insight"), "insight.share", value)
    if lead.state == LeadState.handed_off:
        return (
            Button(text_for("button_accept"), "lead.accept", value, Style.primary),
            Button(text_for("button_not_a_fit"), "lead.not_a_fit", value, Style.danger),
            Button(text_for("button_need_info"), "lead.need_info", value),
            Button(text_for("button_log_attempt"), "lead.log_attempt", value),
            share,
        )
    if lead.state == LeadState.accepted:
        return (
            Button(text_for("button_not_a_fit"), "lead.not_a_fit", value, Style.danger),
            Button(text_for("button_need_info"), "lead.need_info", value),
            Button(text_for("button_log_attempt"), "lead.log_attempt", value),
            share,
        )
    return ()


def question_card(session: Session, lead: Lead, asked: LeadEvent, answer: LeadEvent | None) -> Card:
    """What the campaign's marketer sees: the rep's question and an Answer button."""
    rep = member_name(session, asked.member_id)
    fields = [Fact(text_for("label_question"), asked.data["question"])]
    if answer is not None:
        fields.append(Fact(text_for("label_answer"), answer.data["answer"]))
    buttons: tuple[Button, ...] = ()
    if answer is None:
        value = f"question={lead.id}:{asked.data['question_id']}"
        buttons = (Button(text_for("button_answer"), "question.answer", value, Style.primary),)
    return Card(
        title=text_for("question_title", rep=rep, lead=lead.name, company=lead.company or ""),
        text=text_for("question_answered_note") if answer else text_for("question_intro", rep=rep),
        fields=tuple(fields),
        context=text_for("lead_context_short", lead_id=lead.id),
        buttons=buttons,
    )


def render_handoff(session: Session, intent: rendering.Intent) -> Card | None:
    """The handoff card as the lead stands at `intent.now` (rendered when it is sent)."""
    lead = session.get(Lead, intent.lead_id)
    return lead_card(session, lead, intent.now, intent.company) if lead else None


def render_question(session: Session, intent: rendering.Intent) -> Card | None:
    """A "need info" question card as it stands: open with its Answer button, or answered."""
    lead = session.get(Lead, intent.lead_id)
    question_id = intent.purpose.partition(":")[2]
    if lead is None or not question_id:
        return None
    asked = answered = None
    for event in stored_leads.events_of(session, lead_id=intent.lead_id):
        if event.data.get("question_id") != question_id:
            continue
        if event.kind == EventKind.info_requested:
            asked = event
        elif event.kind == EventKind.info_answered:
            answered = event
    return question_card(session, lead, asked, answered) if asked else None


@dataclass(frozen=True)
class HandoffFacts:
    """What a lead's handoff card is drawn from, read with many others' (`read_handoffs`)."""

    lead: Lead
    owner: Member | None
    campaign: str | None
    version: int | str
    events: list[LeadEvent]
    clocks: list[Clock]
    members: Mapping[int, Member]  # the owners of its clocks, and who its events name
    calendars: Mapping[int, Calendar]  # each clock owner's


def _named(event: LeadEvent) -> Any:
    return event.data.get("marketer_id") if event.kind == EventKind.info_requested else None


def read_handoffs(
    session: Session, lead_ids: Collection[int], company: Company
) -> dict[int, HandoffFacts]:
    """The facts of these leads' handoff cards, in a few queries for all of them: leads,
    events, open clocks, the members they name, campaigns, definitions, and each clock
    owner's calendar once (holidays once, time away in one query)."""
    leads = stored_leads.leads_by_id(session, ids=lead_ids)
    events = cards.events_by_lead(session, lead_ids=leads)
    clocks = cards.open_clocks_by_lead(session, lead_ids=leads)
    named = {lead.owner_id for lead in leads.values()}
    named |= {clock.owner_id for found in clocks.values() for clock in found}
    for found_events in events.values():
        named |= {event.member_id for event in found_events}
        named |= {_named(event) for event in found_events}
    members = stored_members.members_by_id(session, ids={m for m in named if isinstance(m, int)})
    campaigns = cards.campaign_names(
        session, ids={lead.campaign_id for lead in leads.values() if lead.campaign_id}
    )
    versions = cards.definition_versions(
        session, ids={lead.definition_id for lead in leads.values()}
    )
    owners = {clock.owner_id for found in clocks.values() for clock in found} & members.keys()
    read = Calendars(session, company, stored_away.away_spans_of(session, member_ids=owners))
    calendars = {owner_id: read.of(members[owner_id]) for owner_id in owners}
    return {
        lead_id: HandoffFacts(
            lead=lead,
            owner=members.get(lead.owner_id) if lead.owner_id else None,
            campaign=campaigns.get(lead.campaign_id) if lead.campaign_id else None,
            version=versions.get(lead.definition_id, "?"),
            events=events[lead_id],
            clocks=clocks[lead_id],
            members=members,
            calendars=calendars,
        )
        for lead_id, lead in leads.items()
    }


def handoff_stamp(facts: HandoffFacts) -> Hashable:
    return cards.stamp_of(facts.lead, facts.events, facts.clocks)


def draw_handoff(facts: HandoffFacts, intent: rendering.Intent) -> Card:
    """`render_handoff` from the facts read for it: no SQL."""

    def name(member_id: Any) -> str:
        member = facts.members.get(member_id) if member_id else None
        return member.name if member else "someone"

    owners: dict[int, Member | None] = {
        c.owner_id: facts.members.get(c.owner_id) for c in facts.clocks
    }
    lines = clock_lines(facts.clocks, owners, facts.calendars, intent.now, intent.company)
    return lead_card_of(
        facts.lead,
        owner=facts.owner,
        campaign=facts.campaign,
        version=facts.version,
        events=facts.events,
        sla_lines=lines,
        name_of=name,
    )


HANDOFF_READER = rendering.Reader(
    read=read_handoffs,
    stamps=lambda session, lead_ids: cards.card_stamps(session, lead_ids=lead_ids),
    stamp=handoff_stamp,
    draw=draw_handoff,
)
rendering.register(HANDOFF, render_handoff, HANDOFF_READER)
rendering.register(rendering.kind_of(question_purpose("")), render_question)
