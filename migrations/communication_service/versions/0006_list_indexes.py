"""communication_service: the email list by therapist or patient, newest first.

Revision ID: communication_0006
Revises: communication_0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "communication_0006"
down_revision = "communication_0005"
branch_labels = None
depends_on = None

SCHEMA = "communication_service"


def upgrade() -> None:
    op.create_index(
        "ix_emails_therapist_id_created_at", "emails", ["therapist_id", "created_at"], schema=SCHEMA
    )
    op.create_index(
        "ix_emails_patient_id_created_at", "emails", ["patient_id", "created_at"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_index("ix_emails_patient_id_created_at", table_name="emails", schema=SCHEMA)
    op.drop_index("ix_emails_therapist_id_created_at", table_name="emails", schema=SCHEMA)
