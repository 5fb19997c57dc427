"""Who did what, where: the platform-neutral shape of every request a handler sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from storage.models import Member


class Kind(StrEnum):
    command = "command"
    action = "action"
    form = "form"
    message = "message"


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
    actor: Member
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
