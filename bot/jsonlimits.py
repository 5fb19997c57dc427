"""JSON from outside, parsed within limits: a bad body is a `JsonRefused` naming the problem
(for a 400), never a RecursionError, an overflow or a number no database can store."""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64


class JsonRefused(ValueError):
    """The body is not JSON Liaison accepts; the message says why, for the sender."""


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JsonRefused(f"the number {text[:20]} is out of range")
    return number


def _no_constants(text: str) -> Any:
    raise JsonRefused(f"{text} is not a JSON number")


def depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed value (a scalar is 0), without
    recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def loads_bounded(body: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, refusing with `JsonRefused` what is not UTF-8 JSON, nests deeper than
    `max_depth`, or holds a number out of range (NaN, ±Infinity, 1e999, 5,000 digits)."""
    try:
        value = json.loads(body, parse_float=_finite, parse_constant=_no_constants)
    except RecursionError:
        raise JsonRefused(f"JSON nested deeper than {max_depth} levels") from None
    except JsonRefused:
        raise
    except json.JSONDecodeError as error:
        raise JsonRefused(f"body is not valid JSON: {error.msg} at position {error.pos}") from None
    except UnicodeDecodeError:
        raise JsonRefused("body is not valid JSON: not UTF-8 text") from None
    except ValueError:  # an integer of more digits than Python converts (sys.int_info)
        raise JsonRefused("body holds a number out of range") from None
    if depth(value) > max_depth:
        raise JsonRefused(f"JSON nested deeper than {max_depth} levels")
    return value
