"""Button values are small query strings (`lead_id=5`); every adapter decodes them the same way."""

from __future__ import annotations

from urllib.parse import parse_qsl


def decode(value: str) -> dict[str, str]:
    """`lead_id=5&x=y` → {"lead_id": "5", "x": "y"}; anything else → {"value": value}."""
    pairs = parse_qsl(value, keep_blank_values=True)
    return dict(pairs) if pairs else ({"value": value} if value else {})
