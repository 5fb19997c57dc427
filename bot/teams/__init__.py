"""The Microsoft Teams adapter, on the Microsoft 365 Agents SDK: Bot Framework activities in
through `/api/messages`, Adaptive Cards out through the connector.

- `route`: the endpoint (shape, token, tenant and service-URL checks, then the SDK's adapter)
- `auth`: the SDK's JWT validation in, MSAL tokens out, both with timeouts
- `adapter`: the SDK's aiohttp `CloudAdapter` set up for Liaison, conversation references
- `turns`: activities → the neutral bot's `Interaction`s; members remembered
- `messenger`: proactive sends, channel posts and in-place card updates
- `cards`: the neutral message model as Adaptive Cards; `trust`: pure rules (no SDK)
"""

from bot.teams.adapter import (
    ConnectorError,
    TeamsAdapter,
    dump_reference,
    load_reference,
    make_adapter,
)
from bot.teams.messenger import PLATFORM, SERVICE_KEY, TeamsDirectory, TeamsMessenger
from bot.teams.route import make_route
from bot.teams.turns import LiaisonTeamsBot, to_interaction

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
