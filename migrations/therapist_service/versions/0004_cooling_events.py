"""therapist_service: when the last cooling event from matching was applied to a therapist.

Revision ID: therapist_0004
Revises: therapist_0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision = "therapist_0004"
down_revision = "therapist_0003"
branch_labels = None
depends_on = None

SCHEMA = "therapist_service"


def upgrade() -> None:
    op.add_column("therapists", sa.Column("cooling_event_at", UTCDateTime), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("therapists", "cooling_event_at", schema=SCHEMA)
