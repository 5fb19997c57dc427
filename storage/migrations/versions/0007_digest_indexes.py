"""indexes for the weekly digest at a million leads: the figures of a week read narrow,
covering indexes instead of the tables (measured by bench/digest.py)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lead_events") as batch:
        batch.drop_index("ix_lead_events_kind")
        batch.create_index("ix_lead_events_kind_at", ["kind", "at", "lead_id"])
    with op.batch_alter_table("leads") as batch:
        batch.drop_index("ix_leads_verdict_at")
        batch.create_index("ix_leads_verdict_at_state", ["verdict_at", "state", "campaign_id"])
        batch.create_index("ix_leads_handed_off_at", ["handed_off_at"])
        batch.create_index("ix_leads_first_touch_at", ["first_touch_at"])
    with op.batch_alter_table("sla_clocks") as batch:
        batch.drop_index("ix_sla_clocks_kind_closed_at")
        batch.create_index(
            "ix_sla_clocks_kind_closed_at",
            ["kind", "closed_at", "outcome", "business_seconds", "lead_id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("sla_clocks") as batch:
        batch.drop_index("ix_sla_clocks_kind_closed_at")
        batch.create_index("ix_sla_clocks_kind_closed_at", ["kind", "closed_at"])
    with op.batch_alter_table("leads") as batch:
        batch.drop_index("ix_leads_first_touch_at")
        batch.drop_index("ix_leads_handed_off_at")
        batch.drop_index("ix_leads_verdict_at_state")
        batch.create_index("ix_leads_verdict_at", ["verdict_at"])
    with op.batch_alter_table("lead_events") as batch:
        batch.drop_index("ix_lead_events_kind_at")
        batch.create_index("ix_lead_events_kind", ["kind"])
