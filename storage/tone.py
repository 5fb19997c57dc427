"""The tone check's rules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select

from storage.models import (
    ToneRule,
)


def tone_rules(session: Session) -> Sequence[ToneRule]:
    """Longest phrases first, so the most specific match is the one named."""
    rules = session.exec(select(ToneRule)).all()
    return sorted(rules, key=lambda r: (-len(r.phrase), r.phrase))


def add_tone_rule(
    session: Session, *, phrase: str, kind: str, suggestion: str, created_by: str, now: datetime
) -> ToneRule:
    """Add a phrase, or update the kind and suggestion of a phrase already listed."""
    same = func.lower(ToneRule.phrase) == phrase.lower()
    rule = session.exec(select(ToneRule).where(same)).first()
    if rule is None:
        rule = ToneRule(phrase=phrase, created_at=now)
    rule.kind, rule.suggestion, rule.created_by = kind, suggestion, created_by
    session.add(rule)
    session.flush()
    return rule


def remove_tone_rule(session: Session, *, phrase: str) -> bool:
    rule = session.exec(
        select(ToneRule).where(func.lower(ToneRule.phrase) == " ".join(phrase.split()).lower())
    ).first()
    if rule is None:
        return False
    session.delete(rule)
    return True
