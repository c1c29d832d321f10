"""Request, response and event payload schemas of patient_service (one source for OpenAPI)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

from patient_service.rules import SYMPTOMS, PatientStatus, age_on
from shared.events import EventType
from shared.fields import (
    Gender,
    Name,
    Phone,
    PostalCode,
    QueryTimestamp,
    Salutation,
    ShortText,
    Text,
)
from shared.web import PageQuery
from shared.weekly import WeeklySchedule

TravelMode = Literal["car", "transit"]
TherapistGenderPreference = Literal["male", "female", "any"]
TherapyMethod = Literal["any", "behavioural", "psychodynamic", "analytic", "systemic"]
Symptom = Literal[SYMPTOMS]  # type: ignore[valid-type]
Diagnosis = Annotated[
    str,
    BeforeValidator(lambda value: value.strip().upper() if isinstance(value, str) else value),
    StringConstraints(pattern=r"^F[0-9]{2}(\.[0-9]{1,2})?$"),
]


Availability = WeeklySchedule


def _adult_birth_date(value: date) -> date:
    today = datetime.now(UTC).date()
    if value >= today:
        raise ValueError("must be in the past")
    if age_on(value, today) < 18:
        raise ValueError("patient must be at least 18 years old")
    return value


def _past_date(value: date) -> date:
    if value > datetime.now(UTC).date():
        raise ValueError("must not be in the future")
    return value


# how far a client's clock may run ahead of ours before its "now" counts as the future
CLOCK_SKEW = timedelta(minutes=5)

BirthDate = Annotated[date, AfterValidator(_adult_birth_date)]
PastDate = Annotated[date, AfterValidator(_past_date)]


class _PatientFields(BaseModel):
    """Fields staff may set on a patient (all optional here)."""

    model_config = ConfigDict(extra="forbid")

    salutation: Salutation | None = None
    street: Text | None = None
    city: Text | None = None
    email: EmailStr | None = None
    phone: Phone | None = None
    health_insurer: Text | None = None
    insurance_number: Annotated[str, StringConstraints(pattern=r"^[A-Z][0-9]{9}$")] | None = None
    gp_name: Text | None = None
    diagnosis: Diagnosis | None = None
    symptoms: Annotated[list[Symptom], Field(min_length=1, max_length=6)] | None = None
    prior_psychotherapy: bool = False
    last_therapy_end_date: PastDate | None = None
    availability: Availability = Field(default_factory=dict)
    max_travel_km: Annotated[int, Field(ge=1, le=200)] = 25
    travel_mode: TravelMode = "transit"
    preferred_therapist_gender: TherapistGenderPreference = "any"
    preferred_therapy_method: TherapyMethod = "any"
    open_to_group_therapy: bool = False
    group_therapy_only: bool = False
    contract_signed: bool = False
    payment_received: bool = False
    consent_at: datetime | None = None
    consent_version: ShortText | None = None

    @field_validator("symptoms")
    @classmethod
    def _distinct_symptoms(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("symptoms must not repeat")
        return value

    @field_validator("consent_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("must include a timezone (UTC), e.g. 2026-11-01T10:00:00Z")
        # in UTC: PostgreSQL refuses offsets beyond +-15:59 that Python accepts (up to 23:59)
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC") from None
        if value > datetime.now(UTC) + CLOCK_SKEW:
            raise ValueError("must not be in the future")
        return value


class PatientCreate(_PatientFields):
    """Body of `POST /api/patients`."""

    gender: Gender
    first_name: Name
    last_name: Name
    postal_code: PostalCode
    birth_date: BirthDate


class PatientUpdate(_PatientFields):
    """Body of `PATCH /api/patients/{id}`: only the given fields change.

    Fields without a null in their type (booleans, travel limits, availability, ...) reject
    an explicit null; the optional ones accept it to clear the value.
    """

    gender: Gender | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    postal_code: PostalCode | None = None
    birth_date: BirthDate | None = None
    status: PatientStatus | None = Field(
        default=None,
        description="Staff move a patient to search_cancelled, therapy_completed or "
        "therapy_aborted along the lifecycle (409 otherwise); searching and in_therapy are set "
        "by the patient's search only (422).",
    )

    @field_validator("gender", "first_name", "last_name", "postal_code", "birth_date", "status")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null")
        return value


class CreateQuery(BaseModel):
    """Query of `POST /api/patients`: `force=true` creates despite a probable duplicate."""

    model_config = ConfigDict(extra="forbid")

    force: bool = False


class PatientListQuery(PageQuery):
    """Filters of `GET /api/patients`."""

    status: PatientStatus | None = None
    postal_code_prefix: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,5}$")] | None = None
    search: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=100)]
        | None
    ) = Field(
        default=None,
        description="Free text found in first name, last name or email (case-insensitive); "
        "the patients it finds are recorded in the audit log as read.",
    )
    created_from: QueryTimestamp | None = Field(default=None, description="created at or after")
    created_to: QueryTimestamp | None = Field(default=None, description="created before")
    sort: Literal["-created_at", "created_at", "last_name", "-last_name"] = Field(
        default="-created_at", description="order: created_at or last_name, `-` descending"
    )


class ExclusionCreate(BaseModel):
    """Body of `POST /api/patients/{id}/exclusions`: a therapist never matched with the
    patient again."""

    model_config = ConfigDict(extra="forbid")

    therapist_id: Annotated[int, Field(ge=1, le=2**31 - 1)]
    reason: Text


class ExcludedTherapist(BaseModel):
    """One therapist the patient is never matched with."""

    therapist_id: int
    reason: str
    since: datetime


class SymptomsOut(BaseModel):
    """`GET /api/symptoms`: the symptom catalogue patients choose from."""

    symptoms: list[str]


class ExportQuery(BaseModel):
    """Query of `GET /api/patients/{id}/export`: `format=zip` for the document in a ZIP."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["json", "zip"] = "json"


class PatientExport(BaseModel):
    """`GET /api/patients/{id}/export`: everything the platform holds about a patient."""

    patient_id: int
    exported_at: datetime
    patient: dict[str, Any]
    audit_events: list[dict[str, Any]]
    services: dict[str, Any] = Field(
        description="each other service's part (`GET /api/patients/{id}/data`) by name"
    )
    missing: list[str] = Field(description="services whose part could not be fetched")


class PatientOut(BaseModel):
    """A patient as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    status: PatientStatus
    salutation: Salutation | None
    gender: Gender
    first_name: str
    last_name: str
    street: str | None
    postal_code: str
    city: str | None
    email: str | None
    phone: str | None
    birth_date: date
    health_insurer: str | None
    insurance_number: str | None
    gp_name: str | None
    diagnosis: str | None
    symptoms: list[str] | None
    prior_psychotherapy: bool
    last_therapy_end_date: date | None
    availability: dict[str, list[str]]
    max_travel_km: int
    travel_mode: TravelMode
    preferred_therapist_gender: TherapistGenderPreference
    preferred_therapy_method: TherapyMethod
    open_to_group_therapy: bool
    group_therapy_only: bool
    contract_signed: bool
    payment_received: bool
    consent_at: datetime | None
    consent_version: str | None
    excluded_therapists: list[ExcludedTherapist]
    erased_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class QualificationOut(BaseModel):
    """`GET /api/patients/{id}/qualification`."""

    patient_id: int
    qualified: bool
    unmet_criteria: list[str]
    two_year_rule_flag: bool
    weekly_hours: float


# ---------------------------------------------------------------- events


class PatientEventPayload(BaseModel):
    """Payload of patient.created / patient.updated: no direct identifiers (business-rules.md
    §12)."""

    model_config = ConfigDict(extra="forbid")

    patient_id: int
    version: int = Field(ge=1)
    status: PatientStatus
    gender: Gender
    birth_date: date
    postal_code: PostalCode
    diagnosis: str | None
    symptoms: list[str] | None
    availability: dict[str, list[str]]
    max_travel_km: int
    travel_mode: TravelMode
    preferred_therapist_gender: TherapistGenderPreference
    preferred_therapy_method: TherapyMethod
    open_to_group_therapy: bool
    group_therapy_only: bool
    qualified: bool
    unmet_criteria: list[str]
    two_year_rule_flag: bool
    changed_fields: list[str] = Field(default_factory=list)
    # therapists the patient is never matched with (ids only: reasons stay here)
    excluded_therapist_ids: list[int] = Field(default_factory=list)


class PatientErasedPayload(BaseModel):
    """Payload of patient.erased: every service drops what it holds about the patient."""

    model_config = ConfigDict(extra="forbid")

    patient_id: int


PATIENT_TOPIC = "patient-events"
PATIENT_CREATED = EventType("patient.created", 1, PatientEventPayload, PATIENT_TOPIC)
PATIENT_UPDATED = EventType("patient.updated", 1, PatientEventPayload, PATIENT_TOPIC)
PATIENT_ERASED = EventType("patient.erased", 1, PatientErasedPayload, PATIENT_TOPIC)


# ---------------------------------------------------------------- consumed events


class SearchStartedView(BaseModel):
    """What patient_service reads from matching's search.started (tolerant of new fields)."""

    model_config = ConfigDict(extra="ignore")

    search_id: int
    patient_id: int


class SearchCancelledView(BaseModel):
    """What patient_service reads from matching's search.cancelled (tolerant of new fields)."""

    model_config = ConfigDict(extra="ignore")

    search_id: int
    patient_id: int


class SearchTrialView(BaseModel):
    """What patient_service reads from matching's search.succeeded / search.failed_trial
    (tolerant of new fields: the therapist stays with matching)."""

    model_config = ConfigDict(extra="ignore")

    search_id: int
    patient_id: int


SEARCH_TOPIC = "search-events"
SEARCH_STARTED = EventType("search.started", 1, SearchStartedView, SEARCH_TOPIC)
SEARCH_CANCELLED = EventType("search.cancelled", 1, SearchCancelledView, SEARCH_TOPIC)
SEARCH_SUCCEEDED = EventType("search.succeeded", 1, SearchTrialView, SEARCH_TOPIC)
SEARCH_FAILED_TRIAL = EventType("search.failed_trial", 1, SearchTrialView, SEARCH_TOPIC)
