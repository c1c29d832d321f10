"""therapist_service: infrastructure tables.

Revision ID: therapist_0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

from shared.migrations import create_infrastructure_tables

revision = "therapist_0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "therapist_service"


def upgrade() -> None:
    create_infrastructure_tables(SCHEMA)


def downgrade() -> None:
    for table in ("api_tokens", "processed_events", "relay_buckets", "outbox"):
        op.drop_table(table, schema=SCHEMA)
