"""matching_service: locations of patients and therapists (fed by location events).

Revision ID: matching_0004
Revises: matching_0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision = "matching_0004"
down_revision = "matching_0003"
branch_labels = None
depends_on = None

SCHEMA = "matching_service"


def upgrade() -> None:
    op.create_table(
        "locations",
        sa.Column("entity_type", sa.String(20)),
        sa.Column("entity_id", sa.Integer, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("resolved", sa.Boolean, nullable=False),
        sa.Column("lat", sa.Double),
        sa.Column("lon", sa.Double),
        sa.Column("precision", sa.String(10)),
        sa.Column("source", sa.String(30)),
        sa.Column("reason", sa.String(100)),
        sa.Column("updated_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("entity_type", "entity_id", name="pk_locations"),
        sa.CheckConstraint("entity_type IN ('patient', 'therapist')", name="entity_type_values"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("locations", schema=SCHEMA)
