"""Small helpers shared by handlers."""

from __future__ import annotations

import uuid

from sqlmodel import Session

from bot.core.effects import Effect, Reply
from bot.core.interaction import Person
from bot.core.messages import Card
from bot.core.text import text_for
from storage.members import get_member
from storage.models import Lead, Role


def private(text: str, *, title: str = "") -> list[Effect]:
    """A one-message private answer."""
    return [Reply(Card(title=title, text=text))]


def nonce() -> str:
    """A fresh id for a form instance; its submission is processed once."""
    return uuid.uuid4().hex


def load_lead(session: Session, raw: str) -> Lead | None:
    """The lead with this id (as text, from a button or form), if it exists."""
    if not raw.isdigit():
        return None
    return session.get(Lead, int(raw))


def may_act_on(session: Session, lead: Lead, actor: Person) -> bool:
    """Only the lead's owner, or the owner's manager, may act on it."""
    if lead.owner_id is None:
        return False
    if actor.id == lead.owner_id:
        return True
    owner = get_member(session, member_id=lead.owner_id)
    return owner is not None and owner.manager_id is not None and owner.manager_id == actor.id


def refuse_not_owner(session: Session, lead: Lead) -> list[Effect]:
    """Whose the lead is, without a word of the lead itself: the id may be made up."""
    owner = get_member(session, member_id=lead.owner_id) if lead.owner_id else None
    return private(text_for("lead_belongs_to", owner=owner.name if owner else None))


def unknown_lead() -> list[Effect]:
    return private(text_for("lead_not_found"))


def refuse_unless(actor: Person, *roles: Role, action: str) -> list[Effect] | None:
    """None when `actor` holds one of `roles` (admins may do anything), else the private
    answer that says who may, and how to get the role."""
    if actor.role == Role.admin or actor.role in roles:
        return None
    allowed = [r.value for r in roles if r is not Role.admin] + [Role.admin.value]
    return private(text_for("refused_role", action=action, allowed=allowed, role=actor.role))
