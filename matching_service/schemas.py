"""Request, response and event payload schemas of matching_service."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.events import EventType
from shared.web import MAX_ID, MultilineText, PageQuery

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


class SearchListQuery(PageQuery):
    """Filters of `GET /api/patient-searches`."""

    status: SearchStatus | None = None
    postal_code_prefix: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,5}$")] | None = None
    waiting_longer_than_days: int | None = Field(default=None, ge=0, le=36_500)


StaffText = Annotated[MultilineText, StringConstraints(min_length=1, max_length=2000)]


class SearchStatusChange(BaseModel):
    """Body of `PATCH /api/patient-searches/{id}`: pause, resume or cancel, with a reason."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["active", "paused", "cancelled"]
    reason: StaffText | None = None


class ContactRequest(BaseModel):
    """Body of `POST /api/patient-searches/{id}/contact-requests`: contacts to add."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=100)


class ExclusionCreate(BaseModel):
    """Body of `POST /api/patient-searches/{id}/exclusions`."""

    model_config = ConfigDict(extra="forbid")

    therapist_id: int = Field(ge=1, le=MAX_ID)
    reason: StaffText


class ExclusionOut(BaseModel):
    """A therapist excluded from a search."""

    model_config = ConfigDict(from_attributes=True)

    therapist_id: int
    reason: str
    created_at: datetime


class SearchDetailOut(SearchOut):
    """A patient search with its budget, exclusions and inquiries."""

    status_reason: str | None
    contacts_used: int
    contact_budget_left: int
    placed_therapist_id: int | None
    exclusions: list[ExclusionOut]
    inquiries: list[dict[str, Any]] = Field(description="the search's inquiries (none yet)")


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


class SearchStatusChangedPayload(SearchStartedPayload):
    """Payload of search.paused, search.resumed and search.cancelled (no staff reason)."""

    previous_status: SearchStatus


SEARCH_TOPIC = "search-events"
SEARCH_STARTED = EventType("search.started", 1, SearchStartedPayload, SEARCH_TOPIC)
SEARCH_PAUSED = EventType("search.paused", 1, SearchStatusChangedPayload, SEARCH_TOPIC)
SEARCH_RESUMED = EventType("search.resumed", 1, SearchStatusChangedPayload, SEARCH_TOPIC)
SEARCH_CANCELLED = EventType("search.cancelled", 1, SearchStatusChangedPayload, SEARCH_TOPIC)


class LocationResolvedView(BaseModel):
    """What matching reads from location.resolved (tolerant of new fields)."""

    model_config = ConfigDict(extra="ignore")

    entity_type: Literal["patient", "therapist"]
    entity_id: int = Field(ge=1, le=MAX_ID)
    version: int = Field(ge=1)
    postal_code: str | None = Field(default=None, max_length=5)
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
    postal_code: str | None = Field(default=None, max_length=5)
    reason: str = Field(max_length=100)


LOCATION_TOPIC = "location-events"
LOCATION_RESOLVED = EventType("location.resolved", 1, LocationResolvedView, LOCATION_TOPIC)
LOCATION_UNRESOLVED = EventType("location.unresolved", 1, LocationUnresolvedView, LOCATION_TOPIC)
