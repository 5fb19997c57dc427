"""`POST /api/leads`: the signed lead-ingestion webhook (see CONTRACT.md)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.core.jsonlimits import JsonRefused, loads_bounded
from bot.core.settings import Settings
from bot.core.tasks import Background
from handlers.ingest import Ingestor

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 300
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_LEADS = 1000  # per body
# A list of leads, a lead, an attribute value nested within: deeper is not a lead.
MAX_DEPTH = 20
UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
# What a sender refused for load is told to wait: the queue drains ~1,000 leads a second.
RETRY_AFTER_SECONDS = 5


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` over `v1:<timestamp>:<body>`, as senders must compute it."""
    message = b"v1:" + timestamp.encode() + b":" + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def error(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def verify(
    settings: Settings, request: web.Request, body: bytes, now: float
) -> web.Response | None:
    """None when the request is authentic, else the 4xx/503 answer."""
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        return error(503, "lead ingestion is not configured: set LIAISON_WEBHOOK_SECRET")
    timestamp = request.headers.get("X-Liaison-Timestamp", "")
    given = request.headers.get("X-Liaison-Signature", "")
    if not timestamp or not given:
        return error(401, "missing X-Liaison-Signature or X-Liaison-Timestamp header")
    if not UNIX_SECONDS.fullmatch(timestamp):
        return error(401, "X-Liaison-Timestamp is not unix seconds (digits only)")
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        return error(401, "X-Liaison-Timestamp is not within 5 minutes of now")
    expected = signature(settings.webhook_secret.get_secret_value(), timestamp, body)
    if not hmac.compare_digest(expected, given):
        return error(401, "signature does not match the body")
    return None


async def read_bounded(request: web.Request) -> bytes | None:
    """The body, or None once it grows past MAX_BODY_BYTES (with or without a length)."""
    if request.content_length and request.content_length > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def parse(body: bytes) -> list[Any] | web.Response:
    """The leads in an authentic body, or the 400/413 answer saying what is wrong."""
    try:
        payload = loads_bounded(body, max_depth=MAX_DEPTH)
    except JsonRefused as refused:
        return error(400, str(refused))
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        return error(400, "no leads in the body")
    if len(items) > MAX_LEADS:
        return error(413, f"more than {MAX_LEADS} leads in one body; send them in batches")
    return items


def busy(ingestor: Ingestor) -> web.Response:
    """429 with `Retry-After`: the work queued behind the webhook is at its limit, and the
    batch was not taken in (nothing stored); sent again later, it is stored once."""
    return error(
        429,
        f"too many leads waiting to be stored or routed ({ingestor.queued} queued, at most "
        f"{ingestor.queue_limit}); nothing was stored, send the batch again in "
        f"{RETRY_AFTER_SECONDS} s",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def make_handler(settings: Settings, ingestor: Ingestor, background: Background) -> Any:
    async def receive(request: web.Request) -> web.Response:
        body = await read_bounded(request)
        if body is None:
            return error(413, f"body over {MAX_BODY_BYTES} bytes")
        refused = verify(settings, request, body, time.time())
        if refused is not None:
            return refused
        items = parse(body)
        if isinstance(items, web.Response):
            return items
        if not ingestor.admit(len(items)):
            return busy(ingestor)
        now = datetime.now(UTC)
        accepted = await ingestor.accept(items, now=now)
        if isinstance(accepted, list):
            details = [{"index": p.index, "field": p.field, "message": p.message} for p in accepted]
            return error(422, "some leads are invalid; none were stored", details=details)
        await ingestor.deliverer.deliver(accepted.effects, None)  # wakes the sender
        ingestor.resolve_later(background, accepted)  # owners nobody knew: looked up now
        outcomes = accepted.outcomes
        log.info(
            "ingested %d leads (%d new, %d waiting for their owner)",
            len(outcomes),
            sum(o.status == "created" for o in outcomes),
            sum(o.routing for o in outcomes),
        )
        return web.json_response(
            {
                "leads": [
                    {
                        "id": o.lead_id,
                        "external_id": o.external_id,
                        "source": o.source,
                        "status": o.status,
                        "owner_email": o.owner,
                    }
                    for o in outcomes
                ]
            }
        )

    return receive
