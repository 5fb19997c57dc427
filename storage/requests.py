"""Platform request ids already acted on, so a retry or a double click acts once."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from storage.models import (
    ProcessedRequest,
)
from storage.sql import add_once


def claim_request(session: Session, *, platform: str, request_id: str, now: datetime) -> bool:
    """Record a platform request id; False when it was already recorded."""
    if session.get(ProcessedRequest, (platform, request_id)) is not None:
        return False
    return add_once(session, ProcessedRequest(platform=platform, request_id=request_id, at=now))
