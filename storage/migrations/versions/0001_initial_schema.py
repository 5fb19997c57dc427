"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 14:11:23.480573
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from datetime import UTC, datetime

from alembic import op


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("kind"),
    )
    op.create_table(
        "lead_definitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lead_definitions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lead_definitions_version"), ["version"], unique=True)

    op.create_table(
        "members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("handle", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("team", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("manager_id", sa.Integer(), nullable=True),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("slack_user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("slack_dm_channel", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("teams_user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("teams_reference", sa.JSON(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["manager_id"],
            ["members.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_members_email"), ["email"], unique=True)
        batch_op.create_index(batch_op.f("ix_members_handle"), ["handle"], unique=True)
        batch_op.create_index(
            batch_op.f("ix_members_slack_user_id"), ["slack_user_id"], unique=True
        )
        batch_op.create_index(
            batch_op.f("ix_members_teams_user_id"), ["teams_user_id"], unique=True
        )

    op.create_table(
        "processed_requests",
        sa.Column("platform", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("platform", "request_id"),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("marketer_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["marketer_id"],
            ["members.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_campaigns_name"), ["name"], unique=True)

    op.create_table(
        "criteria",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("definition_id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["lead_definitions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("definition_id", "key"),
    )
    with op.batch_alter_table("criteria", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_criteria_definition_id"), ["definition_id"], unique=False
        )

    op.create_table(
        "leads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("company", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("owner_email", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("definition_id", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("handed_off_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
        ),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["lead_definitions.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["members.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "external_id"),
    )
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_leads_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_leads_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_leads_state"), ["state"], unique=False)

    op.create_table(
        "card_locations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("platform", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reference", sa.JSON(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("platform", "channel", "message_id"),
    )
    with op.batch_alter_table("card_locations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_card_locations_lead_id"), ["lead_id"], unique=False)

    op.create_table(
        "lead_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lead_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lead_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_lead_events_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_lead_events_lead_id"), ["lead_id"], unique=False)

    seed_default_definition()


DEFAULT_CRITERIA = [
    ("budget", "Budget confirmed or likely"),
    ("authority", "Talks to or is a decision maker (manager or above)"),
    ("need", "A need our product solves"),
    ("timing", "Buying within the next two quarters"),
    ("territory", "In our sales territory"),
    ("valid_contact", "Valid, reachable contact details"),
]


def seed_default_definition() -> None:
    """A fresh database starts with lead definition version 1."""
    definitions = sa.table(
        "lead_definitions",
        sa.column("version", sa.Integer),
        sa.column("note", sa.String),
        sa.column("created_by", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(
        definitions,
        [
            {
                "version": 1,
                "note": "Default definition",
                "created_by": "system",
                "created_at": datetime.now(UTC),
            }
        ],
    )
    for position, (key, text) in enumerate(DEFAULT_CRITERIA):
        op.execute(
            sa.text(
                "INSERT INTO criteria (definition_id, key, text, position) "
                "SELECT id, :key, :text, :position FROM lead_definitions WHERE version = 1"
            ).bindparams(key=key, text=text, position=position)
        )


def downgrade() -> None:
    with op.batch_alter_table("lead_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lead_events_lead_id"))
        batch_op.drop_index(batch_op.f("ix_lead_events_kind"))
        batch_op.drop_index(batch_op.f("ix_lead_events_at"))

    op.drop_table("lead_events")
    with op.batch_alter_table("card_locations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_card_locations_lead_id"))

    op.drop_table("card_locations")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_leads_state"))
        batch_op.drop_index(batch_op.f("ix_leads_owner_id"))
        batch_op.drop_index(batch_op.f("ix_leads_campaign_id"))

    op.drop_table("leads")
    with op.batch_alter_table("criteria", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_criteria_definition_id"))

    op.drop_table("criteria")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaigns_name"))

    op.drop_table("campaigns")
    op.drop_table("processed_requests")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_members_teams_user_id"))
        batch_op.drop_index(batch_op.f("ix_members_slack_user_id"))
        batch_op.drop_index(batch_op.f("ix_members_handle"))
        batch_op.drop_index(batch_op.f("ix_members_email"))

    op.drop_table("members")
    with op.batch_alter_table("lead_definitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lead_definitions_version"))

    op.drop_table("lead_definitions")
    op.drop_table("channels")
