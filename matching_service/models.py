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
# an inquiry is open (its practice gets no other) until it is answered or closed
OPEN_INQUIRY_STATUSES = ("unsent", "sent")
INQUIRY_STATUSES = ("unsent", "sent", "answered", "closed")
INQUIRY_PATIENT_STATUSES = ("open", "withdrawn", "answered")
OUTCOMES = (
    "accepted",
    "rejected_capacity",
    "rejected_unsuitable",
    "rejected_other",
    "no_show",
    "in_trial_sessions",
)


class PatientProjection(Base):
    """Matching's read model of a patient, fed by patient events (no direct identifiers)."""

    __tablename__ = "patient_projection"
    __table_args__ = (
        # postal-code prefixes of the search list (LIKE '10%' outside the C locale)
        Index(
            "ix_patient_projection_postal_code_prefix",
            "postal_code",
            postgresql_ops={"postal_code": "varchar_pattern_ops"},
        ),
    )

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
    # therapists the patient is never matched with (patient_service's exclusions, ids only)
    excluded_therapist_ids: Mapped[list[int]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class TherapistProjection(Base):
    """Matching's read model of a therapist, fed by therapist events (no contact data)."""

    __tablename__ = "therapist_projection"
    __table_args__ = (
        Index("ix_therapist_projection_practice_key", "practice_key"),
        Index("ix_therapist_projection_postal_code", "postal_code"),
        Index(
            "ix_therapist_projection_postal_code_prefix",
            "postal_code",
            postgresql_ops={"postal_code": "varchar_pattern_ops"},
        ),
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
    """A search for a therapy place for one patient (business-rules.md §5)."""

    __tablename__ = "patient_searches"
    __table_args__ = (
        # one open search per patient, enforced by the database (not check-then-write)
        Index(
            "uq_patient_searches_one_open_per_patient",
            "patient_id",
            unique=True,
            postgresql_where=text("status IN ('active', 'paused', 'in_trial')"),
        ),
        Index("ix_patient_searches_status_waiting_id", "status", "waiting_since", "id"),
        # the list's order whatever the status, and a patient's searches
        Index("ix_patient_searches_waiting_since_id", "waiting_since", "id"),
        Index("ix_patient_searches_patient_id", "patient_id"),
        # the budget is never exceeded, whatever runs at once
        CheckConstraint("contacts_used <= contact_budget", name="budget_not_exceeded"),
        CheckConstraint(
            "status IN ('active', 'paused', 'in_trial', 'successful', 'cancelled')",
            name="status_values",
        ),
        # a search in trial (or successful) names its therapist
        CheckConstraint(
            "status NOT IN ('in_trial', 'successful') OR placed_therapist_id IS NOT NULL",
            name="placed_therapist_when_claimed",
        ),
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
    # the therapist whose acceptance (or manual placement) claimed the search
    placed_therapist_id: Mapped[int | None]
    claimed_at: Mapped[datetime | None]
    # when the search became successful or cancelled
    ended_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class SearchExclusion(Base):
    """A therapist never offered to this search's patient (business-rules.md §5); once per
    therapist."""

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


class BundleRun(Base):
    """One run of the bundler over the projections; a dry run writes only this record."""

    __tablename__ = "bundle_runs"
    __table_args__ = (Index("ix_bundle_runs_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dry_run: Mapped[bool]
    # the day the run planned for (`--as-of`/now): cooling and waiting times count from it
    as_of: Mapped[datetime]
    postal_code_prefix: Mapped[str | None] = mapped_column(String(5))
    therapist_ids: Mapped[list[int] | None] = mapped_column(JSONB)
    # token name of the caller (or the command that ran it)
    created_by: Mapped[str] = mapped_column(String(100))
    searches_considered: Mapped[int] = mapped_column(server_default=text("0"))
    therapists_considered: Mapped[int] = mapped_column(server_default=text("0"))
    inquiries_created: Mapped[int] = mapped_column(server_default=text("0"))
    seconds: Mapped[float] = mapped_column(Double, server_default=text("0"))
    # the answer of POST /api/bundle-runs: inquiries, left_out, therapists_without_inquiry
    result: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class Inquiry(Base):
    """One inquiry (bundle) to one therapist, for their practice (business-rules.md §6)."""

    __tablename__ = "inquiries"
    __table_args__ = (
        # one open (unsent, or sent and unanswered) inquiry per practice, whatever runs at once
        Index(
            "uq_inquiries_one_open_per_practice",
            "practice_key",
            unique=True,
            postgresql_where=text("status IN ('unsent', 'sent')"),
        ),
        Index("ix_inquiries_therapist_id", "therapist_id", "created_at"),
        Index("ix_inquiries_status_sent_at", "status", "sent_at"),
        # the list's order (newest first), also within a status
        Index("ix_inquiries_created_at_id", "created_at", "id"),
        Index("ix_inquiries_status_created_at_id", "status", "created_at", "id"),
        CheckConstraint("status IN ('unsent', 'sent', 'answered', 'closed')", name="status_values"),
        CheckConstraint("channel IN ('email', 'phone', 'link')", name="channel_values"),
        CheckConstraint("sent_via IN ('email', 'phone')", name="sent_via_values"),
        CheckConstraint(
            "original_size >= 1 AND current_size BETWEEN 0 AND original_size",
            name="sizes",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bundle_run_id: Mapped[int | None] = mapped_column(ForeignKey(BundleRun.id))
    therapist_id: Mapped[int]
    practice_key: Mapped[str] = mapped_column(String(20))
    # how it came to be: a bundle run, staff by hand, or a conflict's replacement offer
    origin: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), server_default=text("'unsent'"))
    original_size: Mapped[int]
    current_size: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    sent_at: Mapped[datetime | None]
    sent_via: Mapped[str | None] = mapped_column(String(10))
    # the first answer (any channel) ends the inquiry's open state and starts cooling
    answered_at: Mapped[datetime | None]
    response_type: Mapped[str | None] = mapped_column(String(30))
    channel: Mapped[str | None] = mapped_column(String(10))
    # staff notes on the answer (free text: never put in events)
    notes: Mapped[str | None] = mapped_column(Text)
    # set once when inquiry.follow_up_due was emitted (emitted at most once)
    follow_up_due_at: Mapped[datetime | None]
    # closed unanswered after INQUIRY_CLOSE_AFTER_DAYS (response_type no_response)
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class InquiryPatient(Base):
    """One patient (search) in an inquiry, at its position, with the therapist's outcome."""

    __tablename__ = "inquiry_patients"
    __table_args__ = (
        PrimaryKeyConstraint("inquiry_id", "search_id"),
        UniqueConstraint("inquiry_id", "position"),
        Index("ix_inquiry_patients_search_id", "search_id"),
        CheckConstraint("status IN ('open', 'withdrawn', 'answered')", name="status_values"),
        CheckConstraint(
            "outcome IS NULL OR outcome IN ('accepted', 'rejected_capacity', "
            "'rejected_unsuitable', 'rejected_other', 'no_show', 'in_trial_sessions')",
            name="outcome_values",
        ),
    )

    inquiry_id: Mapped[int] = mapped_column(ForeignKey(Inquiry.id), autoincrement=False)
    search_id: Mapped[int] = mapped_column(ForeignKey(PatientSearch.id), autoincrement=False)
    patient_id: Mapped[int]
    position: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), server_default=text("'open'"))
    distance_km: Mapped[float | None] = mapped_column(Double)
    outcome: Mapped[str | None] = mapped_column(String(30))
    outcome_at: Mapped[datetime | None]
    # an acceptance that came after another therapist had claimed the search
    conflict: Mapped[bool] = mapped_column(server_default=text("false"))
    replacement_offers: Mapped[list[int] | None] = mapped_column(JSONB)
    withdrawn_at: Mapped[datetime | None]
    # why it was withdrawn: claimed elsewhere, search cancelled, ...
    withdrawn_reason: Mapped[str | None] = mapped_column(String(30))


class CoolingPeriod(Base):
    """A practice not contacted until `until` (business-rules.md §7); an override ends it early."""

    __tablename__ = "cooling_periods"
    __table_args__ = (Index("ix_cooling_periods_practice_key", "practice_key", "until"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    practice_key: Mapped[str] = mapped_column(String(20))
    therapist_ids: Mapped[list[int]] = mapped_column(JSONB)
    # the inquiry whose answer (or closing) started it
    inquiry_id: Mapped[int | None] = mapped_column(ForeignKey(Inquiry.id))
    starts_on: Mapped[date]
    until: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    overridden_at: Mapped[datetime | None]
    overridden_by: Mapped[str | None] = mapped_column(String(100))
    override_reason: Mapped[str | None] = mapped_column(Text)
