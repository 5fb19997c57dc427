"""`POST /api/leads`: the signed lead-ingestion webhook (see CONTRACT.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.settings import Settings
from bot.tasks import Background
from handlers.ingest import Ingestor, validate

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 300
MAX_BODY_BYTES = 5 * 1024 * 1024


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` over `v1:<timestamp>:<body>`, as senders must compute it."""
    message = b"v1:" + timestamp.encode() + b":" + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


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
    if not timestamp.isdigit() or abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        return error(401, "X-Liaison-Timestamp is not within 5 minutes of now")
    expected = signature(settings.webhook_secret.get_secret_value(), timestamp, body)
    if not hmac.compare_digest(expected, given):
        return error(401, "signature does not match the body")
    return None


def make_handler(settings: Settings, ingestor: Ingestor, background: Background) -> Any:
    async def receive(request: web.Request) -> web.Response:
        if request.content_length and request.content_length > MAX_BODY_BYTES:
            return error(413, f"body over {MAX_BODY_BYTES} bytes")
        body = await request.read()
        refused = verify(settings, request, body, time.time())
        if refused is not None:
            return refused
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "body is not valid JSON")
        items = payload if isinstance(payload, list) else [payload]
        if not items:
            return error(400, "no leads in the body")
        good, problems = validate(items)
        if problems:
            details = [{"index": p.index, "field": p.field, "message": p.message} for p in problems]
            return error(422, "some leads are invalid; none were stored", details=details)
        outcomes, effects = await ingestor.store_and_resolve(good, now=datetime.now(UTC))
        await ingestor.deliverer.deliver(effects, None)  # wakes the sender: cards are owed
        log.info(
            "ingested %d leads (%d new)",
            len(outcomes),
            sum(o.status == "created" for o in outcomes),
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
