"""Who did what, where: the platform-neutral shape of every request a handler sees."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    command = "command"
    action = "action"
    form = "form"
    message = "message"


@dataclass(frozen=True)
class Person:
    """A member as the core and the handlers see them: who they are, how each platform
    reaches them and when they work. A plain value read from the `members` row, so a
    handler can neither change the row by accident nor load more of it lazily."""

    id: int
    name: str
    role: str
    handle: str = ""
    email: str | None = None
    team: str | None = None
    manager_id: int | None = None
    timezone: str | None = None
    slack_user_id: str | None = None
    slack_dm_channel: str | None = None
    teams_user_id: str | None = None
    teams_reference: dict[str, Any] | None = None
    work_start: str | None = None
    work_end: str | None = None
    workdays: str | None = None
    weekly_digest: bool = False

    @classmethod
    def of(cls, row: Any) -> Person:
        """The person a stored member (anything with a member's fields) is."""
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Where:
    """A conversation reference: platform, channel and (optionally) the message acted on."""

    platform: str
    channel: str = ""
    message_id: str = ""


@dataclass(frozen=True)
class Interaction:
    """One request from a person: a command, a button press, a form submit or a message."""

    kind: Kind
    name: str
    actor: Person
    where: Where
    args: dict[str, str] = field(default_factory=dict)
    values: dict[str, list[str]] = field(default_factory=dict)
    request_id: str = ""
    text: str = ""

    def arg(self, name: str) -> str:
        return self.args.get(name, "")

    def value(self, name: str) -> str:
        """The first (or only) submitted value of a form input, stripped."""
        found = self.values.get(name) or [""]
        return found[0].strip()

    def choices(self, name: str) -> list[str]:
        return [v for v in self.values.get(name, []) if v]
