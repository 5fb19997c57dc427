"""Form answers shared by insights, wins and content: a campaign picked from a list (or
typed, in Teams and the console), comma-separated tags and web links."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from sqlmodel import Session

from bot.core.messages import Option
from bot.core.text import text_for
from storage import campaigns
from storage.models import Campaign

SELECT_LIMIT = 100  # Slack's static_select takes at most 100 options
TAG_LIMIT = 10
TAG_LENGTH = 40
LINK_LIMIT = 2000


def campaign_options(session: Session) -> tuple[Option, ...]:
    return tuple(Option(str(c.id), c.name) for c in campaigns.all_campaigns(session)[:SELECT_LIMIT])


def campaign_choice(session: Session, raw: str) -> Campaign | str | None:
    """The campaign picked (its id) or typed (its name, any case); None when nothing was
    given; the reason, as text, when no such campaign exists."""
    raw = raw.strip()
    if not raw:
        return None
    if raw.isdigit():
        found = session.get(Campaign, int(raw))
        if found is not None:
            return found
    for campaign in campaigns.all_campaigns(session):
        if campaign.name.casefold() == raw.casefold():
            return campaign
    known = [c.name for c in campaigns.all_campaigns(session)[:10]]
    return text_for("choice_unknown_campaign", name=raw, known=known)


def tags_of(raw: str) -> list[str] | str:
    """Comma-separated tags, trimmed and de-duplicated (any case), or why they are refused."""
    tags: list[str] = []
    for part in raw.split(","):
        tag = " ".join(part.split())
        if tag and tag.casefold() not in (t.casefold() for t in tags):
            tags.append(tag)
    if len(tags) > TAG_LIMIT:
        return text_for("choice_too_many_tags", limit=TAG_LIMIT, count=len(tags))
    long = next((t for t in tags if len(t) > TAG_LENGTH), None)
    if long is not None:
        return text_for("choice_tag_too_long", tag=long[:TAG_LENGTH] + "…", limit=TAG_LENGTH)
    return tags


def web_link(raw: str) -> str:
    """An http(s) link in one normal form (scheme and host in lower case, no trailing slash
    on the path), so the same page registered twice is recognised; "" when `raw` is not one."""
    raw = raw.strip()
    if not raw or len(raw) > LINK_LIMIT or any(c.isspace() for c in raw) or not raw.isprintable():
        return ""
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or port == 0:
        return ""
    if "@" in parts.netloc:
        return ""  # credentials in a link are never meant to be shared
    path = parts.path.rstrip("/")
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), path, parts.query, parts.fragment)
    )
