"""sla policies business time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:49:22.739461
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "holidays",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    op.create_table(
        "sla_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_touch_hours", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attempts_days", sa.Float(), nullable=False),
        sa.Column("verdict_hours", sa.Float(), nullable=False),
        sa.Column("leads_per_week", sa.Integer(), nullable=False),
        sa.Column("acceptance_rate", sa.Float(), nullable=False),
        sa.Column("info_answer_hours", sa.Float(), nullable=False),
        sa.Column("remind_share", sa.Float(), nullable=False),
        sa.Column("escalate_after_hours", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sla_policies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sla_policies_version"), ["version"], unique=True)

    op.create_table(
        "away",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("away", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_away_member_id"), ["member_id"], unique=False)

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("work_start", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("work_end", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("workdays", sa.String(), nullable=True))

    seed_default_policy()


def seed_default_policy() -> None:
    """A fresh database starts with SLA version 1: the defaults of each column."""
    policies = sa.table(
        "sla_policies",
        *(sa.column(name) for name in DEFAULT_POLICY),
    )
    op.bulk_insert(policies, [dict(DEFAULT_POLICY, created_at=datetime.now(UTC))])


DEFAULT_POLICY = {
    "version": 1,
    "note": "Default SLA",
    "created_by": "system",
    "created_at": None,
    "first_touch_hours": 4.0,
    "attempts": 5,
    "attempts_days": 10.0,
    "verdict_hours": 24.0,
    "leads_per_week": 40,
    "acceptance_rate": 0.6,
    "info_answer_hours": 4.0,
    "remind_share": 0.75,
    "escalate_after_hours": 4.0,
}


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("workdays")
        batch_op.drop_column("work_end")
        batch_op.drop_column("work_start")

    with op.batch_alter_table("away", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_away_member_id"))

    op.drop_table("away")
    with op.batch_alter_table("sla_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sla_policies_version"))

    op.drop_table("sla_policies")
    op.drop_table("holidays")
