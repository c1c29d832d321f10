"""matching_service: the append-only audit log; the therapists each patient excluded.

Revision ID: matching_0008
Revises: matching_0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations import create_audit_table, drop_audit_table

revision = "matching_0008"
down_revision = "matching_0007"
branch_labels = None
depends_on = None

SCHEMA = "matching_service"


def upgrade() -> None:
    create_audit_table(SCHEMA)
    op.add_column(
        "patient_projection",
        sa.Column(
            "excluded_therapist_ids",
            JSONB,
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("patient_projection", "excluded_therapist_ids", schema=SCHEMA)
    drop_audit_table(SCHEMA)
