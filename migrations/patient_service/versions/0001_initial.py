"""patient_service: infrastructure tables and patients.

Revision ID: patient_0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import UTCDateTime
from shared.migrations import create_infrastructure_tables

revision = "patient_0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "patient_service"


def upgrade() -> None:
    create_infrastructure_tables(SCHEMA)
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("status", sa.String(30), nullable=False, server_default=sa.text("'registered'")),
        sa.Column("salutation", sa.String(10)),
        sa.Column("gender", sa.String(20), nullable=False),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("street", sa.String(200)),
        sa.Column("postal_code", sa.String(5, collation="C"), nullable=False),
        sa.Column("city", sa.String(200)),
        sa.Column("email", sa.String(320)),
        sa.Column("phone", sa.String(30)),
        sa.Column("birth_date", sa.Date, nullable=False),
        sa.Column("health_insurer", sa.String(200)),
        sa.Column("insurance_number", sa.String(20)),
        sa.Column("gp_name", sa.String(200)),
        sa.Column("diagnosis", sa.String(10)),
        sa.Column("symptoms", JSONB),
        sa.Column(
            "prior_psychotherapy", sa.Boolean, nullable=False, server_default=sa.text("false")
        ),
        sa.Column("last_therapy_end_date", sa.Date),
        sa.Column("availability", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("max_travel_km", sa.Integer, nullable=False, server_default=sa.text("25")),
        sa.Column(
            "travel_mode", sa.String(10), nullable=False, server_default=sa.text("'transit'")
        ),
        sa.Column(
            "preferred_therapist_gender",
            sa.String(10),
            nullable=False,
            server_default=sa.text("'any'"),
        ),
        sa.Column(
            "preferred_therapy_method",
            sa.String(20),
            nullable=False,
            server_default=sa.text("'any'"),
        ),
        sa.Column(
            "open_to_group_therapy", sa.Boolean, nullable=False, server_default=sa.text("false")
        ),
        sa.Column(
            "group_therapy_only", sa.Boolean, nullable=False, server_default=sa.text("false")
        ),
        sa.Column("contract_signed", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("payment_received", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("consent_at", UTCDateTime),
        sa.Column("consent_version", sa.String(50)),
        sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint(
            "max_travel_km BETWEEN 1 AND 200", name="ck_patients_max_travel_km_range"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_patients"),
        schema=SCHEMA,
    )
    op.create_index("ix_patients_status_id", "patients", ["status", "id"], schema=SCHEMA)
    op.create_index("ix_patients_postal_code", "patients", ["postal_code"], schema=SCHEMA)
    op.create_index("ix_patients_birth_date", "patients", ["birth_date"], schema=SCHEMA)
    op.create_index("ix_patients_email", "patients", ["email"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("patients", schema=SCHEMA)
    for table in ("api_tokens", "processed_events", "relay_buckets", "outbox"):
        op.drop_table(table, schema=SCHEMA)
