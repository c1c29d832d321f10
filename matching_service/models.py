"""SQLAlchemy models of matching_service, in the `matching_service` schema."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import TYPE_ANNOTATION_MAP, schema_metadata, utcnow
from shared.runtime import infrastructure_of

SCHEMA = "matching_service"


class Base(DeclarativeBase):
    """Declarative base of this service's schema."""

    metadata = schema_metadata(SCHEMA)
    type_annotation_map = TYPE_ANNOTATION_MAP


INFRA = infrastructure_of(Base.metadata)

OPEN_SEARCH_STATUSES = ("active", "paused", "in_trial")


class PatientProjection(Base):
    """Matching's read model of a patient, fed by patient events (no direct identifiers)."""

    __tablename__ = "patient_projection"

    patient_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(30))
    gender: Mapped[str] = mapped_column(String(20))
    birth_date: Mapped[date]
    postal_code: Mapped[str] = mapped_column(String(5))
    diagnosis: Mapped[str | None] = mapped_column(String(10))
    symptoms: Mapped[list[str] | None] = mapped_column(JSONB)
    availability: Mapped[dict[str, Any]] = mapped_column(JSONB)
    max_travel_km: Mapped[int]
    travel_mode: Mapped[str] = mapped_column(String(10))
    preferred_therapist_gender: Mapped[str] = mapped_column(String(10))
    preferred_therapy_method: Mapped[str] = mapped_column(String(20))
    open_to_group_therapy: Mapped[bool]
    group_therapy_only: Mapped[bool]
    qualified: Mapped[bool]
    unmet_criteria: Mapped[list[str]] = mapped_column(JSONB)
    two_year_rule_flag: Mapped[bool]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class TherapistProjection(Base):
    """Matching's read model of a therapist, fed by therapist events (no contact data)."""

    __tablename__ = "therapist_projection"
    __table_args__ = (
        Index("ix_therapist_projection_practice_key", "practice_key"),
        Index("ix_therapist_projection_postal_code", "postal_code"),
    )

    therapist_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(20))
    gender: Mapped[str] = mapped_column(String(20))
    postal_code: Mapped[str] = mapped_column(String(5))
    city: Mapped[str | None] = mapped_column(String(200))
    street: Mapped[str | None] = mapped_column(String(200))
    practice_key: Mapped[str] = mapped_column(String(20))
    has_email: Mapped[bool]
    statutory_seat: Mapped[bool]
    therapy_methods: Mapped[list[str]] = mapped_column(JSONB)
    languages: Mapped[list[str]] = mapped_column(JSONB)
    phone_hours: Mapped[dict[str, Any]] = mapped_column(JSONB)
    working_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    potentially_available: Mapped[bool]
    informed_about_platform: Mapped[bool]
    preferred_diagnoses: Mapped[list[str]] = mapped_column(JSONB)
    patient_age_min: Mapped[int | None]
    patient_age_max: Mapped[int | None]
    preferred_patient_gender: Mapped[str] = mapped_column(String(10))
    prefers_group_therapy: Mapped[bool]
    next_contactable_date: Mapped[date | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class PatientSearch(Base):
    """A search for a therapy place for one patient (SPEC.md §5)."""

    __tablename__ = "patient_searches"
    __table_args__ = (
        # one open search per patient, enforced by the database (not check-then-write)
        Index(
            "uq_patient_searches_one_open_per_patient",
            "patient_id",
            unique=True,
            postgresql_where=text("status IN ('active', 'paused', 'in_trial')"),
        ),
        Index("ix_patient_searches_status_waiting", "status", "waiting_since"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), server_default=text("'active'"))
    waiting_since: Mapped[datetime]
    contact_budget: Mapped[int] = mapped_column(server_default=text("0"))
    # inclusions in inquiries; the budget left is contact_budget - contacts_used
    contacts_used: Mapped[int] = mapped_column(server_default=text("0"))
    # staff's reason for the last status change (kept here, never put in events)
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class SearchExclusion(Base):
    """A therapist never offered to this search's patient (SPEC §5); once per therapist."""

    __tablename__ = "search_exclusions"
    __table_args__ = (UniqueConstraint("search_id", "therapist_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey(PatientSearch.id))
    therapist_id: Mapped[int]
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class Location(Base):
    """Where geocoding placed a patient or therapist (location events), or why it could not.

    Kept apart from the projections so their upserts stay as they are; a patient or
    therapist without a resolved row here is never matched (fails closed).
    """

    __tablename__ = "locations"
    __table_args__ = (
        PrimaryKeyConstraint("entity_type", "entity_id"),
        CheckConstraint("entity_type IN ('patient', 'therapist')", name="entity_type_values"),
    )

    entity_type: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(autoincrement=False)
    version: Mapped[int]
    resolved: Mapped[bool]
    lat: Mapped[float | None] = mapped_column(Double)
    lon: Mapped[float | None] = mapped_column(Double)
    precision: Mapped[str | None] = mapped_column(String(10))
    source: Mapped[str | None] = mapped_column(String(30))
    reason: Mapped[str | None] = mapped_column(String(100))
    # the postal code the location was computed for (NULL: stored before it was kept);
    # one that differs from the projection's is a location of an old address
    postal_code: Mapped[str | None] = mapped_column(String(5))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
