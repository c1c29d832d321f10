"""matching_service: published outbox rows by publication time (retention prune and replay).

Revision ID: matching_0009
Revises: matching_0008
Create Date: 2026-11-29
"""

from __future__ import annotations

from shared.migrations import create_outbox_published_index, drop_outbox_published_index

revision = "matching_0009"
down_revision = "matching_0008"
branch_labels = None
depends_on = None

SCHEMA = "matching_service"


def upgrade() -> None:
    create_outbox_published_index(SCHEMA)


def downgrade() -> None:
    drop_outbox_published_index(SCHEMA)
