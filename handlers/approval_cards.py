"""An approval request as people see it: the sign-off card an approver decides on (asked,
and reminded by digests/approvals.py), and the words for the request and its changes."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from bot.core.messages import Button, Card, Fact, Style
from bot.core.text import text_for, when
from storage import approvals
from storage.models import ApprovalRequest, ApprovalSubject, Member

MAX_REMINDERS = 3  # an undecided approver is reminded at most this often, a business day apart
PERCENT_FIELDS = frozenset({"acceptance_rate"})


def subject_name(subject: str) -> str:
    """`lead definition` or `SLA`."""
    return text_for(f"approvals_subject_{subject}")


def sla_value(name: str, value: Any) -> str:
    """A value of an SLA field as a person writes it in the form (60%, 4, 0.75)."""
    number = float(value)
    if name in PERCENT_FIELDS:
        return f"{number * 100:g}%"
    return f"{number:g}"


def change_fields(request: ApprovalRequest) -> tuple[Fact, ...]:
    """What the request changes against the version it was proposed on."""
    payload = request.payload
    if request.subject == ApprovalSubject.sla:
        return tuple(
            Fact(
                text_for(f"approvals_sla_{name}"),
                text_for("approvals_edited", old=sla_value(name, old), new=sla_value(name, new)),
            )
            for name, old, new in payload.get("changed", [])
        )
    fields = [
        Fact(text_for("approvals_label_added", key=key), text)
        for key, text in payload.get("added", [])
    ]
    fields += [
        Fact(
            text_for("approvals_label_edited", key=key),
            text_for("approvals_edited", old=old, new=new),
        )
        for key, old, new in payload.get("edited", [])
    ]
    fields += [
        Fact(text_for("approvals_label_retired", key=key), text)
        for key, text in payload.get("retired", [])
    ]
    return tuple(fields)


def proposer_of(session: Session, request: ApprovalRequest) -> str:
    if request.proposed_by is not None:
        member = session.get(Member, request.proposed_by)
        if member is not None:
            return member.name
    return request.proposer_label or "?"


def decision_buttons(request: ApprovalRequest) -> tuple[Button, ...]:
    value = f"request={request.id}"
    return (
        Button(text_for("approvals_button_approve"), "approval.approve", value, Style.primary),
        Button(text_for("approvals_button_reject"), "approval.reject", value, Style.danger),
    )


def ask_card(
    session: Session, request: ApprovalRequest, *, tz: str | None, reminder: int = 0
) -> Card:
    """The card an approver decides on: the change, why, who else signs, two buttons."""
    waiting = [m.name for m in approvals.undecided(session, request_id=request.id or 0)]
    title = "approvals_reminder_title" if reminder else "approvals_ask_title"
    return Card(
        title=text_for(
            title,
            id=request.id,
            subject=subject_name(request.subject),
            proposer=proposer_of(session, request),
        ),
        text=text_for(
            "approvals_ask_text",
            subject=subject_name(request.subject),
            base=request.payload.get("base_version"),
            note=request.note,
            at=when(request.created_at, tz),
            reminder=reminder,
            max_reminders=MAX_REMINDERS,
        ),
        fields=change_fields(request),
        context=text_for("approvals_ask_context", id=request.id, waiting=waiting),
        buttons=decision_buttons(request),
    )
