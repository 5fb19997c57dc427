"""JSON from outside, parsed with a bound on nesting: Python's parser recurses once per
level, so a body nested a thousand deep would end in a RecursionError (a 500) instead of
a clear refusal."""

from __future__ import annotations

import json
import re
from typing import Any

# A JSON string (skipped whole, so brackets inside it do not count) or a bracket.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def nesting_depth(text: str) -> int:
    """How deeply the arrays and objects of `text` nest (0 for a scalar); counted without
    recursion, in one pass over the brackets outside strings."""
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def loads_bounded(body: bytes | str, *, max_depth: int = 64) -> Any:
    """`json.loads` for untrusted bodies: UTF-8 JSON nested at most `max_depth` deep.

    Raises ValueError with a message fit for a 400 answer when the body is not UTF-8,
    nested deeper than `max_depth`, or not valid JSON.
    """
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError("the body is not UTF-8 text") from error
    else:
        text = body
    depth = nesting_depth(text)
    if depth > max_depth:
        raise ValueError(f"the JSON is nested {depth} deep; at most {max_depth} levels are taken")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"the body is not valid JSON ({error.msg} at {error.pos})") from error
    except ValueError as error:  # e.g. an integer of more than 4,300 digits
        raise ValueError(f"the body is not valid JSON ({error})") from error
