"""therapist_service: the append-only audit log.

Revision ID: therapist_0005
Revises: therapist_0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from shared.migrations import create_audit_table, drop_audit_table

revision = "therapist_0005"
down_revision = "therapist_0004"
branch_labels = None
depends_on = None

SCHEMA = "therapist_service"


def upgrade() -> None:
    create_audit_table(SCHEMA)


def downgrade() -> None:
    drop_audit_table(SCHEMA)
