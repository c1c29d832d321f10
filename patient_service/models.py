"""SQLAlchemy models of patient_service, in the `patient_service` schema."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import TYPE_ANNOTATION_MAP, schema_metadata, utcnow
from shared.runtime import infrastructure_of

SCHEMA = "patient_service"


class Base(DeclarativeBase):
    """Declarative base of this service's schema."""

    metadata = schema_metadata(SCHEMA)
    type_annotation_map = TYPE_ANNOTATION_MAP


INFRA = infrastructure_of(Base.metadata)

# Made by patient_0007 only where the server has pg_trgm (the free-text search uses them
# there and scans the table elsewhere): so they are not declared on the model, and the
# comparison of models and migrations leaves them out.
TRIGRAM_INDEXES = frozenset({"ix_patients_full_name_trgm", "ix_patients_email_trgm"})


class Patient(Base):
    """A registered patient with qualification data and preferences."""

    __tablename__ = "patients"
    __table_args__ = (
        CheckConstraint("max_travel_km BETWEEN 1 AND 200", name="max_travel_km_range"),
        Index("ix_patients_status_id", "status", "id"),
        Index("ix_patients_postal_code", "postal_code"),
        Index("ix_patients_birth_date", "birth_date"),
        Index("ix_patients_email", "email"),
        # the list's orders, also within a status (patient_0006)
        Index("ix_patients_created_at_id", "created_at", "id"),
        Index("ix_patients_status_created_at_id", "status", "created_at", "id"),
        Index("ix_patients_last_name_lower_id", text("lower(last_name)"), "id"),
        Index("ix_patients_status_last_name_lower_id", "status", text("lower(last_name)"), "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(server_default=text("1"))
    status: Mapped[str] = mapped_column(String(30), server_default=text("'registered'"))
    salutation: Mapped[str | None] = mapped_column(String(10))
    gender: Mapped[str] = mapped_column(String(20))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    street: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str] = mapped_column(
        String(5, collation="C")
    )  # C: prefix LIKE uses the index
    city: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))  # stored lower-case
    phone: Mapped[str | None] = mapped_column(String(30))
    birth_date: Mapped[date]
    health_insurer: Mapped[str | None] = mapped_column(String(200))
    insurance_number: Mapped[str | None] = mapped_column(String(20))
    gp_name: Mapped[str | None] = mapped_column(String(200))
    diagnosis: Mapped[str | None] = mapped_column(String(10))
    symptoms: Mapped[list[str] | None] = mapped_column(JSONB)
    prior_psychotherapy: Mapped[bool] = mapped_column(server_default=text("false"))
    last_therapy_end_date: Mapped[date | None]
    availability: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    max_travel_km: Mapped[int] = mapped_column(server_default=text("25"))
    travel_mode: Mapped[str] = mapped_column(String(10), server_default=text("'transit'"))
    preferred_therapist_gender: Mapped[str] = mapped_column(
        String(10), server_default=text("'any'")
    )
    preferred_therapy_method: Mapped[str] = mapped_column(String(20), server_default=text("'any'"))
    open_to_group_therapy: Mapped[bool] = mapped_column(server_default=text("false"))
    group_therapy_only: Mapped[bool] = mapped_column(server_default=text("false"))
    contract_signed: Mapped[bool] = mapped_column(server_default=text("false"))
    payment_received: Mapped[bool] = mapped_column(server_default=text("false"))
    consent_at: Mapped[datetime | None]
    consent_version: Mapped[str | None] = mapped_column(String(50))
    # the newest of the patient's searches matching has reported (search events): events of
    # different searches travel on different partitions, so an older search's may come late
    search_id: Mapped[int | None]
    # therapists never to be matched with this patient: [{therapist_id, reason, since}]
    excluded_therapists: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    # when the personal data was erased (GDPR Art. 17); the row keeps anonymous facts only
    erased_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
