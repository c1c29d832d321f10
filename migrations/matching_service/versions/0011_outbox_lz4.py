"""matching_service: outbox envelopes compressed with lz4 where the server has it.

A bundle run writes thousands of inquiry.created envelopes of several kilobytes each; they
are compressed when stored, and pglz (the default) costs about twice what lz4 does. Rows
already stored keep their compression; PostgreSQL reads both. A server without lz4 (before
14, or built without it) keeps pglz.

Revision ID: matching_0011
Revises: matching_0010
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "matching_0011"
down_revision = "matching_0010"
branch_labels = None
depends_on = None

SCHEMA = "matching_service"


def _when_lz4(statement: str) -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (
                SELECT 1 FROM pg_settings
                WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)
            ) THEN
                {statement};
            END IF;
        END
        $$
        """
    )


def upgrade() -> None:
    _when_lz4(f"ALTER TABLE {SCHEMA}.outbox ALTER COLUMN envelope SET COMPRESSION lz4")


def downgrade() -> None:
    _when_lz4(f"ALTER TABLE {SCHEMA}.outbox ALTER COLUMN envelope SET COMPRESSION default")
