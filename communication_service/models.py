"""SQLAlchemy models of communication_service, in the `communication_service` schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import TYPE_ANNOTATION_MAP, schema_metadata, utcnow
from shared.runtime import infrastructure_of

SCHEMA = "communication_service"


class Base(DeclarativeBase):
    """Declarative base of this service's schema."""

    metadata = schema_metadata(SCHEMA)
    type_annotation_map = TYPE_ANNOTATION_MAP


INFRA = infrastructure_of(Base.metadata)

EMAIL_KINDS = (
    "inquiry",
    "withdrawal",
    "conflict",
    "search_started",
    "inquiries_this_week",
    "place_found",
)
EMAIL_STATUSES = ("queued", "sent", "failed", "cancelled", "replaced_by_call")
CALL_PURPOSES = ("inquiry", "follow_up")
CALL_STATUSES = ("scheduled", "reached", "not_reached", "cancelled")


def _values(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Email(Base):
    """One message to a therapist or a patient: queued from an event, rendered and sent by
    `send-emails` (contact data fetched then, never stored before)."""

    __tablename__ = "emails"
    __table_args__ = (
        CheckConstraint(_values("kind", EMAIL_KINDS), name="kind_values"),
        CheckConstraint(_values("status", EMAIL_STATUSES), name="status_values"),
        CheckConstraint("(therapist_id IS NULL) <> (patient_id IS NULL)", name="one_recipient"),
        # the sender's queue: queued rows by when they may go next
        Index(
            "ix_emails_queued",
            "next_attempt_at",
            postgresql_where=text("status = 'queued'"),
        ),
        # the weekly limit: inquiry emails sent per practice
        Index(
            "ix_emails_practice_sent",
            "practice_key",
            "sent_at",
            postgresql_where=text("kind = 'inquiry' AND status = 'sent'"),
        ),
        Index("ix_emails_inquiry_id", "inquiry_id"),
        Index("ix_emails_created_at", "created_at"),
        # a therapist's or a patient's emails, newest first
        Index("ix_emails_therapist_id_created_at", "therapist_id", "created_at"),
        Index("ix_emails_patient_id_created_at", "patient_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    # one message per cause ('inquiry:<id>', 'withdrawal:<inquiry>:<search>', ...): a
    # redelivered event never queues it twice
    send_key: Mapped[str] = mapped_column(String(200), unique=True)
    therapist_id: Mapped[int | None]
    patient_id: Mapped[int | None]
    inquiry_id: Mapped[int | None]
    practice_key: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), server_default=text("'queued'"))
    # what the template needs from the event (anonymised; no contact data)
    context: Mapped[dict[str, Any]] = mapped_column(JSONB)
    subject: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    to_address: Mapped[str | None] = mapped_column(String(320))
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    # the class of the last failure only (an SMTP reply may quote the address)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    sent_at: Mapped[datetime | None]


class PhoneCall(Base):
    """A call staff make to a therapist: instead of an inquiry email, or a follow-up."""

    __tablename__ = "phone_calls"
    __table_args__ = (
        CheckConstraint(_values("purpose", CALL_PURPOSES), name="purpose_values"),
        CheckConstraint(_values("status", CALL_STATUSES), name="status_values"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        # never two calls of one therapist in one slot: the database decides
        Index(
            "uq_phone_calls_therapist_slot",
            "therapist_id",
            "scheduled_at",
            unique=True,
            postgresql_where=text("status = 'scheduled'"),
        ),
        # one open call per inquiry and purpose (a repeated follow-up event books nothing)
        Index(
            "uq_phone_calls_open_per_inquiry",
            "inquiry_id",
            "purpose",
            unique=True,
            postgresql_where=text("status = 'scheduled'"),
        ),
        Index("ix_phone_calls_scheduled_at", "scheduled_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    therapist_id: Mapped[int]
    inquiry_id: Mapped[int]
    purpose: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), server_default=text("'scheduled'"))
    attempt: Mapped[int] = mapped_column(server_default=text("1"))
    # the slot's start (UTC); the slot lasts PHONE_SLOT_MINUTES
    scheduled_at: Mapped[datetime]
    # the patients the call is about, as the therapist knows them ('PS-<search id>')
    patient_references: Mapped[list[str]] = mapped_column(JSONB)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    completed_at: Mapped[datetime | None]
