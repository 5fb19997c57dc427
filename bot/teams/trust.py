"""Whom a Teams activity may speak for and where Liaison may call back: pure rules.

These functions know nothing of the Teams SDK (they take plain strings and the activity's
JSON), so they stay the same whichever SDK carries the activities.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

from bot.core.settings import TeamsMode

# The connector hosts Microsoft's clouds hand bots as `serviceUrl` (public, GCC, GCC High,
# DoD, China), as the Teams SDK's service URL validation lists them, plus Bot Framework's.
MICROSOFT_SERVICE_HOSTS = frozenset(
    {
        "smba.trafficmanager.net",
        "smba.onyx.prod.teams.trafficmanager.net",
        "smba.infra.gcc.teams.microsoft.com",
        "smba.infra.gov.teams.microsoft.us",
        "smba.infra.dod.teams.microsoft.us",
        "frontend.botapi.msg.infra.teams.microsoftonline.cn",
    }
)
MICROSOFT_SERVICE_SUFFIXES = (".botframework.com", ".botframework.us")


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1 (brackets allowed)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def emulator_bind_problem(mode: TeamsMode, host: str) -> str | None:
    """Why `liaison serve --host host` must not start in this Teams mode, or None."""
    if mode is TeamsMode.emulator and not is_loopback(host):
        return (
            f"LIAISON_TEAMS_EMULATOR=1 accepts unauthenticated Teams activities, so serve "
            f"binds only to loopback (127.0.0.1, ::1, localhost), not {host}"
        )
    return None


def service_url_problem(
    url: str, *, mode: TeamsMode, extra_hosts: Collection[str] = ()
) -> str | None:
    """Why Liaison must not call `url` back (None when it may).

    Emulator mode takes loopback connectors only. With credentials, only Microsoft's
    connector hosts over HTTPS, plus the hosts (`host` or `host:port`) named in
    `extra_hosts` (`LIAISON_TEAMS_SERVICE_HOSTS`, for private clouds and tests).
    """
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "the serviceUrl is not a URL"
    if parts.scheme not in ("http", "https") or not host:
        return "the serviceUrl is not an http(s) URL"
    if mode is TeamsMode.emulator:
        return None if is_loopback(host) else "emulator mode accepts only a loopback serviceUrl"
    if mode is not TeamsMode.authenticated:
        return "Teams is not configured"
    if host in extra_hosts or (port is not None and f"{host}:{port}" in extra_hosts):
        return None
    microsoft = host in MICROSOFT_SERVICE_HOSTS or host.endswith(MICROSOFT_SERVICE_SUFFIXES)
    if microsoft and parts.scheme == "https":
        return None
    return "the serviceUrl is not one of Microsoft's connector hosts"


def activity_tenants(body: Mapping[str, Any]) -> set[str]:
    """The tenant ids an activity names (`conversation.tenantId`, `channelData.tenant.id`)."""
    conversation = body.get("conversation")
    channel_data = body.get("channelData")
    tenant = channel_data.get("tenant") if isinstance(channel_data, dict) else None
    found = {
        conversation.get("tenantId") if isinstance(conversation, dict) else None,
        tenant.get("id") if isinstance(tenant, dict) else None,
    }
    return {t.strip().lower() for t in found if isinstance(t, str) and t.strip()}


def tenant_problem(body: Mapping[str, Any], configured: str) -> str | None:
    """Why the activity is not from the configured tenant (None when no tenant is set or it
    names exactly that one)."""
    if not configured.strip():
        return None
    if activity_tenants(body) != {configured.strip().lower()}:
        return "the activity does not come from this company's Microsoft 365 tenant"
    return None


def same_host(one: str, other: str) -> bool:
    """Whether two URLs name the same host (a token's `serviceurl` claim and the activity's)."""
    try:
        first, second = urlsplit(one).hostname, urlsplit(other).hostname
    except ValueError:
        return False
    return bool(first) and (first or "").lower() == (second or "").lower()
