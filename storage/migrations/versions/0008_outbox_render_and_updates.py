"""outbox: cards rendered when sent (`render`) and card updates in place (`location_id`,
`revision`)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("render", sa.String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("location_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
        batch.create_foreign_key(
            "fk_outbox_location_id_card_locations", "card_locations", ["location_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("fk_outbox_location_id_card_locations", type_="foreignkey")
        batch.drop_column("revision")
        batch.drop_column("location_id")
        batch.drop_column("render")
