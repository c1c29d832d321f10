"""therapist_service: indexes of the therapist list's filters (method, availability,
informed), so that no filter scans 40,000 therapists.

Revision ID: therapist_0007
Revises: therapist_0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "therapist_0007"
down_revision = "therapist_0006"
branch_labels = None
depends_on = None

SCHEMA = "therapist_service"


def upgrade() -> None:
    # therapy_methods @> '["systemic"]'
    op.create_index(
        "ix_therapists_therapy_methods",
        "therapists",
        ["therapy_methods"],
        schema=SCHEMA,
        postgresql_using="gin",
        postgresql_ops={"therapy_methods": "jsonb_path_ops"},
    )
    # the few flagged ones, newest first
    op.create_index(
        "ix_therapists_potentially_available",
        "therapists",
        ["id"],
        schema=SCHEMA,
        postgresql_where=sa.text("potentially_available"),
    )
    op.create_index(
        "ix_therapists_informed_about_platform",
        "therapists",
        ["id"],
        schema=SCHEMA,
        postgresql_where=sa.text("informed_about_platform"),
    )


def downgrade() -> None:
    for name in (
        "ix_therapists_informed_about_platform",
        "ix_therapists_potentially_available",
        "ix_therapists_therapy_methods",
    ):
        op.drop_index(name, table_name="therapists", schema=SCHEMA)
