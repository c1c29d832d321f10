"""matching_service: contacts used, the staff reason of a status change, search exclusions.

Revision ID: matching_0005
Revises: matching_0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision = "matching_0005"
down_revision = "matching_0004"
branch_labels = None
depends_on = None

SCHEMA = "matching_service"


def upgrade() -> None:
    op.add_column(
        "patient_searches",
        sa.Column("contacts_used", sa.Integer, nullable=False, server_default=sa.text("0")),
        schema=SCHEMA,
    )
    op.add_column("patient_searches", sa.Column("status_reason", sa.Text), schema=SCHEMA)
    op.create_table(
        "search_exclusions",
        sa.Column("id", sa.Integer),
        sa.Column("search_id", sa.Integer, nullable=False),
        sa.Column("therapist_id", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("id", name="pk_search_exclusions"),
        sa.ForeignKeyConstraint(
            ["search_id"],
            [f"{SCHEMA}.patient_searches.id"],
            name="fk_search_exclusions_search_id_patient_searches",
        ),
        sa.UniqueConstraint(
            "search_id", "therapist_id", name="uq_search_exclusions_search_id_therapist_id"
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("search_exclusions", schema=SCHEMA)
    op.drop_column("patient_searches", "status_reason", schema=SCHEMA)
    op.drop_column("patient_searches", "contacts_used", schema=SCHEMA)
