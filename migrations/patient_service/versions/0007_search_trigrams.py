"""patient_service: trigram indexes of the free-text search (`?search=`: a part of "first
last" or of the email), where the server has the pg_trgm extension.

Without it (e.g. the embedded PostgreSQL of `make run`) nothing is made: the search then
reads every patient and finds the same. The indexes are not in the models for that reason
(`patient_service.models.TRIGRAM_INDEXES`).

Revision ID: patient_0007
Revises: patient_0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

from shared.migrations import trigram_schema

revision = "patient_0007"
down_revision = "patient_0006"
branch_labels = None
depends_on = None

SCHEMA = "patient_service"


def upgrade() -> None:
    trigrams = trigram_schema()
    if trigrams is None:
        return
    # the expression the search filters on (patient_service.service.list_patients)
    op.execute(
        f"CREATE INDEX ix_patients_full_name_trgm ON {SCHEMA}.patients USING gin "
        f"(lower((first_name || ' ') || last_name) {trigrams}.gin_trgm_ops)"
    )
    op.execute(
        f"CREATE INDEX ix_patients_email_trgm ON {SCHEMA}.patients USING gin "
        f"(email {trigrams}.gin_trgm_ops)"
    )


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {SCHEMA}.ix_patients_email_trgm")
    op.execute(f"DROP INDEX IF EXISTS {SCHEMA}.ix_patients_full_name_trgm")
