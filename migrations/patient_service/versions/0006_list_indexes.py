"""patient_service: indexes of the patient list's orders and filters (no table scan on
100,000 patients).

Revision ID: patient_0006
Revises: patient_0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "patient_0006"
down_revision = "patient_0005"
branch_labels = None
depends_on = None

SCHEMA = "patient_service"


def upgrade() -> None:
    # newest first (the default order) and oldest first, also from a creation time on
    op.create_index("ix_patients_created_at_id", "patients", ["created_at", "id"], schema=SCHEMA)
    op.create_index(
        "ix_patients_status_created_at_id",
        "patients",
        ["status", "created_at", "id"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_patients_last_name_lower_id",
        "patients",
        [sa.text("lower(last_name)"), "id"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_patients_status_last_name_lower_id",
        "patients",
        ["status", sa.text("lower(last_name)"), "id"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    for name in (
        "ix_patients_status_last_name_lower_id",
        "ix_patients_last_name_lower_id",
        "ix_patients_status_created_at_id",
        "ix_patients_created_at_id",
    ):
        op.drop_index(name, table_name="patients", schema=SCHEMA)
