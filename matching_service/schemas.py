"""Request, response and event payload schemas of matching_service."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events import EventType
from shared.web import MAX_ID

SearchStatus = Literal["active", "paused", "in_trial", "successful", "cancelled"]


class SearchCreate(BaseModel):
    """Body of `POST /api/patient-searches`."""

    model_config = ConfigDict(extra="forbid")

    patient_id: int = Field(ge=1, le=MAX_ID)


class SearchOut(BaseModel):
    """A patient search as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    patient_id: int
    status: SearchStatus
    waiting_since: datetime
    contact_budget: int
    created_at: datetime
    updated_at: datetime


# ---------------------------------------------------------------- consumed events


class PatientSnapshot(BaseModel):
    """What matching reads from patient.created / patient.updated (tolerant of new fields)."""

    model_config = ConfigDict(extra="ignore")

    patient_id: int
    version: int = Field(ge=1)
    status: str
    gender: str
    birth_date: date
    postal_code: str
    diagnosis: str | None
    symptoms: list[str] | None = None
    availability: dict[str, list[str]]
    max_travel_km: int
    travel_mode: str
    preferred_therapist_gender: str
    preferred_therapy_method: str
    open_to_group_therapy: bool
    group_therapy_only: bool = False
    qualified: bool
    unmet_criteria: list[str]
    two_year_rule_flag: bool


PATIENT_TOPIC = "patient-events"
PATIENT_CREATED = EventType("patient.created", 1, PatientSnapshot, PATIENT_TOPIC)
PATIENT_UPDATED = EventType("patient.updated", 1, PatientSnapshot, PATIENT_TOPIC)


class TherapistSnapshot(BaseModel):
    """What matching reads from therapist events (tolerant of new fields)."""

    model_config = ConfigDict(extra="ignore")

    therapist_id: int
    version: int = Field(ge=1)
    status: str
    gender: str
    postal_code: str
    city: str | None = None
    street: str | None = None
    practice_key: str
    has_email: bool
    statutory_seat: bool = True
    therapy_methods: list[str]
    languages: list[str] = Field(default_factory=list)
    phone_hours: dict[str, list[str]] = Field(default_factory=dict)
    working_hours: dict[str, list[str]] | None = None
    potentially_available: bool = False
    informed_about_platform: bool = False
    preferred_diagnoses: list[str] = Field(default_factory=list)
    patient_age_min: int | None = None
    patient_age_max: int | None = None
    preferred_patient_gender: str = "any"
    prefers_group_therapy: bool = False
    next_contactable_date: date | None = None


THERAPIST_TOPIC = "therapist-events"
THERAPIST_EVENTS = tuple(
    EventType(name, 1, TherapistSnapshot, THERAPIST_TOPIC)
    for name in (
        "therapist.created",
        "therapist.updated",
        "therapist.blocked",
        "therapist.unblocked",
    )
)

# ---------------------------------------------------------------- produced events


class SearchStartedPayload(BaseModel):
    """Payload of search.started."""

    model_config = ConfigDict(extra="forbid")

    search_id: int
    patient_id: int
    status: SearchStatus
    waiting_since: datetime
    contact_budget: int


SEARCH_TOPIC = "search-events"
SEARCH_STARTED = EventType("search.started", 1, SearchStartedPayload, SEARCH_TOPIC)


class LocationResolvedView(BaseModel):
    """What matching reads from location.resolved (tolerant of new fields)."""

    model_config = ConfigDict(extra="ignore")

    entity_type: Literal["patient", "therapist"]
    entity_id: int = Field(ge=1, le=MAX_ID)
    version: int = Field(ge=1)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    precision: str = Field(max_length=10)
    source: str = Field(max_length=30)


class LocationUnresolvedView(BaseModel):
    """What matching reads from location.unresolved (tolerant of new fields)."""

    model_config = ConfigDict(extra="ignore")

    entity_type: Literal["patient", "therapist"]
    entity_id: int = Field(ge=1, le=MAX_ID)
    version: int = Field(ge=1)
    reason: str = Field(max_length=100)


LOCATION_TOPIC = "location-events"
LOCATION_RESOLVED = EventType("location.resolved", 1, LocationResolvedView, LOCATION_TOPIC)
LOCATION_UNRESOLVED = EventType("location.unresolved", 1, LocationUnresolvedView, LOCATION_TOPIC)
