"""patient_service: the newest search matching reported for each patient.

Revision ID: patient_0003
Revises: patient_0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "patient_0003"
down_revision = "patient_0002"
branch_labels = None
depends_on = None

SCHEMA = "patient_service"


def upgrade() -> None:
    op.add_column("patients", sa.Column("search_id", sa.Integer), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("patients", "search_id", schema=SCHEMA)
