"""The neutral message model: cards and forms that each adapter renders its own way.

Every string here is plain text. Renderers escape it for their platform (Slack mrkdwn,
Adaptive Card markdown, console markup), so user text can never format, link or ping.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field, fields
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
class Fact:
    """A label and its value (a Block Kit field, an Adaptive Card fact); with `link` (an
    http(s) URL), the label links there."""

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
class Refresh:
    """How to draw the card again for whoever looks at it, where the platform can show
    each person their own (Teams' Universal Actions): `action` with `value` answers with
    the card for the one who asks. `viewers` (member ids) are asked for automatically;
    anyone else sees the card without its buttons."""

    action: str
    value: str
    viewers: tuple[int, ...] = ()


@dataclass(frozen=True)
class Card:
    """A message: a title, a paragraph, label/value fields, a footnote and actions."""

    title: str = ""
    text: str = ""
    fields: tuple[Fact, ...] = ()
    context: str = ""
    buttons: tuple[Button, ...] = ()
    selects: tuple[Select, ...] = ()
    refresh: Refresh | None = None

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
    """A card as JSON-ready data (for the outbox): what `dataclasses.asdict` gives, built
    directly (its generic deep copy was most of the cost of owing a batch of cards)."""
    return {
        "title": card.title,
        "text": card.text,
        "fields": tuple({"label": f.label, "value": f.value, "link": f.link} for f in card.fields),
        "context": card.context,
        "buttons": tuple(
            {"label": b.label, "action": b.action, "value": b.value, "style": b.style}
            for b in card.buttons
        ),
        "selects": tuple(
            {
                "label": s.label,
                "action": s.action,
                "options": tuple({"value": o.value, "label": o.label} for o in s.options),
            }
            for s in card.selects
        ),
    }


def card_from_dict(data: dict[str, Any]) -> Card:
    """The inverse of `card_to_dict`."""
    return Card(
        title=data.get("title", ""),
        text=data.get("text", ""),
        fields=tuple(Fact(**f) for f in data.get("fields", ())),
        context=data.get("context", ""),
        buttons=tuple(
            Button(b["label"], b["action"], b.get("value", ""), Style(b.get("style", "default")))
            for b in data.get("buttons", ())
        ),
        selects=tuple(
            Select(s["label"], s["action"], tuple(Option(**o) for o in s.get("options", ())))
            for s in data.get("selects", ())
        ),
        refresh=_refresh_from_dict(data.get("refresh")),
    )


def _refresh_from_dict(data: Any) -> Refresh | None:
    if not isinstance(data, dict):
        return None
    viewers = tuple(int(v) for v in data.get("viewers", ()))
    return Refresh(str(data["action"]), str(data.get("value", "")), viewers)


@dataclass(frozen=True)
class Section:
    """A part of a report: a heading, lines of text and label/value facts."""

    heading: str
    lines: tuple[str, ...] = ()
    facts: tuple[Fact, ...] = ()


@dataclass(frozen=True)
class Report:
    """A long read (the weekly digest): sections, an optional chart (PNG) and a footer.

    Each renderer fits it to its platform's limits by summarising, never by failing."""

    title: str
    intro: str
    sections: tuple[Section, ...]
    footer: str = ""
    chart: bytes | None = None
    chart_alt: str = ""


def report_to_dict(report: Report) -> dict[str, Any]:
    """A report as JSON-ready data (for the outbox); the chart as base64."""
    return {
        "title": report.title,
        "intro": report.intro,
        "sections": [
            {"heading": s.heading, "lines": list(s.lines), "facts": [asdict(f) for f in s.facts]}
            for s in report.sections
        ],
        "footer": report.footer,
        "chart": base64.b64encode(report.chart).decode() if report.chart else None,
        "chart_alt": report.chart_alt,
    }


def report_from_dict(data: dict[str, Any]) -> Report:
    """The inverse of `report_to_dict`."""
    chart = data.get("chart")
    return Report(
        title=data.get("title", ""),
        intro=data.get("intro", ""),
        sections=tuple(
            Section(
                s.get("heading", ""),
                tuple(s.get("lines", ())),
                tuple(Fact(**f) for f in s.get("facts", ())),
            )
            for s in data.get("sections", ())
        ),
        footer=data.get("footer", ""),
        chart=base64.b64decode(chart) if chart else None,
        chart_alt=data.get("chart_alt", ""),
    )


@dataclass(frozen=True)
class CardPlace:
    """Where a card about a lead was posted (a `card_locations` row as the core sees it), so
    it can be updated in place or answered on its thread."""

    id: int
    lead_id: int
    purpose: str
    member_id: int | None
    platform: str
    channel: str
    message_id: str
    reference: dict[str, Any] | None = None

    @classmethod
    def of(cls, row: Any) -> CardPlace:
        """The place a stored location (anything with a location's fields) names."""
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})
