"""communication_service: the append-only audit log.

Revision ID: communication_0004
Revises: communication_0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from shared.migrations import create_audit_table, drop_audit_table

revision = "communication_0004"
down_revision = "communication_0003"
branch_labels = None
depends_on = None

SCHEMA = "communication_service"


def upgrade() -> None:
    create_audit_table(SCHEMA)


def downgrade() -> None:
    drop_audit_table(SCHEMA)
