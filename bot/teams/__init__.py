"""The Microsoft Teams adapter, on the Microsoft 365 Agents SDK: Bot Framework activities in
through `/api/messages`, Adaptive Cards out through the connector.

- `route`: the endpoint (shape, token, tenant and service-URL checks, then the SDK's adapter)
- `auth`: the SDK's JWT validation in, MSAL tokens out, both with timeouts
- `adapter`: the SDK's aiohttp `CloudAdapter` set up for Liaison, conversation references
- `turns`: activities and Universal Actions → the neutral bot's `Interaction`s
- `messenger`: proactive sends, channel posts and in-place card updates
- `cards`: the neutral message model as Adaptive Cards; `trust`: pure rules (no SDK)

The names below are imported on first use: `bot.core.settings` needs only `trust`, and a process
that never touches Teams (the CLI, a Slack-only server) does not pay for importing the SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for type checkers (`X as X`: re-exported)
    from bot.teams.adapter import ConnectorError as ConnectorError
    from bot.teams.adapter import TeamsAdapter as TeamsAdapter
    from bot.teams.adapter import dump_reference as dump_reference
    from bot.teams.adapter import load_reference as load_reference
    from bot.teams.adapter import make_adapter as make_adapter
    from bot.teams.messenger import PLATFORM as PLATFORM
    from bot.teams.messenger import SERVICE_KEY as SERVICE_KEY
    from bot.teams.messenger import TeamsDirectory as TeamsDirectory
    from bot.teams.messenger import TeamsMessenger as TeamsMessenger
    from bot.teams.route import make_route as make_route
    from bot.teams.turns import LiaisonTeamsBot as LiaisonTeamsBot
    from bot.teams.turns import to_interaction as to_interaction

_HOMES = {
    "ConnectorError": "adapter",
    "TeamsAdapter": "adapter",
    "dump_reference": "adapter",
    "load_reference": "adapter",
    "make_adapter": "adapter",
    "PLATFORM": "messenger",
    "SERVICE_KEY": "messenger",
    "TeamsDirectory": "messenger",
    "TeamsMessenger": "messenger",
    "make_route": "route",
    "LiaisonTeamsBot": "turns",
    "to_interaction": "turns",
}

__all__ = [
    "PLATFORM",
    "SERVICE_KEY",
    "ConnectorError",
    "LiaisonTeamsBot",
    "TeamsAdapter",
    "TeamsDirectory",
    "TeamsMessenger",
    "dump_reference",
    "load_reference",
    "make_adapter",
    "make_route",
    "to_interaction",
]


def __getattr__(name: str) -> Any:
    """One of the names above, imported from its module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'bot.teams' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"bot.teams.{home}"), name)
    globals()[name] = value
    return value
