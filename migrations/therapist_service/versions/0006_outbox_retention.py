"""therapist_service: published outbox rows by publication time (retention prune and replay).

Revision ID: therapist_0006
Revises: therapist_0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from shared.migrations import create_outbox_published_index, drop_outbox_published_index

revision = "therapist_0006"
down_revision = "therapist_0005"
branch_labels = None
depends_on = None

SCHEMA = "therapist_service"


def upgrade() -> None:
    create_outbox_published_index(SCHEMA)


def downgrade() -> None:
    drop_outbox_published_index(SCHEMA)
