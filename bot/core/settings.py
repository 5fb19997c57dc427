"""The one typed settings object, read once from the environment (and an optional .env)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core.business_time import Company, Schedule, parse_hours, parse_workdays

CHANNEL_KINDS = ("digest", "wins", "insights", "handoff", "admin")  # where Liaison posts

APP_TYPES = ("SingleTenant", "MultiTenant", "UserAssignedMSI")


class TeamsMode(StrEnum):
    """How `/api/messages` is served: not at all, without authentication, or with it."""

    off = "off"
    emulator = "emulator"
    authenticated = "authenticated"


def teams_mode(*, app_id: str, emulator: bool) -> TeamsMode:
    """An app id always means authentication; no app id means off unless emulator mode is
    asked for explicitly (an empty credential never turns authentication off by itself)."""
    if app_id.strip():
        return TeamsMode.authenticated
    return TeamsMode.emulator if emulator else TeamsMode.off


class Settings(BaseSettings):
    """Every knob an operator can turn; names are the ones in CONTRACT.md."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field("sqlite:///./liaison.db", alias="LIAISON_DATABASE_URL")
    webhook_secret: SecretStr | None = Field(None, alias="LIAISON_WEBHOOK_SECRET")
    slack_bot_token: SecretStr | None = Field(None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field("https://slack.com/api/", alias="SLACK_API_URL")
    microsoft_app_id: str = Field("", alias="MICROSOFT_APP_ID")
    microsoft_app_password: SecretStr = Field(SecretStr(""), alias="MICROSOFT_APP_PASSWORD")
    microsoft_app_tenant_id: str = Field("", alias="MICROSOFT_APP_TENANT_ID")
    microsoft_app_type: str = Field("SingleTenant", alias="MICROSOFT_APP_TYPE")
    teams_emulator: bool = Field(False, alias="LIAISON_TEAMS_EMULATOR")
    teams_service_hosts: str = Field("", alias="LIAISON_TEAMS_SERVICE_HOSTS")
    teams_auth_url: str = Field("", alias="LIAISON_TEAMS_AUTH_URL")
    # Credentials other than MICROSOFT_APP_PASSWORD (see README, "Teams credentials").
    teams_certificate_file: str = Field("", alias="LIAISON_TEAMS_CERTIFICATE_FILE")
    teams_certificate_send_x5c: bool = Field(False, alias="LIAISON_TEAMS_CERTIFICATE_SEND_X5C")
    teams_federated_client_id: str = Field("", alias="LIAISON_TEAMS_FEDERATED_CLIENT_ID")
    teams_federated_token_file: str = Field("", alias="LIAISON_TEAMS_FEDERATED_TOKEN_FILE")
    digest_channel: str | None = Field(None, alias="LIAISON_DIGEST_CHANNEL")
    wins_channel: str | None = Field(None, alias="LIAISON_WINS_CHANNEL")
    insights_channel: str | None = Field(None, alias="LIAISON_INSIGHTS_CHANNEL")
    handoff_channel: str | None = Field(None, alias="LIAISON_HANDOFF_CHANNEL")
    admin_channel: str | None = Field(None, alias="LIAISON_ADMIN_CHANNEL")
    timezone: str = Field("UTC", alias="LIAISON_TIMEZONE")
    work_hours: str = Field("09:00-17:00", alias="LIAISON_WORK_HOURS")
    workdays: str = Field("mon-fri", alias="LIAISON_WORKDAYS")
    digest_at: str = Field("mon 08:30", alias="LIAISON_DIGEST_AT")
    tick_seconds: float = Field(5.0, gt=0, alias="LIAISON_TICK_SECONDS")
    outbox_lease_seconds: float = Field(60.0, gt=0, alias="LIAISON_OUTBOX_LEASE_SECONDS")
    # An owner lookup (Slack users.lookupByEmail) that takes longer failed: retried later.
    lookup_timeout_seconds: float = Field(5.0, gt=0, alias="LIAISON_LOOKUP_TIMEOUT_SECONDS")
    platform_timeout_seconds: float = Field(20.0, gt=0, alias="LIAISON_PLATFORM_TIMEOUT_SECONDS")
    # Lead ingestion's own threads, apart from those Slack clicks and Teams activities use.
    ingest_threads: int = Field(2, ge=1, le=64, alias="LIAISON_INGEST_THREADS")
    # Leads queued behind the webhook (being stored, or waiting for their owner's lookup)
    # before it answers 429 with Retry-After.
    ingest_queue_limit: int = Field(20_000, ge=1, alias="LIAISON_INGEST_QUEUE_LIMIT")

    # Log lines as text (for a person at a terminal) or one JSON object a line (for a pipeline).
    log_format: Literal["text", "json"] = Field("text", alias="LIAISON_LOG_FORMAT")

    @field_validator("database_url")
    @classmethod
    def _database_kind(cls, value: str) -> str:
        scheme, colon, rest = value.partition(":")
        if scheme.lower() in ("postgresql", "postgres"):  # the driver Liaison ships with
            return f"postgresql+psycopg:{rest}"
        if not colon or scheme.lower() not in ("sqlite", "postgresql+psycopg"):
            raise ValueError(
                "Liaison runs on SQLite (sqlite:///liaison.db) or PostgreSQL "
                f"(postgresql://user@host/db), not {scheme!r}"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Berlin)") from None
        return value

    @field_validator("microsoft_app_type")
    @classmethod
    def _app_type(cls, value: str) -> str:
        known = {t.lower(): t for t in APP_TYPES}
        if value.strip().lower() not in known:
            raise ValueError(f"MICROSOFT_APP_TYPE is one of {', '.join(APP_TYPES)}, not {value!r}")
        return known[value.strip().lower()]

    @field_validator("digest_at")
    @classmethod
    def _digest_at(cls, value: str) -> str:
        Schedule.parse(value, "UTC")
        return value

    @field_validator("work_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @field_validator("workdays")
    @classmethod
    def _days(cls, value: str) -> str:
        parse_workdays(value)
        return value

    @property
    def company(self) -> Company:
        """The company's default time zone and working week (members may override)."""
        start, end = parse_hours(self.work_hours)
        return Company(self.timezone, start, end, parse_workdays(self.workdays))

    @property
    def call_timeout(self) -> float:
        """Seconds any Slack or Teams call may take: the setting, but at most half the outbox
        lease, so a send always ends (or is known unfinished) while its lease holds."""
        return min(self.platform_timeout_seconds, self.outbox_lease_seconds / 2)

    @property
    def slack_enabled(self) -> bool:
        """Slack is on when a bot token is configured."""
        return self.slack_bot_token is not None and bool(self.slack_bot_token.get_secret_value())

    @property
    def teams_mode(self) -> TeamsMode:
        """Teams is authenticated with an app id, unauthenticated only when emulator mode is
        asked for explicitly, else off (no `/api/messages`)."""
        return teams_mode(app_id=self.microsoft_app_id, emulator=self.teams_emulator)

    def teams_credentials_problem(self) -> str | None:
        """Why the Teams credentials cannot authenticate anything (one line), or None."""
        kind = self.microsoft_app_type
        if self.teams_mode is not TeamsMode.authenticated:
            return None
        others = (
            self.teams_certificate_file,
            self.teams_federated_client_id,
            self.teams_federated_token_file,
        )
        secret = self.microsoft_app_password.get_secret_value()
        if kind != "UserAssignedMSI" and not secret and not any(others):
            return (
                f"MICROSOFT_APP_PASSWORD (or LIAISON_TEAMS_CERTIFICATE_FILE, "
                f"LIAISON_TEAMS_FEDERATED_CLIENT_ID, LIAISON_TEAMS_FEDERATED_TOKEN_FILE) "
                f"is needed with MICROSOFT_APP_ID ({kind} bot)"
            )
        if not self.microsoft_app_tenant_id and kind in ("SingleTenant", "UserAssignedMSI"):
            return f"MICROSOFT_APP_TENANT_ID is needed for a {kind} bot (see MICROSOFT_APP_TYPE)"
        return None

    @property
    def extra_service_hosts(self) -> frozenset[str]:
        """`LIAISON_TEAMS_SERVICE_HOSTS`: more connector hosts to accept besides Microsoft's."""
        return frozenset(
            h.strip().lower() for h in self.teams_service_hosts.split(",") if h.strip()
        )

    def channels(self) -> dict[str, str]:
        """The default channel of each kind that has one."""
        return {kind: target for kind in CHANNEL_KINDS if (target := self.default_channel(kind))}

    def default_channel(self, kind: str) -> str | None:
        """The `LIAISON_<KIND>_CHANNEL` default for a channel kind."""
        value: str | None = getattr(self, f"{kind}_channel", None)
        return value
