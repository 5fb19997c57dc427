"""Every sentence a person reads comes from a Jinja2 template in `bot/templates/`.

Templates produce plain text; the platform renderers escape it. `say("name", ...)`
calls the macro `name` of `messages.j2`.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).parent / "templates"


def when(moment: datetime, tz: str | None = None) -> str:
    """`Mon 23 Nov 14:02 UTC`, in the given time zone."""
    zone = ZoneInfo(tz or "UTC")
    local = moment.astimezone(zone)
    return local.strftime("%a %d %b %H:%M ") + (local.tzname() or tz or "UTC")


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=False,  # plain text: each renderer escapes for its platform
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["when"] = when
    return env


def say(name: str, /, **params: Any) -> str:
    """Render macro `name` from messages.j2 with `params`, stripped."""
    module = environment().get_template("messages.j2").module
    macro = getattr(module, name)
    return str(macro(**params)).strip()


def render(template: str, /, **params: Any) -> str:
    """Render a whole template file (long texts such as help)."""
    return environment().get_template(template).render(**params).strip()
