"""Block Kit from the neutral model: small builders, every user string escaped for mrkdwn."""

from __future__ import annotations

import json
from typing import Any

from bot.core.messages import (
    Button,
    Card,
    Fact,
    Form,
    Input,
    InputKind,
    Option,
    Report,
    Section,
    Style,
    web_link,
)

Block = dict[str, Any]

SECTION_LIMIT = 3000
BLOCK_LIMIT = 50  # in a message; a modal or the Home tab takes 100
HEADER_LIMIT = 150
FIELD_LIMIT = 2000
OPTION_LIMIT = 75
BUTTON_LIMIT = 75
ELEMENTS_LIMIT = 25  # elements in one actions block
OPTIONS_LIMIT = 100  # options in one select
TEXT_LIMIT = 40_000  # a message's `text` (the notification fallback)


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters, so `<!channel>` shows as text and never pings."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_url(url: str) -> str:
    """A URL made safe inside `<url|text>`: Slack's control characters and the pipe."""
    return mrkdwn_escape(url).replace("|", "%7C")


def field_line(f: Fact) -> str:
    """`*label*: value`, the label linked when the field carries a web link."""
    label = mrkdwn_escape(f.label)
    link = web_link(f.link)
    if link:
        label = f"<{slack_url(link)}|{label}>"
    return f"*{label}*: {mrkdwn_escape(f.value)}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(text: str, limit: int = OPTION_LIMIT) -> dict[str, Any]:
    # plain_text is never parsed for mentions or links, so it needs no escaping.
    return {"type": "plain_text", "text": _cut(text, limit) or " ", "emoji": True}


def mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _cut(text, SECTION_LIMIT)}


def section(text: str) -> Block:
    return {"type": "section", "text": mrkdwn(text)}


def context(text: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(text)]}


def button(b: Button) -> Block:
    element: Block = {
        "type": "button",
        "text": plain(b.label, BUTTON_LIMIT),
        "action_id": b.action,
        "value": b.value,
    }
    if b.style is not Style.default:
        element["style"] = b.style.value
    return element


def option(o: Option) -> Block:
    return {"text": plain(o.label), "value": o.value}


def fallback(text: str) -> str:
    """A message's `text` (notifications, screen readers): escaped, within Slack's limit."""
    return _cut(mrkdwn_escape(text), TEXT_LIMIT)


def _packed(lines: list[str], room: int) -> list[Block]:
    """`lines` in as few sections as fit Slack's 3,000 characters each, at most `room`
    sections; lines that find no room are summarised as "…and N more", never cut mid-way
    or refused (a lead with many attributes still shows its SLA lines, which come last,
    as far as they fit)."""
    texts: list[str] = []
    for n, line in enumerate(_cut(line, SECTION_LIMIT) for line in lines):
        if texts and len(texts[-1]) + 1 + len(line) <= SECTION_LIMIT:
            texts[-1] += "\n" + line
        elif len(texts) < room:
            texts.append(line)
        else:
            more = f"\n…and {len(lines) - n} more"
            texts[-1] = _cut(texts[-1], SECTION_LIMIT - len(more)) + more
            break
    return [section(text) for text in texts]


def _actions(card: Card) -> list[Block]:
    """Buttons, then selects, in actions blocks of at most 25 elements; a select shows
    its first 100 options."""
    elements = [button(b) for b in card.buttons]
    elements += [
        {
            "type": "static_select",
            "action_id": s.action,
            "placeholder": plain(s.label),
            "options": [option(o) for o in s.options[:OPTIONS_LIMIT]],
        }
        for s in card.selects
    ]
    chunks = [elements[at : at + ELEMENTS_LIMIT] for at in range(0, len(elements), ELEMENTS_LIMIT)]
    return [
        {"type": "actions", "block_id": "card_actions" + (f"_{n + 1}" if n else ""), "elements": c}
        for n, c in enumerate(chunks)
    ]


def card_blocks(card: Card) -> list[Block]:
    """Title and text as a section, fields as `*label*: value` lines in as many sections
    as they need, actions last; within Block Kit's limits (50 blocks, 3,000 characters a
    section, 25 elements an actions block), whatever the card holds."""
    blocks: list[Block] = []
    head = []
    if card.title:
        head.append(f"*{mrkdwn_escape(card.title)}*")
    if card.text:
        head.append(mrkdwn_escape(card.text))
    if head:
        blocks.append(section("\n".join(head)))
    notes = [context(mrkdwn_escape(card.context))] if card.context else []
    room = BLOCK_LIMIT - len(blocks) - len(notes) - (1 if card.fields else 0)
    actions = _actions(card)[:room]
    if card.fields:
        room = BLOCK_LIMIT - len(blocks) - len(notes) - len(actions)
        blocks += _packed([field_line(f) for f in card.fields], room)
    return blocks + notes + actions


def _text_element(spec: Input) -> Block:
    element: Block = {
        "type": "plain_text_input",
        "action_id": spec.name,
        "multiline": spec.kind is InputKind.multiline,
        "max_length": spec.max_length,
    }
    if spec.placeholder:
        element["placeholder"] = plain(spec.placeholder, 150)
    if spec.initial and spec.initial[0]:
        element["initial_value"] = spec.initial[0][: spec.max_length]
    return element


def _select_element(spec: Input) -> Block:
    multi = spec.kind is InputKind.multiselect
    shown = spec.options[:OPTIONS_LIMIT]
    element: Block = {
        "type": "multi_static_select" if multi else "static_select",
        "action_id": spec.name,
        "placeholder": plain(spec.placeholder or "Choose…"),
        "options": [option(o) for o in shown],
    }
    chosen = [option(o) for o in shown if o.value in spec.initial]
    if chosen and multi:
        element["initial_options"] = chosen
    elif chosen:
        element["initial_option"] = chosen[0]
    return element


def _date_element(spec: Input) -> Block:
    element: Block = {"type": "datepicker", "action_id": spec.name}
    if spec.initial and spec.initial[0]:
        element["initial_date"] = spec.initial[0]
    if spec.placeholder:
        element["placeholder"] = plain(spec.placeholder, 150)
    return element


def input_block(spec: Input) -> Block:
    if spec.kind in (InputKind.text, InputKind.multiline):
        element = _text_element(spec)
    elif spec.kind is InputKind.date:
        element = _date_element(spec)
    else:
        element = _select_element(spec)
    return {
        "type": "input",
        "block_id": spec.name,
        "label": plain(spec.label, 2000),
        "optional": not spec.required,
        "element": element,
    }


def modal(form: Form, *, metadata: dict[str, str]) -> Block:
    """A modal view; `metadata` (form state plus where it came from) returns on submit."""
    blocks: list[Block] = []
    if form.intro:
        blocks.append(section(mrkdwn_escape(form.intro)))
    blocks += [input_block(spec) for spec in form.inputs]
    return {
        "type": "modal",
        "callback_id": form.name,
        "title": plain(form.title, 24),
        "submit": plain(form.submit_label, 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps(metadata),
        "blocks": blocks,
    }


def view_values(view: dict[str, Any]) -> dict[str, list[str]]:
    """The submitted values of a modal, by input name (= block id)."""
    values: dict[str, list[str]] = {}
    state = view.get("state", {}).get("values", {})
    for block_id, actions in state.items():
        for element in actions.values():
            if "selected_options" in element:
                values[block_id] = [o["value"] for o in element["selected_options"] or []]
            elif "selected_option" in element:
                chosen = element["selected_option"]
                values[block_id] = [chosen["value"]] if chosen else []
            elif "selected_date" in element:
                values[block_id] = [element["selected_date"] or ""]
            else:
                values[block_id] = [element.get("value") or ""]
    return values


# ---------------------------------------------------------------- reports (the digest)


def _section_text(part: Section) -> str:
    """A report section as one mrkdwn text under Slack's 3,000 characters: the lines that
    do not fit are summarised as "…and N more", never cut mid-way or refused."""
    head = f"*{mrkdwn_escape(part.heading)}*"
    rows = [f"*{mrkdwn_escape(f.label)}*: {mrkdwn_escape(f.value)}" for f in part.facts]
    rows += [f"• {mrkdwn_escape(line)}" for line in part.lines]
    text = head
    for n, row in enumerate(rows):
        if len(text) + 1 + len(row) + 20 > SECTION_LIMIT:  # 20: room for the summary line
            return text + f"\n…and {len(rows) - n} more"
        text += "\n" + row
    return text


def report_blocks(report: Report) -> list[Block]:
    """Header, intro, one section per part with dividers, footer: at most 50 blocks."""
    blocks: list[Block] = [
        {"type": "header", "text": plain(report.title, HEADER_LIMIT)},
        section(mrkdwn_escape(report.intro)),
    ]
    parts = list(report.sections)
    room = (BLOCK_LIMIT - len(blocks) - 1) // 2  # a divider and a section per part
    if len(parts) > room:  # keep the last part (the agenda) and say what was left out
        dropped = parts[room - 1 : -1]
        parts = [*parts[: room - 1], parts[-1]]
        footer = f"{report.footer} ({len(dropped)} more sections in the full digest.)"
    else:
        footer = report.footer
    for part in parts:
        blocks.append({"type": "divider"})
        blocks.append(section(_section_text(part)))
    if footer:
        blocks.append(context(mrkdwn_escape(footer)))
    return blocks[:BLOCK_LIMIT]
