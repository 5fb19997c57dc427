"""The neutral message model rendered as Adaptive Cards 1.5 (plain dicts) for Microsoft Teams.

Buttons are Universal Actions (`Action.Execute`, the verb is the neutral action): a press
arrives as an `adaptiveCard/action` invoke whose `value.action.data` is the action's data
with the card's inputs merged in, and is answered with the card as it then stands. A card
with a `Refresh` is posted read-only and asks Teams to refresh it for the people who may act
(`userIds`), who each get their own card with the buttons. Cards posted before Universal
Actions (`Action.Submit`) still arrive as message activities and keep working.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.core.messages import (
    Button,
    Card,
    Fact,
    Form,
    Input,
    InputKind,
    Option,
    Refresh,
    Report,
    Select,
    Style,
    web_link,
)

CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"
FORM_KEY = "form"
INPUTS_KEY = "form_inputs"
SELECT_KEY = "select"
CARD_KEY = "card"  # in a button's data: how to draw its card again for the one who pressed
MAX_REFRESH_USERS = 60  # Teams refreshes a card automatically for at most 60 users

# AC markdown is a CommonMark subset: backslash escapes disarm it; < > & become lookalikes.
_MARKDOWN = re.compile(r"([\\*_\[\]()`#\-+!~|{}])")
_ORDERED_LIST = re.compile(r"^(\s*\d+)([.)])", re.MULTILINE)
_LOOKALIKES = str.maketrans({"<": "\uff1c", ">": "\uff1e", "&": "\uff06"})
_STYLES = {Style.primary: "positive", Style.danger: "destructive"}


def plain(text: str) -> str:
    """For fields Teams shows as plain text (labels, choices, button titles): no tags."""
    return text.translate(_LOOKALIKES)


def escape_md(text: str) -> str:
    """User text made inert for TextBlock markdown: no formatting, links, mentions or HTML."""
    escaped = _MARKDOWN.sub(r"\\\1", plain(text))
    return _ORDERED_LIST.sub(r"\1\\\2", escaped)


# ---------------------------------------------------------------- elements


def text_block(
    text: str, *, bold: bool = False, size: str = "", subtle: bool = False
) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "TextBlock", "text": escape_md(text), "wrap": True}
    if bold:
        block["weight"] = "bolder"
    if size:
        block["size"] = size
    if subtle:
        block["isSubtle"] = True
    return block


_URL_UNSAFE = str.maketrans({c: f"%{ord(c):02X}" for c in "()<>[]\\\"'` "})


def fact_title(f: Fact) -> str:
    """The fact's label, as a markdown link when the field carries a web link."""
    link = web_link(f.link)
    label = escape_md(f.label)
    return f"[{label}]({link.translate(_URL_UNSAFE)})" if link else label


def fact_set(fields: Iterable[Fact]) -> dict[str, Any]:
    facts = [{"title": fact_title(f), "value": escape_md(f.value)} for f in fields]
    return {"type": "FactSet", "facts": facts}


def execute(
    title: str, verb: str, data: Mapping[str, Any], style: Style = Style.default
) -> dict[str, Any]:
    """A Universal Action button: `verb` names the action, `data` comes back with it."""
    action: dict[str, Any] = {
        "type": "Action.Execute",
        "title": plain(title),
        "verb": verb,
        "data": dict(data),
    }
    if style in _STYLES:
        action["style"] = _STYLES[style]
    return action


def choice_set(
    input_id: str,
    options: Iterable[Option],
    *,
    label: str = "",
    multi: bool = False,
    required: bool = False,
    placeholder: str = "",
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "Input.ChoiceSet",
        "id": input_id,
        "style": "compact",
        "isMultiSelect": multi,
        "choices": [{"title": plain(o.label), "value": o.value} for o in options],
    }
    if label:
        element["label"] = plain(label)
    if placeholder:
        element["placeholder"] = plain(placeholder)
    if required:
        element["isRequired"] = True
    return element


def text_input(spec: Input) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "Input.Text",
        "id": spec.name,
        "label": plain(spec.label),
        "isMultiline": spec.kind is InputKind.multiline,
        "maxLength": spec.max_length,
    }
    if spec.placeholder:
        element["placeholder"] = plain(spec.placeholder)
    if spec.initial and spec.initial[0]:
        element["value"] = spec.initial[0][: spec.max_length]
    return element


def adaptive_card(body: list[dict[str, Any]], actions: list[dict[str, Any]]) -> dict[str, Any]:
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": SCHEMA,
        "version": VERSION,
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return card


def attachment(content: dict[str, Any]) -> dict[str, Any]:
    """A Bot Framework attachment carrying an Adaptive Card."""
    return {"contentType": CONTENT_TYPE, "content": content}


# ---------------------------------------------------------------- cards and forms


def _select(index: int, select: Select, redraw: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A drop-down and the button that sends its choice (cards cannot submit on change)."""
    input_id = f"{SELECT_KEY}{index}"
    data = {"action": select.action, SELECT_KEY: input_id, **redraw}
    return [
        choice_set(input_id, select.options, placeholder=select.label),
        {"type": "ActionSet", "actions": [execute(select.label, select.action, data)]},
    ]


def refresh_block(refresh: Refresh, user_ids: Sequence[str]) -> dict[str, Any]:
    """Teams asks the bot for the card of each of `user_ids` as they look at it."""
    redraw = {"action": refresh.action, "value": refresh.value}
    data = {**redraw, CARD_KEY: redraw}
    return {
        "action": execute("Refresh", refresh.action, data),
        "userIds": list(user_ids)[:MAX_REFRESH_USERS],
    }


def card_content(card: Card, *, user_ids: Sequence[str] = (), own: bool = False) -> dict[str, Any]:
    """The card as an Adaptive Card. A card with a `refresh` is drawn read-only (what anyone
    sees) and refreshed for `user_ids` (the people who may act, as Teams user ids), unless
    it is `own`: one person's card, answering their refresh, buttons kept."""
    refresh = card.refresh
    interactive = refresh is None or own
    redraw = {CARD_KEY: {"action": refresh.action, "value": refresh.value}} if refresh else {}
    body: list[dict[str, Any]] = []
    if card.title:
        body.append(text_block(card.title, bold=True, size="medium"))
    if card.text:
        body.append(text_block(card.text))
    if card.fields:
        body.append(fact_set(card.fields))
    for index, select in enumerate(card.selects if interactive else ()):
        body += _select(index, select, redraw)
    if card.context:
        body.append(text_block(card.context, size="small", subtle=True))
    actions = [button_action(b, redraw) for b in card.buttons] if interactive else []
    content = adaptive_card(body, actions)
    if refresh is not None and user_ids:
        content["refresh"] = refresh_block(refresh, user_ids)
    return content


def button_action(button: Button, redraw: Mapping[str, Any] | None = None) -> dict[str, Any]:
    data = {"action": button.action, "value": button.value, **(redraw or {})}
    return execute(button.label, button.action, data, button.style)


def card_attachment(
    card: Card, *, user_ids: Sequence[str] = (), own: bool = False
) -> dict[str, Any]:
    """The card as a Teams message attachment (see `card_content`)."""
    return attachment(card_content(card, user_ids=user_ids, own=own))


def form_input(spec: Input) -> dict[str, Any]:
    if spec.kind in (InputKind.select, InputKind.multiselect):
        element = choice_set(
            spec.name,
            spec.options,
            label=spec.label,
            multi=spec.kind is InputKind.multiselect,
            placeholder=spec.placeholder,
        )
        known = {o.value for o in spec.options}
        chosen = [v for v in spec.initial if v in known]
        if chosen:
            element["value"] = ",".join(chosen)
    elif spec.kind is InputKind.date:
        element = {"type": "Input.Date", "id": spec.name, "label": plain(spec.label)}
        if spec.initial and spec.initial[0]:
            element["value"] = spec.initial[0]
    else:
        element = text_input(spec)
    if spec.required:
        element["isRequired"] = True
        element["errorMessage"] = plain(f"{spec.label}: required")
    return element


def form_data(form: Form) -> dict[str, Any]:
    """What the Submit button sends back (the inputs' answers merged in): the form's name,
    its state and its inputs' shapes.

    The shapes (`form_inputs`) say which keys are answers and which are multi-selects,
    whose answers arrive as one comma-separated string.
    """
    shapes = {spec.name: {"kind": spec.kind.value, "label": spec.label} for spec in form.inputs}
    return {FORM_KEY: form.name, **form.state, INPUTS_KEY: shapes}


def form_attachment(form: Form) -> dict[str, Any]:
    """The form as an input card with one Submit button."""
    body: list[dict[str, Any]] = [text_block(form.title, bold=True, size="medium")]
    if form.intro:
        body.append(text_block(form.intro))
    body += [form_input(spec) for spec in form.inputs]
    submit = execute(form.submit_label, form.name, form_data(form), Style.primary)
    return attachment(adaptive_card(body, [submit]))


# ---------------------------------------------------------------- reports (the digest)

# Teams refuses bot messages over about 40 KB (UTF-16, images in base64 not counted):
# keep the text well inside it by summarising long sections.
TEXT_BUDGET = 12_000  # characters, i.e. about 24 KB in UTF-16
LINES_PER_SECTION = 12


def report_card(report: Report) -> dict[str, Any]:
    """The digest as an Adaptive Card: title, intro, the chart, then each section."""
    body: list[dict[str, Any]] = [
        text_block(report.title, bold=True, size="large"),
        text_block(report.intro, subtle=True),
    ]
    if report.chart:
        data = base64.b64encode(report.chart).decode()
        body.append(
            {
                "type": "Image",
                "url": f"data:image/png;base64,{data}",
                "altText": plain(report.chart_alt),
                "size": "stretch",
            }
        )
    budget = TEXT_BUDGET
    for part in report.sections:
        body.append(text_block(part.heading, bold=True, size="medium"))
        if part.facts:
            body.append(fact_set(part.facts))
        lines = list(part.lines[:LINES_PER_SECTION])
        text = "\n\n".join(f"• {line}" for line in lines)
        while lines and len(text) > budget:
            lines.pop()
            text = "\n\n".join(f"• {line}" for line in lines)
        left = len(part.lines) - len(lines)
        if left:
            text += f"\n\n…and {left} more"
        if text:
            body.append(text_block(text))
        budget = max(budget - len(text) - sum(len(f.value) for f in part.facts), 500)
    if report.footer:
        body.append(text_block(report.footer, size="small", subtle=True))
    return attachment(adaptive_card(body, []))
