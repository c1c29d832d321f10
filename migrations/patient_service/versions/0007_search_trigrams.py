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

import sqlalchemy as sa
from alembic import op

revision = "patient_0007"
down_revision = "patient_0006"
branch_labels = None
depends_on = None

SCHEMA = "patient_service"


def upgrade() -> None:
    trigrams = _trigram_schema()
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


def _trigram_schema() -> str | None:
    """The schema of pg_trgm, created here if the server has it and we may (a trusted
    extension: the database's CREATE privilege is enough); None if not."""
    bind = op.get_bind()
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    ).first()
    if available is None:
        return None
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError:
        savepoint.rollback()  # not allowed to: the search scans, as without the extension
        return None
    savepoint.commit()
    schema = bind.execute(
        sa.text(
            "SELECT quote_ident(n.nspname) FROM pg_extension e "
            "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
        )
    ).scalar_one()
    return str(schema)
