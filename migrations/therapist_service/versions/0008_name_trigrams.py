"""therapist_service: trigram indexes of the name search (`?q=`: a part of the first or the
last name), where the server has the pg_trgm extension.

Without it (e.g. the embedded PostgreSQL of `make run`) nothing is made: the search then
reads every therapist and finds the same. The indexes are not in the models for that reason
(`therapist_service.models.TRIGRAM_INDEXES`).

Revision ID: therapist_0008
Revises: therapist_0007
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

from shared.migrations import trigram_schema

revision = "therapist_0008"
down_revision = "therapist_0007"
branch_labels = None
depends_on = None

SCHEMA = "therapist_service"


def upgrade() -> None:
    trigrams = trigram_schema()
    if trigrams is None:
        return
    # the expressions the search filters on (therapist_service.service.list_therapists):
    # lower(last_name) LIKE '%x%' OR lower(first_name) LIKE '%x%', a bitmap OR of the two
    for column in ("last_name", "first_name"):
        op.execute(
            f"CREATE INDEX ix_therapists_{column}_trgm ON {SCHEMA}.therapists USING gin "
            f"(lower({column}) {trigrams}.gin_trgm_ops)"
        )


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {SCHEMA}.ix_therapists_first_name_trgm")
    op.execute(f"DROP INDEX IF EXISTS {SCHEMA}.ix_therapists_last_name_trgm")
