"""matching_service: indexes of the search and inquiry lists (orders, waiting time,
postal-code prefixes of the projections).

Revision ID: matching_0010
Revises: matching_0009
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "matching_0010"
down_revision = "matching_0009"
branch_labels = None
depends_on = None

SCHEMA = "matching_service"


def upgrade() -> None:
    # longest waiting first within a status, in the list's whole order (status_waiting
    # lacked the id: a page of one status was read in waiting order across all statuses)
    op.drop_index(
        "ix_patient_searches_status_waiting", table_name="patient_searches", schema=SCHEMA
    )
    op.create_index(
        "ix_patient_searches_status_waiting_id",
        "patient_searches",
        ["status", "waiting_since", "id"],
        schema=SCHEMA,
    )
    # longest waiting first, whatever the status; and waiting longer than N days
    op.create_index(
        "ix_patient_searches_waiting_since_id",
        "patient_searches",
        ["waiting_since", "id"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_patient_searches_patient_id", "patient_searches", ["patient_id"], schema=SCHEMA
    )
    # postal-code prefixes (LIKE '10%') need the pattern operator class outside the C locale
    op.create_index(
        "ix_patient_projection_postal_code_prefix",
        "patient_projection",
        ["postal_code"],
        schema=SCHEMA,
        postgresql_ops={"postal_code": "varchar_pattern_ops"},
    )
    op.create_index(
        "ix_therapist_projection_postal_code_prefix",
        "therapist_projection",
        ["postal_code"],
        schema=SCHEMA,
        postgresql_ops={"postal_code": "varchar_pattern_ops"},
    )
    # newest first, also within one status
    op.create_index("ix_inquiries_created_at_id", "inquiries", ["created_at", "id"], schema=SCHEMA)
    op.create_index(
        "ix_inquiries_status_created_at_id",
        "inquiries",
        ["status", "created_at", "id"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_index("ix_inquiries_status_created_at_id", table_name="inquiries", schema=SCHEMA)
    op.drop_index("ix_inquiries_created_at_id", table_name="inquiries", schema=SCHEMA)
    op.drop_index(
        "ix_therapist_projection_postal_code_prefix",
        table_name="therapist_projection",
        schema=SCHEMA,
    )
    op.drop_index(
        "ix_patient_projection_postal_code_prefix", table_name="patient_projection", schema=SCHEMA
    )
    op.drop_index("ix_patient_searches_patient_id", table_name="patient_searches", schema=SCHEMA)
    op.drop_index(
        "ix_patient_searches_waiting_since_id", table_name="patient_searches", schema=SCHEMA
    )
    op.drop_index(
        "ix_patient_searches_status_waiting_id", table_name="patient_searches", schema=SCHEMA
    )
    op.create_index(
        "ix_patient_searches_status_waiting",
        "patient_searches",
        ["status", "waiting_since"],
        schema=SCHEMA,
    )
