"""matching_service: therapist projection (fed by therapist events).

Revision ID: matching_0003
Revises: matching_0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import UTCDateTime

revision = "matching_0003"
down_revision = "matching_0002"
branch_labels = None
depends_on = None

SCHEMA = "matching_service"


def upgrade() -> None:
    op.create_table(
        "therapist_projection",
        sa.Column("therapist_id", sa.Integer, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("gender", sa.String(20), nullable=False),
        sa.Column("postal_code", sa.String(5), nullable=False),
        sa.Column("city", sa.String(200)),
        sa.Column("street", sa.String(200)),
        sa.Column("practice_key", sa.String(20), nullable=False),
        sa.Column("has_email", sa.Boolean, nullable=False),
        sa.Column("statutory_seat", sa.Boolean, nullable=False),
        sa.Column("therapy_methods", JSONB, nullable=False),
        sa.Column("languages", JSONB, nullable=False),
        sa.Column("phone_hours", JSONB, nullable=False),
        sa.Column("working_hours", JSONB),
        sa.Column("potentially_available", sa.Boolean, nullable=False),
        sa.Column("informed_about_platform", sa.Boolean, nullable=False),
        sa.Column("preferred_diagnoses", JSONB, nullable=False),
        sa.Column("patient_age_min", sa.Integer),
        sa.Column("patient_age_max", sa.Integer),
        sa.Column("preferred_patient_gender", sa.String(10), nullable=False),
        sa.Column("prefers_group_therapy", sa.Boolean, nullable=False),
        sa.Column("next_contactable_date", sa.Date),
        sa.Column("updated_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("therapist_id", name="pk_therapist_projection"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_therapist_projection_practice_key",
        "therapist_projection",
        ["practice_key"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_therapist_projection_postal_code",
        "therapist_projection",
        ["postal_code"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("therapist_projection", schema=SCHEMA)
