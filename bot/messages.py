"""The neutral message model: cards and forms that each adapter renders its own way.

Every string here is plain text. Renderers escape it for their platform (Slack mrkdwn,
Adaptive Card markdown, console markup), so user text can never format, link or ping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Style(StrEnum):
    default = "default"
    primary = "primary"
    danger = "danger"


@dataclass(frozen=True)
class Button:
    """A button; pressing it sends `action` with `value` back to the bot."""

    label: str
    action: str
    value: str = ""
    style: Style = Style.default


@dataclass(frozen=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True)
class Select:
    """A drop-down on a card that acts as soon as a choice is made."""

    label: str
    action: str
    options: tuple[Option, ...]


@dataclass(frozen=True)
class Field_:
    """A label and its value; with `link` (an http(s) URL), the label links there."""

    label: str
    value: str
    link: str = ""


def web_link(url: str) -> str:
    """`url` when it is an http(s) address a renderer may link to, else ""."""
    plain = url.isprintable() and " " not in url
    return url if plain and url.lower().startswith(("https://", "http://")) else ""


class InputKind(StrEnum):
    text = "text"
    multiline = "multiline"
    select = "select"
    multiselect = "multiselect"
    date = "date"  # a calendar date, submitted as YYYY-MM-DD


@dataclass(frozen=True)
class Input:
    """One question of a form."""

    name: str
    label: str
    kind: InputKind = InputKind.text
    options: tuple[Option, ...] = ()
    required: bool = True
    max_length: int = 3000
    placeholder: str = ""
    initial: tuple[str, ...] = ()  # pre-filled value(s): text, option values or YYYY-MM-DD


@dataclass(frozen=True)
class Card:
    """A message: a title, a paragraph, label/value fields, a footnote and actions."""

    title: str = ""
    text: str = ""
    fields: tuple[Field_, ...] = ()
    context: str = ""
    buttons: tuple[Button, ...] = ()
    selects: tuple[Select, ...] = ()

    @property
    def summary(self) -> str:
        """A one-line plain-text fallback (notifications, screen readers)."""
        return self.title or self.text[:150]


@dataclass(frozen=True)
class Form:
    """A modal (Slack), an input card (Teams) or a field-by-field prompt (console).

    `state` travels with the form and comes back on submission; it carries the
    `nonce` that makes a double submit act once.
    """

    name: str
    title: str
    inputs: tuple[Input, ...]
    submit_label: str = "Submit"
    intro: str = ""
    state: dict[str, str] = field(default_factory=dict)


def card_to_dict(card: Card) -> dict[str, Any]:
    """A card as JSON-ready data (for the outbox)."""
    return asdict(card)


def card_from_dict(data: dict[str, Any]) -> Card:
    """The inverse of `card_to_dict`."""
    return Card(
        title=data.get("title", ""),
        text=data.get("text", ""),
        fields=tuple(Field_(**f) for f in data.get("fields", ())),
        context=data.get("context", ""),
        buttons=tuple(
            Button(b["label"], b["action"], b.get("value", ""), Style(b.get("style", "default")))
            for b in data.get("buttons", ())
        ),
        selects=tuple(
            Select(s["label"], s["action"], tuple(Option(**o) for o in s.get("options", ())))
            for s in data.get("selects", ())
        ),
    )
