"""therapist_service: therapists (with their computed practice key) and directory imports.

Revision ID: therapist_0003
Revises: therapist_0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import UTCDateTime

revision = "therapist_0003"
down_revision = "therapist_0002"
branch_labels = None
depends_on = None

SCHEMA = "therapist_service"
PRACTICE_KEY_SQL = (
    "CASE WHEN email IS NULL OR btrim(email) = '' THEN 't' || id::text "
    "ELSE 'p' || substr(md5(lower(btrim(email))), 1, 16) END"
)


def _json(default: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(default, JSONB, nullable=False, server_default=sa.text("'[]'::jsonb"))


def upgrade() -> None:
    op.create_table(
        "therapists",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("directory_id", sa.String(100), unique=True),
        sa.Column("status", sa.String(20), nullable=False, server_default=sa.text("'active'")),
        sa.Column("block_reason", sa.String(500)),
        sa.Column("blocked_at", UTCDateTime),
        sa.Column("salutation", sa.String(10)),
        sa.Column("title", sa.String(50)),
        sa.Column("gender", sa.String(20), nullable=False, server_default=sa.text("'unspecified'")),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("street", sa.String(200)),
        sa.Column("postal_code", sa.String(5, collation="C"), nullable=False),
        sa.Column("city", sa.String(200)),
        sa.Column("phone", sa.String(30)),
        sa.Column("fax", sa.String(30)),
        sa.Column("email", sa.String(320)),
        sa.Column("website", sa.String(500)),
        sa.Column(
            "practice_key",
            sa.String(20),
            sa.Computed(PRACTICE_KEY_SQL, persisted=True),
            nullable=False,
        ),
        sa.Column("statutory_seat", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("phone_hours", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("working_hours", JSONB),
        _json("languages"),
        _json("therapy_methods"),
        _json("qualifications"),
        sa.Column(
            "potentially_available", sa.Boolean, nullable=False, server_default=sa.text("false")
        ),
        sa.Column("availability_notes", sa.Text),
        sa.Column(
            "informed_about_platform", sa.Boolean, nullable=False, server_default=sa.text("false")
        ),
        _json("preferred_diagnoses"),
        sa.Column("patient_age_min", sa.Integer),
        sa.Column("patient_age_max", sa.Integer),
        sa.Column(
            "preferred_patient_gender",
            sa.String(10),
            nullable=False,
            server_default=sa.text("'any'"),
        ),
        sa.Column(
            "prefers_group_therapy", sa.Boolean, nullable=False, server_default=sa.text("false")
        ),
        sa.Column("next_contactable_date", sa.Date),
        sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint(
            "patient_age_min IS NULL OR patient_age_max IS NULL "
            "OR patient_age_min <= patient_age_max",
            name="patient_age_range",
        ),
        sa.CheckConstraint("status IN ('active', 'blocked', 'inactive')", name="status_values"),
        schema=SCHEMA,
    )
    op.create_index("ix_therapists_status_id", "therapists", ["status", "id"], schema=SCHEMA)
    op.create_index("ix_therapists_postal_code", "therapists", ["postal_code"], schema=SCHEMA)
    op.create_index("ix_therapists_practice_key", "therapists", ["practice_key"], schema=SCHEMA)
    op.create_index(
        "ix_therapists_name_plz",
        "therapists",
        ["first_name", "last_name", "postal_code"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_therapists_last_name_lower",
        "therapists",
        [sa.text("lower(last_name)")],
        schema=SCHEMA,
    )
    op.create_table(
        "directory_imports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("created", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("updated", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("unchanged", sa.Integer, nullable=False, server_default=sa.text("0")),
        _json("skipped"),
        _json("errors"),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("directory_imports", schema=SCHEMA)
    op.drop_table("therapists", schema=SCHEMA)
