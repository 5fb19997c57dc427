"""Members: found by id, email, handle or platform id; created or bound on first sight."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from storage.models import (
    Member,
    Role,
)
from storage.sql import insert_or_none

log = logging.getLogger(__name__)


def get_member(session: Session, *, member_id: int) -> Member | None:
    return session.get(Member, member_id)


def members_by_id(session: Session, *, ids: Collection[int]) -> dict[int, Member]:
    """The members with these ids, by id, in one query (ids that match nobody are left out)."""
    if not ids:
        return {}
    rows = session.exec(select(Member).where(col(Member.id).in_(sorted(ids)))).all()
    return {row.id or 0: row for row in rows}


def member_by(session: Session, **where: str) -> Member | None:
    """The member whose column equals the value, e.g. `member_by(s, email="a@x.com")`."""
    ((column, value),) = where.items()
    if column == "email":
        value = value.strip().lower()
    return session.exec(select(Member).where(getattr(Member, column) == value)).first()


def members_with_role(session: Session, *, role: str) -> Sequence[Member]:
    return session.exec(select(Member).where(Member.role == role).order_by(col(Member.id))).all()


def admin_ids(session: Session) -> list[int]:
    """The members who administer Liaison, oldest first."""
    query = select(Member.id).where(Member.role == Role.admin.value).order_by(col(Member.id))
    return [member_id for member_id in session.exec(query).all() if member_id is not None]


def all_members(session: Session) -> Sequence[Member]:
    return session.exec(select(Member).order_by(col(Member.name))).all()


def _unique_handle(session: Session, base: str, spread: int = 0) -> str:
    """`base` made a handle nobody has: its letters and digits, then a number if taken.
    With `spread`, one of the first `spread + 1` free ones, at random, so writers racing
    for the same name (a batch of new owners) stop picking the same one."""
    stem = re.sub(r"[^a-z0-9]+", "", base.lower()) or "member"
    taken = set(
        session.exec(select(Member.handle).where(col(Member.handle).startswith(stem))).all()
    )
    free: list[str] = []
    n = 1
    while len(free) <= spread:
        handle = stem if n == 1 else f"{stem}{n}"
        if handle not in taken:
            free.append(handle)
        n += 1
    return random.choice(free)


HANDLE_TRIES = 50


def _create_member(
    session: Session,
    *,
    now: datetime,
    name: str,
    email: str | None,
    slack_user_id: str | None,
    teams_user_id: str | None,
) -> Member:
    """A new member, or the one a concurrent writer created a moment ago with the same
    email or platform id: a race is a lookup, never an IntegrityError. A handle taken in
    the meantime is retried with the next free one."""
    table = Member.__table__  # type: ignore[attr-defined]
    session.flush()
    for attempt in range(HANDLE_TRIES):
        values = {
            "name": name,
            "handle": _unique_handle(session, name.split()[0], spread=4 * attempt),
            "email": email,
            "slack_user_id": slack_user_id,
            "teams_user_id": teams_user_id,
            "role": Role.rep.value,
            "weekly_digest": False,
            "created_at": now,
        }
        new_id = insert_or_none(session, table, values)
        if new_id is not None:
            member = session.get(Member, new_id)
            assert member is not None
            return member
        for column, value in (
            ("slack_user_id", slack_user_id),
            ("teams_user_id", teams_user_id),
            ("email", email),
        ):
            found = member_by(session, **{column: value}) if value else None
            if found is not None:
                return found
    raise RuntimeError(f"no free handle for member {name!r} after {HANDLE_TRIES} tries")


def _bound_elsewhere(member: Member, ids: dict[str, str | None]) -> bool:
    """`member` already has a different platform id than one of `ids`: whoever now claims
    their email is someone else, and is never bound to them (logged, without the email)."""
    for column, value in ids.items():
        bound = getattr(member, column)
        if value and bound and bound != value:
            log.warning(
                "member %s already has a %s; a different account claimed their email "
                "and was not bound to them",
                member.id,
                column,
            )
            return True
    return False


def upsert_member(
    session: Session,
    *,
    now: datetime,
    email: str | None = None,
    name: str | None = None,
    slack_user_id: str | None = None,
    teams_user_id: str | None = None,
    **fields: Any,
) -> Member:
    """Find a member by any platform id or email and update it, or create one.

    A member found by email who already has a different Slack or Teams id is never
    rebound: the account claiming the email is kept apart from them, without the email.
    An existing member's name changes only with `rename=True`.
    """
    rename = bool(fields.pop("rename", False))
    email = email.strip().lower() if email else None
    ids = {"slack_user_id": slack_user_id, "teams_user_id": teams_user_id}
    member = None
    for column, value in ids.items():
        if value and member is None:
            member = member_by(session, **{column: value})
    if email and (owner := member_by(session, email=email)) not in (None, member):
        if member is None and not _bound_elsewhere(owner, ids):
            member = owner
        else:  # the email is someone else's: the newcomer stays unbound from it
            email = None
    if member is None:
        display = name or (email.split("@")[0] if email else None) or "member"
        member = _create_member(
            session,
            now=now,
            name=display,
            email=email,
            slack_user_id=slack_user_id,
            teams_user_id=teams_user_id,
        )
    if email and not member.email:
        member.email = email
    if name and rename:
        member.name = name
    if slack_user_id:
        member.slack_user_id = slack_user_id
    if teams_user_id:
        member.teams_user_id = teams_user_id
    for key, value in fields.items():
        if value is not None:
            setattr(member, key, value)
    session.add(member)
    session.flush()
    return member


def set_teams_reference(
    session: Session, *, member: Member, reference: dict[str, Any] | None
) -> None:
    """Keep the Teams conversation reference the member's private messages go to (None:
    forget it, the bot was removed from their chat)."""
    member.teams_reference = reference
    session.add(member)
