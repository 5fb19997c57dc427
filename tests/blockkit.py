"""Block Kit's limits, as Slack enforces them, for the Slack stand-in.

Limits from Slack's Block Kit reference (https://docs.slack.dev/reference/block-kit/blocks,
/block-elements, /composition-objects, /views): 50 blocks in a message, 100 in a modal or
Home tab; section text 3,000 characters, 10 fields of 2,000; header 150; context 10
elements; actions 25 elements; input label and hint 2,000; button text 75, value 2,000,
url 3,000; action_id and block_id 255; select placeholder 150, 100 options, option text 75
and value 150; plain_text_input placeholder 150 and max_length 3,000; modal title, submit
and close 24; private_metadata and callback_id 3,000 and 255. Text objects are never empty.

Each problem is worded as Slack words it: `must be less than 3001 characters
[json-pointer:/blocks/0/text/text]`.
"""

from __future__ import annotations

from typing import Any

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100


def _long(value: Any, limit: int, at: str) -> list[str]:
    if isinstance(value, str) and len(value) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{at}]"]
    return []


def _many(items: Any, limit: int, at: str) -> list[str]:
    if isinstance(items, list) and len(items) > limit:
        return [f"must provide no more than {limit} items [json-pointer:{at}]"]
    return []


def _text(obj: Any, limit: int, at: str, *, plain_only: bool = False) -> list[str]:
    """A text object: plain_text or mrkdwn, not empty, at most `limit` characters."""
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return [f"must be a text object [json-pointer:{at}]"]
    kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if obj.get("type") not in kinds:
        return [f"must be one of {', '.join(kinds)} [json-pointer:{at}/type]"]
    if not obj["text"]:
        return [f"must be more than 0 characters [json-pointer:{at}/text]"]
    return _long(obj["text"], limit, f"{at}/text")


def _option(option: Any, at: str) -> list[str]:
    errors = _text(option.get("text"), 75, f"{at}/text")
    return errors + _long(option.get("value"), 150, f"{at}/value")


def _element(element: Any, at: str) -> list[str]:
    """An interactive element: button, selects, text input, date picker."""
    if not isinstance(element, dict):
        return [f"must be an object [json-pointer:{at}]"]
    errors = _long(element.get("action_id"), 255, f"{at}/action_id")
    kind = element.get("type")
    if kind == "button":
        errors += _text(element.get("text"), 75, f"{at}/text", plain_only=True)
        errors += _long(element.get("value"), 2000, f"{at}/value")
        errors += _long(element.get("url"), 3000, f"{at}/url")
    elif kind in ("static_select", "multi_static_select"):
        errors += _text(element.get("placeholder"), 150, f"{at}/placeholder", plain_only=True)
        options = element.get("options") or []
        if not options:
            errors.append(f"must provide at least 1 items [json-pointer:{at}/options]")
        errors += _many(options, 100, f"{at}/options")
        for n, option in enumerate(options):
            errors += _option(option, f"{at}/options/{n}")
    elif kind in ("plain_text_input", "datepicker"):
        if "placeholder" in element:
            errors += _text(element["placeholder"], 150, f"{at}/placeholder", plain_only=True)
        max_length = element.get("max_length")
        if isinstance(max_length, int) and max_length > 3000:
            errors.append(f"must be less than 3001 [json-pointer:{at}/max_length]")
    else:
        errors.append(f"unsupported element type {kind!r} [json-pointer:{at}/type]")
    return errors


def _section(block: dict[str, Any], at: str) -> list[str]:
    if "text" not in block and "fields" not in block:
        return [f"must provide text or fields [json-pointer:{at}]"]
    errors = _text(block["text"], 3000, f"{at}/text") if "text" in block else []
    fields = block.get("fields") or []
    errors += _many(fields, 10, f"{at}/fields")
    for n, field in enumerate(fields):
        errors += _text(field, 2000, f"{at}/fields/{n}")
    if "accessory" in block:
        errors += _element(block["accessory"], f"{at}/accessory")
    return errors


def _block(block: Any, at: str) -> list[str]:
    if not isinstance(block, dict):
        return [f"must be an object [json-pointer:{at}]"]
    errors = _long(block.get("block_id"), 255, f"{at}/block_id")
    kind = block.get("type")
    if kind == "section":
        errors += _section(block, at)
    elif kind == "header":
        errors += _text(block.get("text"), 150, f"{at}/text", plain_only=True)
    elif kind == "context":
        elements = block.get("elements") or []
        errors += _many(elements, 10, f"{at}/elements")
        for n, element in enumerate(elements):
            errors += _text(element, 3000, f"{at}/elements/{n}")
    elif kind == "actions":
        elements = block.get("elements") or []
        errors += _many(elements, 25, f"{at}/elements")
        for n, element in enumerate(elements):
            errors += _element(element, f"{at}/elements/{n}")
    elif kind == "input":
        errors += _text(block.get("label"), 2000, f"{at}/label", plain_only=True)
        if "hint" in block:
            errors += _text(block["hint"], 2000, f"{at}/hint", plain_only=True)
        errors += _element(block.get("element"), f"{at}/element")
    elif kind != "divider":
        errors.append(f"unsupported block type {kind!r} [json-pointer:{at}/type]")
    return errors


def block_errors(blocks: Any, *, limit: int = MESSAGE_BLOCKS, at: str = "/blocks") -> list[str]:
    """What Slack would refuse in `blocks` (empty when they are valid)."""
    if not isinstance(blocks, list):
        return [f"must be an array [json-pointer:{at}]"]
    errors = _many(blocks, limit, at)
    for n, block in enumerate(blocks):
        errors += _block(block, f"{at}/{n}")
    return errors


def view_errors(view: Any) -> list[str]:
    """What Slack would refuse in a modal or Home tab view."""
    if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        return ["must be a modal or home view [json-pointer:/view/type]"]
    errors = block_errors(view.get("blocks"), limit=VIEW_BLOCKS, at="/view/blocks")
    errors += _long(view.get("private_metadata"), 3000, "/view/private_metadata")
    errors += _long(view.get("callback_id"), 255, "/view/callback_id")
    if view["type"] == "modal":
        errors += _text(view.get("title"), 24, "/view/title", plain_only=True)
        for button in ("submit", "close"):
            if button in view:
                errors += _text(view[button], 24, f"/view/{button}", plain_only=True)
    return errors
