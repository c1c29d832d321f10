"""communication_service: published outbox rows by publication time (retention prune and replay).

Revision ID: communication_0005
Revises: communication_0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from shared.migrations import create_outbox_published_index, drop_outbox_published_index

revision = "communication_0005"
down_revision = "communication_0004"
branch_labels = None
depends_on = None

SCHEMA = "communication_service"


def upgrade() -> None:
    create_outbox_published_index(SCHEMA)


def downgrade() -> None:
    drop_outbox_published_index(SCHEMA)
