"""Every sentence a person reads comes from a Jinja2 template in `bot/core/templates/`.

Templates produce plain text; the platform renderers escape it. `text_for("name", ...)`
calls the macro `name`, from whichever template file defines it.
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


def percent(share: float) -> str:
    """0.734 → `73%`."""
    return f"{round(share * 100)}%"


def hours(value: float) -> str:
    """1.5 → `1.5 h`, 4.0 → `4 h`, 0.25 → `15 min`."""
    if value < 1:
        return f"{round(value * 60)} min"
    return f"{value:.1f}".rstrip("0").rstrip(".") + " h"


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
    env.filters["pct"] = percent
    env.filters["hours"] = hours
    return env


@cache
def macros() -> dict[str, Any]:
    """Every macro of every template file in `bot/core/templates/`, by name (one file per
    capability: messages.j2, feedback.j2, approvals.j2, …); a name may be defined once."""
    found: dict[str, Any] = {}
    for path in sorted(TEMPLATES.glob("*.j2")):
        module = environment().get_template(path.name).module
        for name in dir(module):
            if name.startswith("_"):
                continue
            if name in found:
                raise LookupError(f"macro {name} is defined twice (again in {path.name})")
            found[name] = getattr(module, name)
    return found


def text_for(name: str, /, **params: Any) -> str:
    """Render the macro `name` (from any template file) with `params`, stripped."""
    if not params:
        return _text_once(name)
    return str(macros()[name](**params)).strip()


@cache
def _text_once(name: str) -> str:
    """A macro without parameters, rendered once: a label such as `label_company` is
    asked for on every card, and its text cannot change while the process runs."""
    return str(macros()[name]()).strip()


def render(template: str, /, **params: Any) -> str:
    """Render a whole template file (long texts such as help)."""
    return environment().get_template(template).render(**params).strip()
