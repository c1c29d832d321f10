"""patient_service: the append-only audit log; therapists a patient is never matched with.

Revision ID: patient_0004
Revises: patient_0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import UTCDateTime
from shared.migrations import create_audit_table, drop_audit_table

revision = "patient_0004"
down_revision = "patient_0003"
branch_labels = None
depends_on = None

SCHEMA = "patient_service"


def upgrade() -> None:
    create_audit_table(SCHEMA)
    op.add_column(
        "patients",
        sa.Column(
            "excluded_therapists", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")
        ),
        schema=SCHEMA,
    )
    op.add_column("patients", sa.Column("erased_at", UTCDateTime), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("patients", "erased_at", schema=SCHEMA)
    op.drop_column("patients", "excluded_therapists", schema=SCHEMA)
    drop_audit_table(SCHEMA)
