"""communication_service: emails (queued from events, sent by `send-emails`) and phone calls.

The database holds the rules that concurrent writers must not break: one email per cause
(unique send key), never two scheduled calls of one therapist in one slot (partial unique
index).

Revision ID: communication_0003
Revises: communication_0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.db import UTCDateTime

revision = "communication_0003"
down_revision = "communication_0002"
branch_labels = None
depends_on = None

SCHEMA = "communication_service"


def upgrade() -> None:
    op.create_table(
        "emails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("send_key", sa.String(length=200), nullable=False),
        sa.Column("therapist_id", sa.Integer(), nullable=True),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("inquiry_id", sa.Integer(), nullable=True),
        sa.Column("practice_key", sa.String(length=20), nullable=True),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'queued'"), nullable=False
        ),
        sa.Column("context", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=True),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("to_address", sa.String(length=320), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            UTCDateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            UTCDateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('inquiry', 'withdrawal', 'conflict', 'search_started', "
            "'inquiries_this_week', 'place_found')",
            name=op.f("ck_emails_kind_values"),
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'sent', 'failed', 'cancelled', 'replaced_by_call')",
            name=op.f("ck_emails_status_values"),
        ),
        sa.CheckConstraint(
            "(therapist_id IS NULL) <> (patient_id IS NULL)", name=op.f("ck_emails_one_recipient")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emails")),
        sa.UniqueConstraint("send_key", name=op.f("uq_emails_send_key")),
        schema=SCHEMA,
    )
    op.create_index("ix_emails_created_at", "emails", ["created_at"], unique=False, schema=SCHEMA)
    op.create_index("ix_emails_inquiry_id", "emails", ["inquiry_id"], unique=False, schema=SCHEMA)
    op.create_index(
        "ix_emails_practice_sent",
        "emails",
        ["practice_key", "sent_at"],
        unique=False,
        schema=SCHEMA,
        postgresql_where=sa.text("kind = 'inquiry' AND status = 'sent'"),
    )
    op.create_index(
        "ix_emails_queued",
        "emails",
        ["next_attempt_at"],
        unique=False,
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_table(
        "phone_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("therapist_id", sa.Integer(), nullable=False),
        sa.Column("inquiry_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'scheduled'"), nullable=False
        ),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("scheduled_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("patient_references", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            UTCDateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "purpose IN ('inquiry', 'follow_up')", name=op.f("ck_phone_calls_purpose_values")
        ),
        sa.CheckConstraint(
            "status IN ('scheduled', 'reached', 'not_reached', 'cancelled')",
            name=op.f("ck_phone_calls_status_values"),
        ),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_phone_calls_attempt_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_calls")),
        schema=SCHEMA,
    )
    op.create_index(
        "uq_phone_calls_open_per_inquiry",
        "phone_calls",
        ["inquiry_id", "purpose"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.create_index(
        "ix_phone_calls_scheduled_at", "phone_calls", ["scheduled_at"], unique=False, schema=SCHEMA
    )
    op.create_index(
        "uq_phone_calls_therapist_slot",
        "phone_calls",
        ["therapist_id", "scheduled_at"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'scheduled'"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_phone_calls_therapist_slot",
        table_name="phone_calls",
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.drop_index("ix_phone_calls_scheduled_at", table_name="phone_calls", schema=SCHEMA)
    op.drop_index("uq_phone_calls_open_per_inquiry", table_name="phone_calls", schema=SCHEMA)
    op.drop_table("phone_calls", schema=SCHEMA)
    op.drop_index(
        "ix_emails_queued",
        table_name="emails",
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.drop_index(
        "ix_emails_practice_sent",
        table_name="emails",
        schema=SCHEMA,
        postgresql_where=sa.text("kind = 'inquiry' AND status = 'sent'"),
    )
    op.drop_index("ix_emails_inquiry_id", table_name="emails", schema=SCHEMA)
    op.drop_index("ix_emails_created_at", table_name="emails", schema=SCHEMA)
    op.drop_table("emails", schema=SCHEMA)
