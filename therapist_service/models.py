"""SQLAlchemy models of therapist_service, in the `therapist_service` schema."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import CheckConstraint, Computed, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import TYPE_ANNOTATION_MAP, schema_metadata, utcnow
from shared.runtime import infrastructure_of

SCHEMA = "therapist_service"

# Therapists sharing an email address (case-insensitively) form one practice; a therapist
# without email is a practice of its own. Computed by PostgreSQL, so no write can get it
# wrong; a hash, so the key can travel in events without the address.
PRACTICE_KEY_SQL = (
    "CASE WHEN email IS NULL OR btrim(email) = '' THEN 't' || id::text "
    "ELSE 'p' || substr(md5(lower(btrim(email))), 1, 16) END"
)


class Base(DeclarativeBase):
    """Declarative base of this service's schema."""

    metadata = schema_metadata(SCHEMA)
    type_annotation_map = TYPE_ANNOTATION_MAP


INFRA = infrastructure_of(Base.metadata)

# Made by therapist_0008 only where the server has pg_trgm (the name search uses them there
# and scans the table elsewhere): so they are not declared on the model, and the comparison
# of models and migrations leaves them out.
TRIGRAM_INDEXES = frozenset({"ix_therapists_last_name_trgm", "ix_therapists_first_name_trgm"})


class Therapist(Base):
    """A therapist: directory data, staff-owned status and preferences, cooling date."""

    __tablename__ = "therapists"
    __table_args__ = (
        CheckConstraint(
            "patient_age_min IS NULL OR patient_age_max IS NULL "
            "OR patient_age_min <= patient_age_max",
            name="patient_age_range",
        ),
        CheckConstraint("status IN ('active', 'blocked', 'inactive')", name="status_values"),
        Index("ix_therapists_status_id", "status", "id"),
        Index("ix_therapists_postal_code", "postal_code"),
        Index("ix_therapists_practice_key", "practice_key"),
        Index("ix_therapists_name_plz", "first_name", "last_name", "postal_code"),
        Index("ix_therapists_last_name_lower", text("lower(last_name)")),
        # the list's filters (therapist_0007)
        Index(
            "ix_therapists_therapy_methods",
            "therapy_methods",
            postgresql_using="gin",
            postgresql_ops={"therapy_methods": "jsonb_path_ops"},
        ),
        Index(
            "ix_therapists_potentially_available",
            "id",
            postgresql_where=text("potentially_available"),
        ),
        Index(
            "ix_therapists_informed_about_platform",
            "id",
            postgresql_where=text("informed_about_platform"),
        ),
    )
    # the computed practice key comes back with every INSERT and UPDATE (RETURNING): the
    # event reads it after each change, which otherwise cost a SELECT of its own
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(server_default=text("1"))
    directory_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(20), server_default=text("'active'"))
    block_reason: Mapped[str | None] = mapped_column(String(500))
    blocked_at: Mapped[datetime | None]
    salutation: Mapped[str | None] = mapped_column(String(10))
    title: Mapped[str | None] = mapped_column(String(50))
    gender: Mapped[str] = mapped_column(String(20), server_default=text("'unspecified'"))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    street: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str] = mapped_column(String(5, collation="C"))
    city: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(30))
    fax: Mapped[str | None] = mapped_column(String(30))
    email: Mapped[str | None] = mapped_column(String(320))
    website: Mapped[str | None] = mapped_column(String(500))
    practice_key: Mapped[str] = mapped_column(
        String(20), Computed(PRACTICE_KEY_SQL, persisted=True)
    )
    statutory_seat: Mapped[bool] = mapped_column(server_default=text("true"))
    phone_hours: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    working_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    languages: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    therapy_methods: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    qualifications: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    potentially_available: Mapped[bool] = mapped_column(server_default=text("false"))
    availability_notes: Mapped[str | None] = mapped_column(Text)
    informed_about_platform: Mapped[bool] = mapped_column(server_default=text("false"))
    preferred_diagnoses: Mapped[list[str]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    patient_age_min: Mapped[int | None]
    patient_age_max: Mapped[int | None]
    preferred_patient_gender: Mapped[str] = mapped_column(String(10), server_default=text("'any'"))
    prefers_group_therapy: Mapped[bool] = mapped_column(server_default=text("false"))
    next_contactable_date: Mapped[date | None]
    # when the cooling event from matching that last set next_contactable_date happened:
    # an older one arriving later (a redelivery, a replayed dead letter) is stale
    cooling_event_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class DirectoryImport(Base):
    """One run of the directory import and its report."""

    __tablename__ = "directory_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(500))
    created: Mapped[int] = mapped_column(server_default=text("0"))
    updated: Mapped[int] = mapped_column(server_default=text("0"))
    unchanged: Mapped[int] = mapped_column(server_default=text("0"))
    skipped: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
