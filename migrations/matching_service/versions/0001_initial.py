"""matching_service: infrastructure tables, patient projection, patient searches.

Revision ID: matching_0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import UTCDateTime
from shared.migrations import create_infrastructure_tables

revision = "matching_0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "matching_service"


def upgrade() -> None:
    create_infrastructure_tables(SCHEMA)
    op.create_table(
        "patient_projection",
        sa.Column("patient_id", sa.Integer, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("gender", sa.String(20), nullable=False),
        sa.Column("birth_date", sa.Date, nullable=False),
        sa.Column("postal_code", sa.String(5), nullable=False),
        sa.Column("diagnosis", sa.String(10)),
        sa.Column("symptoms", JSONB),
        sa.Column("availability", JSONB, nullable=False),
        sa.Column("max_travel_km", sa.Integer, nullable=False),
        sa.Column("travel_mode", sa.String(10), nullable=False),
        sa.Column("preferred_therapist_gender", sa.String(10), nullable=False),
        sa.Column("preferred_therapy_method", sa.String(20), nullable=False),
        sa.Column("open_to_group_therapy", sa.Boolean, nullable=False),
        sa.Column("group_therapy_only", sa.Boolean, nullable=False),
        sa.Column("qualified", sa.Boolean, nullable=False),
        sa.Column("unmet_criteria", JSONB, nullable=False),
        sa.Column("two_year_rule_flag", sa.Boolean, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("patient_id", name="pk_patient_projection"),
        schema=SCHEMA,
    )
    op.create_table(
        "patient_searches",
        sa.Column("id", sa.Integer),
        sa.Column("patient_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default=sa.text("'active'")),
        sa.Column("waiting_since", UTCDateTime, nullable=False),
        sa.Column("contact_budget", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("id", name="pk_patient_searches"),
        schema=SCHEMA,
    )
    op.create_index(
        "uq_patient_searches_one_open_per_patient",
        "patient_searches",
        ["patient_id"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("status IN ('active', 'paused', 'in_trial')"),
    )
    op.create_index(
        "ix_patient_searches_status_waiting",
        "patient_searches",
        ["status", "waiting_since"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("patient_searches", schema=SCHEMA)
    op.drop_table("patient_projection", schema=SCHEMA)
    for table in ("api_tokens", "processed_events", "relay_buckets", "outbox"):
        op.drop_table(table, schema=SCHEMA)
