"""communication_service: the service role may read api_tokens but never write them.

Revision ID: communication_0002
Revises: communication_0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from shared.migrations import make_tokens_read_only, make_tokens_writable

revision = "communication_0002"
down_revision = "communication_0001"
branch_labels = None
depends_on = None

SCHEMA = "communication_service"


def upgrade() -> None:
    make_tokens_read_only(SCHEMA)


def downgrade() -> None:
    make_tokens_writable(SCHEMA)
