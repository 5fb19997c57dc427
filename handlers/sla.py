"""The SLA in force (`/sla`) and time away (`away until DATE`, `back`)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.core.effects import Effect, Reply
from bot.core.interaction import Interaction
from bot.core.messages import Card, Fact
from bot.core.router import Context, Router
from bot.core.text import text_for, when
from handlers.common import private
from storage import away as stored_away
from storage import policies
from storage.models import SlaPolicy

MAX_AWAY_DAYS = 365


class SalesTerms(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_touch_hours: float | None = Field(None, gt=0, le=24 * 30)
    attempts: int | None = Field(None, ge=1, le=50)
    attempts_days: float | None = Field(None, gt=0, le=90)
    verdict_hours: float | None = Field(None, gt=0, le=24 * 30)


class MarketingTerms(BaseModel):
    model_config = ConfigDict(extra="forbid")

    leads_per_week: int | None = Field(None, ge=0, le=1_000_000)
    acceptance_rate: float | None = Field(None, ge=0, le=1)
    info_answer_hours: float | None = Field(None, gt=0, le=24 * 30)

    @field_validator("acceptance_rate", mode="before")
    @classmethod
    def _percent(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().endswith("%"):
            return float(value.strip().rstrip("%")) / 100
        return value


class ReminderTerms(BaseModel):
    model_config = ConfigDict(extra="forbid")

    remind_share: float | None = Field(None, gt=0, lt=1)
    escalate_after_hours: float | None = Field(None, ge=0, le=24 * 30)


class SlaFile(BaseModel):
    """The YAML of `liaison sla set`: sales, marketing and reminders sections."""

    model_config = ConfigDict(extra="forbid")

    note: str = ""
    sales: SalesTerms = SalesTerms()
    marketing: MarketingTerms = MarketingTerms()
    reminders: ReminderTerms = ReminderTerms()

    def fields(self) -> dict[str, float | int]:
        """The values the file sets (the rest keep the version in force)."""
        merged = {
            **self.sales.model_dump(),
            **self.marketing.model_dump(),
            **self.reminders.model_dump(),
        }
        return {k: v for k, v in merged.items() if v is not None}


def register(router: Router) -> None:
    router.command("sla", show_policy, summary=text_for("help_sla"))
    router.command("away", go_away, summary=text_for("help_away"), usage="away until YYYY-MM-DD")
    router.command("back", come_back, summary=text_for("help_back"))


def policy_card(policy: SlaPolicy) -> Card:
    """Both sides' commitments, side by side, with the same weight."""
    return Card(
        title=text_for("sla_title", version=policy.version),
        text=text_for("sla_intro"),
        fields=(
            Fact(text_for("sla_sales"), text_for("sla_sales_terms", p=policy)),
            Fact(text_for("sla_marketing"), text_for("sla_marketing_terms", p=policy)),
            Fact(text_for("sla_reminders"), text_for("sla_reminder_terms", p=policy)),
        ),
        context=text_for(
            "sla_context", by=policy.created_by, at=when(policy.created_at), note=policy.note
        ),
    )


def show_policy(ctx: Context, interaction: Interaction) -> list[Effect]:
    return [Reply(policy_card(policies.current_policy(ctx.session)))]


def _parse_until(text: str) -> date | None:
    words = text.split()
    if len(words) == 2 and words[0].lower() == "until":
        words = words[1:]
    if len(words) != 1:
        return None
    try:
        return date.fromisoformat(words[0])
    except ValueError:
        return None


def go_away(ctx: Context, interaction: Interaction) -> list[Effect]:
    """`away until 2026-12-02`: away from now until the start of that day, local time."""
    back_on = _parse_until(interaction.text)
    if back_on is None:
        return private(text_for("away_usage"))
    tz = ZoneInfo(interaction.actor.timezone or ctx.company.tz)
    until = datetime.combine(back_on, datetime.min.time(), tzinfo=tz)
    if until <= ctx.now:
        return private(text_for("away_in_the_past", day=back_on.isoformat()))
    if until - ctx.now > timedelta(days=MAX_AWAY_DAYS):
        return private(text_for("away_too_long", days=MAX_AWAY_DAYS))
    stored_away.set_away(ctx.session, member_id=interaction.actor.id or 0, until=until, now=ctx.now)
    return private(text_for("away_set", day=back_on.strftime("%a %d %b %Y")))


def come_back(ctx: Context, interaction: Interaction) -> list[Effect]:
    if stored_away.end_away(ctx.session, member_id=interaction.actor.id or 0, now=ctx.now):
        return private(text_for("welcome_back"))
    return private(text_for("not_away"))
