"""JSON from outside, parsed within limits: a bad body is a `JsonRefused` naming the problem
(for a 400), never a RecursionError, an overflow or a number no database can store.

Python's parser recurses once per level, so the nesting is counted first, without recursion,
in one pass over the brackets outside strings."""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64

# A JSON string (skipped whole, so brackets inside it do not count) or a bracket.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class JsonRefused(ValueError):
    """The body is not JSON Liaison accepts; the message says why, for the sender."""


def nesting_depth(text: str) -> int:
    """How deeply the arrays and objects of `text` nest (0 for a scalar)."""
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JsonRefused(f"the number {text[:20]} is out of range")
    return number


def _no_constants(text: str) -> Any:
    raise JsonRefused(f"{text} is not a JSON number")


def loads_bounded(body: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, refusing with `JsonRefused` what is not UTF-8 JSON, nests deeper than
    `max_depth`, or holds a number out of range (NaN, ±Infinity, 1e999, 5,000 digits)."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise JsonRefused("the body is not valid JSON: not UTF-8 text") from None
    else:
        text = body
    # Parsed first (C, guarded against recursion), the depth measured on what it gave: a
    # tenth of the cost of scanning the text. The text is scanned only when parsing fails,
    # so a body both too deep and otherwise wrong is still refused for its depth.
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constants)
    except (ValueError, RecursionError) as error:  # JsonRefused and JSONDecodeError too
        _refuse_deep(nesting_depth(text), max_depth)
        if isinstance(error, JsonRefused):
            raise
        if isinstance(error, json.JSONDecodeError):
            raise JsonRefused(
                f"the body is not valid JSON: {error.msg} at position {error.pos}"
            ) from None
        # more digits than Python converts (sys.int_info)
        raise JsonRefused("the body is not valid JSON: a number is out of range") from None
    _refuse_deep(value_depth(value), max_depth)
    return value


def value_depth(value: Any) -> int:
    """How deeply the lists and dicts of a parsed JSON value nest (0 for a scalar): the
    `nesting_depth` of the text it was parsed from."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, (list, dict)) else []
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (list, dict)):
                stack.append((child, depth + 1))
    return deepest


def _refuse_deep(depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise JsonRefused(
            f"the JSON is nested {depth} deep: nested deeper than {max_depth} levels "
            f"(at most {max_depth} are taken)"
        )
