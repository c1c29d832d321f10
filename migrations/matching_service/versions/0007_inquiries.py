"""matching_service: bundle runs, inquiries and their patients, cooling periods; a search's
placed therapist, and the database rules of placement.

The database holds the rules that concurrent writers must not break: one open inquiry per
practice (partial unique index), a contact budget never exceeded (check), a claimed search
names its therapist (check).

Revision ID: matching_0007
Revises: matching_0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.db import UTCDateTime

revision = "matching_0007"
down_revision = "matching_0006"
branch_labels = None
depends_on = None

SCHEMA = "matching_service"


def upgrade() -> None:
    op.create_table(
        "bundle_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("as_of", UTCDateTime, nullable=False),
        sa.Column("postal_code_prefix", sa.String(length=5), nullable=True),
        sa.Column("therapist_ids", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("searches_considered", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "therapists_considered", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("inquiries_created", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("seconds", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", UTCDateTime, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bundle_runs")),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_bundle_runs_created_at", "bundle_runs", ["created_at"], unique=False, schema=SCHEMA
    )
    op.create_table(
        "inquiries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bundle_run_id", sa.Integer(), nullable=True),
        sa.Column("therapist_id", sa.Integer(), nullable=False),
        sa.Column("practice_key", sa.String(length=20), nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'unsent'"), nullable=False
        ),
        sa.Column("original_size", sa.Integer(), nullable=False),
        sa.Column("current_size", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime, server_default=sa.text("now()"), nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("sent_via", sa.String(length=10), nullable=True),
        sa.Column("answered_at", UTCDateTime, nullable=True),
        sa.Column("response_type", sa.String(length=30), nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("follow_up_due_at", UTCDateTime, nullable=True),
        sa.Column("closed_at", UTCDateTime, nullable=True),
        sa.Column("updated_at", UTCDateTime, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "channel IN ('email', 'phone', 'link')", name=op.f("ck_inquiries_channel_values")
        ),
        sa.CheckConstraint(
            "sent_via IN ('email', 'phone')", name=op.f("ck_inquiries_sent_via_values")
        ),
        sa.CheckConstraint(
            "status IN ('unsent', 'sent', 'answered', 'closed')",
            name=op.f("ck_inquiries_status_values"),
        ),
        sa.CheckConstraint(
            "original_size >= 1 AND current_size BETWEEN 0 AND original_size",
            name=op.f("ck_inquiries_sizes"),
        ),
        sa.ForeignKeyConstraint(
            ["bundle_run_id"],
            ["matching_service.bundle_runs.id"],
            name=op.f("fk_inquiries_bundle_run_id_bundle_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inquiries")),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_inquiries_status_sent_at",
        "inquiries",
        ["status", "sent_at"],
        unique=False,
        schema=SCHEMA,
    )
    op.create_index(
        "ix_inquiries_therapist_id",
        "inquiries",
        ["therapist_id", "created_at"],
        unique=False,
        schema=SCHEMA,
    )
    op.create_index(
        "uq_inquiries_one_open_per_practice",
        "inquiries",
        ["practice_key"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("status IN ('unsent', 'sent')"),
    )
    op.create_table(
        "cooling_periods",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("practice_key", sa.String(length=20), nullable=False),
        sa.Column("therapist_ids", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("inquiry_id", sa.Integer(), nullable=True),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("until", sa.Date(), nullable=False),
        sa.Column("created_at", UTCDateTime, server_default=sa.text("now()"), nullable=False),
        sa.Column("overridden_at", UTCDateTime, nullable=True),
        sa.Column("overridden_by", sa.String(length=100), nullable=True),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["inquiry_id"],
            ["matching_service.inquiries.id"],
            name=op.f("fk_cooling_periods_inquiry_id_inquiries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cooling_periods")),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_cooling_periods_practice_key",
        "cooling_periods",
        ["practice_key", "until"],
        unique=False,
        schema=SCHEMA,
    )
    op.create_table(
        "inquiry_patients",
        sa.Column("inquiry_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("search_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), server_default=sa.text("'open'"), nullable=False),
        sa.Column("distance_km", sa.Double(), nullable=True),
        sa.Column("outcome", sa.String(length=30), nullable=True),
        sa.Column("outcome_at", UTCDateTime, nullable=True),
        sa.Column("conflict", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("replacement_offers", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("withdrawn_at", UTCDateTime, nullable=True),
        sa.Column("withdrawn_reason", sa.String(length=30), nullable=True),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('accepted', 'rejected_capacity', "
            "'rejected_unsuitable', 'rejected_other', 'no_show', 'in_trial_sessions')",
            name=op.f("ck_inquiry_patients_outcome_values"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'withdrawn', 'answered')",
            name=op.f("ck_inquiry_patients_status_values"),
        ),
        sa.ForeignKeyConstraint(
            ["inquiry_id"],
            ["matching_service.inquiries.id"],
            name=op.f("fk_inquiry_patients_inquiry_id_inquiries"),
        ),
        sa.ForeignKeyConstraint(
            ["search_id"],
            ["matching_service.patient_searches.id"],
            name=op.f("fk_inquiry_patients_search_id_patient_searches"),
        ),
        sa.PrimaryKeyConstraint("inquiry_id", "search_id", name=op.f("pk_inquiry_patients")),
        sa.UniqueConstraint(
            "inquiry_id", "position", name=op.f("uq_inquiry_patients_inquiry_id_position")
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_inquiry_patients_search_id",
        "inquiry_patients",
        ["search_id"],
        unique=False,
        schema=SCHEMA,
    )
    op.add_column(
        "patient_searches",
        sa.Column("placed_therapist_id", sa.Integer(), nullable=True),
        schema=SCHEMA,
    )
    op.add_column(
        "patient_searches", sa.Column("claimed_at", UTCDateTime, nullable=True), schema=SCHEMA
    )
    op.add_column(
        "patient_searches", sa.Column("ended_at", UTCDateTime, nullable=True), schema=SCHEMA
    )
    op.create_check_constraint(
        op.f("ck_patient_searches_budget_not_exceeded"),
        "patient_searches",
        "contacts_used <= contact_budget",
        schema=SCHEMA,
    )
    op.create_check_constraint(
        op.f("ck_patient_searches_status_values"),
        "patient_searches",
        "status IN ('active', 'paused', 'in_trial', 'successful', 'cancelled')",
        schema=SCHEMA,
    )
    op.create_check_constraint(
        op.f("ck_patient_searches_placed_therapist_when_claimed"),
        "patient_searches",
        "status NOT IN ('in_trial', 'successful') OR placed_therapist_id IS NOT NULL",
        schema=SCHEMA,
    )


def downgrade() -> None:
    for name in ("placed_therapist_when_claimed", "status_values", "budget_not_exceeded"):
        op.drop_constraint(f"ck_patient_searches_{name}", "patient_searches", schema=SCHEMA)
    op.drop_column("patient_searches", "ended_at", schema=SCHEMA)
    op.drop_column("patient_searches", "claimed_at", schema=SCHEMA)
    op.drop_column("patient_searches", "placed_therapist_id", schema=SCHEMA)
    op.drop_index("ix_inquiry_patients_search_id", table_name="inquiry_patients", schema=SCHEMA)
    op.drop_table("inquiry_patients", schema=SCHEMA)
    op.drop_index("ix_cooling_periods_practice_key", table_name="cooling_periods", schema=SCHEMA)
    op.drop_table("cooling_periods", schema=SCHEMA)
    op.drop_index(
        "uq_inquiries_one_open_per_practice",
        table_name="inquiries",
        schema=SCHEMA,
        postgresql_where=sa.text("status IN ('unsent', 'sent')"),
    )
    op.drop_index("ix_inquiries_therapist_id", table_name="inquiries", schema=SCHEMA)
    op.drop_index("ix_inquiries_status_sent_at", table_name="inquiries", schema=SCHEMA)
    op.drop_table("inquiries", schema=SCHEMA)
    op.drop_index("ix_bundle_runs_created_at", table_name="bundle_runs", schema=SCHEMA)
    op.drop_table("bundle_runs", schema=SCHEMA)
