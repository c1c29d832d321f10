"""matching_service: the postal code a location was computed for.

A location event names the postal code geocoding placed; matching compares it with the
patient's or therapist's postal code it holds, so a location of an old address is not
taken for the new one.

Revision ID: matching_0006
Revises: matching_0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "matching_0006"
down_revision = "matching_0005"
branch_labels = None
depends_on = None

SCHEMA = "matching_service"


def upgrade() -> None:
    # NULL: stored before this column existed (not compared)
    op.add_column("locations", sa.Column("postal_code", sa.String(5)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("locations", "postal_code", schema=SCHEMA)
