"""The channels Liaison posts to, and the company's settings."""

from __future__ import annotations

from sqlmodel import Session

from storage.models import (
    ChannelSetting,
    CompanySetting,
)


def channel_target(session: Session, *, kind: str) -> str | None:
    setting = session.get(ChannelSetting, kind)
    return setting.target if setting else None


def set_channel(session: Session, *, kind: str, target: str) -> None:
    setting = session.get(ChannelSetting, kind) or ChannelSetting(kind=kind, target=target)
    setting.target = target
    session.add(setting)


def get_setting(session: Session, *, key: str) -> str | None:
    setting = session.get(CompanySetting, key)
    return setting.value if setting else None


def set_setting(session: Session, *, key: str, value: str) -> None:
    setting = session.get(CompanySetting, key) or CompanySetting(key=key, value=value)
    setting.value = value
    session.add(setting)
