"""Request, response and event payload schemas of therapist_service (one source for OpenAPI)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from shared.events import EventType
from shared.fields import Gender, Name, Phone, PostalCode, Salutation, ShortText, Text
from shared.web import PageQuery
from shared.weekly import WeeklySchedule
from therapist_service.rules import (
    PRACTICE_KEY,
    THERAPY_METHODS,
    TherapistStatus,
    normalise_diagnosis_prefix,
)

TherapyMethod = Literal[THERAPY_METHODS]  # type: ignore[valid-type]
PatientGenderPreference = Literal["male", "female", "any"]
DiagnosisPrefix = Annotated[str, AfterValidator(normalise_diagnosis_prefix)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, max_length=50)]
Website = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, max_length=500, pattern=r"^https?://[^\s/$.?#][^\s]*\.[^\s]{2,}$"
    ),
]
Notes = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
Age = Annotated[int, Field(ge=18, le=120)]
PracticeKey = Annotated[str, StringConstraints(pattern=PRACTICE_KEY.pattern)]


def _distinct(values: list[Any] | None) -> list[Any] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("must not repeat a value")
    return values


class _TherapistFields(BaseModel):
    """Fields staff may set on a therapist (all optional here)."""

    model_config = ConfigDict(extra="forbid")

    salutation: Salutation | None = None
    title: Title | None = None
    street: Text | None = None
    city: Text | None = None
    phone: Phone | None = None
    fax: Phone | None = None
    email: EmailStr | None = None
    website: Website | None = None
    statutory_seat: bool = True
    phone_hours: WeeklySchedule = Field(default_factory=dict)
    working_hours: WeeklySchedule | None = None
    languages: Annotated[list[ShortText], Field(max_length=20)] = Field(default_factory=list)
    therapy_methods: Annotated[list[TherapyMethod], Field(max_length=len(THERAPY_METHODS))] = Field(
        default_factory=list
    )
    qualifications: Annotated[list[Text], Field(max_length=20)] = Field(default_factory=list)
    potentially_available: bool = False
    availability_notes: Notes | None = None
    informed_about_platform: bool = False
    preferred_diagnoses: Annotated[list[DiagnosisPrefix], Field(max_length=30)] = Field(
        default_factory=list
    )
    patient_age_min: Age | None = None
    patient_age_max: Age | None = None
    preferred_patient_gender: PatientGenderPreference = "any"
    prefers_group_therapy: bool = False

    @field_validator("therapy_methods", "preferred_diagnoses", "languages")
    @classmethod
    def _no_repeats(cls, value: list[Any] | None) -> list[Any] | None:
        return _distinct(value)

    @model_validator(mode="after")
    def _age_range(self) -> Self:
        low, high = self.patient_age_min, self.patient_age_max
        if low is not None and high is not None and low > high:
            raise ValueError("patient_age_min must not be greater than patient_age_max")
        return self


class TherapistCreate(_TherapistFields):
    """Body of `POST /api/therapists` (therapists outside the directory)."""

    gender: Gender | None = Field(
        default=None, description="Defaults from the salutation (Herr/Frau), else unspecified."
    )
    first_name: Name
    last_name: Name
    postal_code: PostalCode
    directory_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None


class TherapistUpdate(_TherapistFields):
    """Body of `PATCH /api/therapists/{id}`: only the given fields change.

    Blocking has its own operations (`/block`, `/unblock`); PATCH may retire an active
    therapist (`inactive`) or reactivate an inactive one.
    """

    gender: Gender | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    postal_code: PostalCode | None = None
    status: Literal["active", "inactive"] | None = None

    @field_validator(
        "gender",
        "first_name",
        "last_name",
        "postal_code",
        "status",
        "statutory_seat",
        "phone_hours",
        "languages",
        "therapy_methods",
        "qualifications",
        "potentially_available",
        "informed_about_platform",
        "preferred_diagnoses",
        "preferred_patient_gender",
        "prefers_group_therapy",
        mode="before",
    )
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null")
        return value


class BlockRequest(BaseModel):
    """Body of `POST /api/therapists/{id}/block`."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class TherapistListQuery(PageQuery):
    """Filters of `GET /api/therapists`."""

    status: TherapistStatus | None = None
    postal_code_prefix: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,5}$")] | None = None
    therapy_method: TherapyMethod | None = None
    potentially_available: bool | None = None
    informed_about_platform: bool | None = None
    practice_key: PracticeKey | None = None
    q: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=100)]
        | None
    ) = Field(default=None, description="Part of the first or last name (case-insensitive).")
    id: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] | None = Field(
        default=None,
        max_length=100,
        description="Only these therapists (`id=1&id=2`, at most 100): one request for the "
        "contact data of many (communication's call list).",
    )


class TherapistOut(BaseModel):
    """A therapist as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    status: TherapistStatus
    block_reason: str | None
    blocked_at: datetime | None
    salutation: Salutation | None
    title: str | None
    gender: Gender
    first_name: str
    last_name: str
    street: str | None
    postal_code: str
    city: str | None
    phone: str | None
    fax: str | None
    email: str | None
    website: str | None
    practice_key: str
    statutory_seat: bool
    phone_hours: dict[str, list[str]]
    working_hours: dict[str, list[str]] | None
    languages: list[str]
    therapy_methods: list[str]
    qualifications: list[str]
    potentially_available: bool
    availability_notes: str | None
    informed_about_platform: bool
    preferred_diagnoses: list[str]
    patient_age_min: int | None
    patient_age_max: int | None
    preferred_patient_gender: PatientGenderPreference
    prefers_group_therapy: bool
    next_contactable_date: date | None
    directory_id: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class PracticeOut(BaseModel):
    """`GET /api/practices/{key}`: the therapists who share one email address."""

    practice_key: str
    members: list[TherapistOut]


# ---------------------------------------------------------------- events


class TherapistEventPayload(BaseModel):
    """Payload of every therapist event: what matching and communication need.

    A practice's address is public (the directory lists it); contact details are not in
    events: `has_email` says whether one exists, communication fetches it over REST.
    """

    model_config = ConfigDict(extra="forbid")

    therapist_id: int
    version: int = Field(ge=1)
    status: TherapistStatus
    gender: Gender
    postal_code: PostalCode
    city: str | None
    street: str | None
    practice_key: str
    has_email: bool
    statutory_seat: bool
    therapy_methods: list[str]
    languages: list[str]
    phone_hours: dict[str, list[str]]
    working_hours: dict[str, list[str]] | None
    potentially_available: bool
    informed_about_platform: bool
    preferred_diagnoses: list[str]
    patient_age_min: int | None
    patient_age_max: int | None
    preferred_patient_gender: PatientGenderPreference
    prefers_group_therapy: bool
    next_contactable_date: date | None
    changed_fields: list[str] = Field(default_factory=list)


TOPIC = "therapist-events"
THERAPIST_CREATED = EventType("therapist.created", 1, TherapistEventPayload, TOPIC)
THERAPIST_UPDATED = EventType("therapist.updated", 1, TherapistEventPayload, TOPIC)
THERAPIST_BLOCKED = EventType("therapist.blocked", 1, TherapistEventPayload, TOPIC)
THERAPIST_UNBLOCKED = EventType("therapist.unblocked", 1, TherapistEventPayload, TOPIC)


# ---------------------------------------------------------------- directory import

# Entries per directory file; the body limit (DIRECTORY_IMPORT_MAX_BYTES) bounds it first
DIRECTORY_FILE_MAX_ENTRIES = 50_000


class DirectoryFile(BaseModel):
    """Body of `POST /api/therapist-imports`: one file of the 116117 directory (one
    postal-code area), as scraped. Each entry is checked on its own by the import: a broken
    one is reported in `errors` and the rest of the file imports."""

    model_config = ConfigDict(extra="ignore")

    metadata: dict[str, Any] = Field(description="What the scrape says about the file.")
    therapists: list[dict[str, Any]] = Field(
        max_length=DIRECTORY_FILE_MAX_ENTRIES,
        description="Entries: `id`, `basic_info{salutation,title,first_name,last_name}`, "
        "`location{street,house_number,postal_code,city}`, `contact{phone,email,fax}`, "
        '`languages[]`, `therapy_methods[]`, `telephone_hours{"Mo": ["8:00-9:00"]}`.',
    )


class ImportProblem(BaseModel):
    """A directory entry that was skipped by a rule or could not be imported."""

    directory_id: str | None
    reason: str
    file: str | None = None


class DirectoryImportOut(BaseModel):
    """The stored report of one directory import run."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    source: str
    created: int
    updated: int
    unchanged: int
    skipped: list[ImportProblem]
    errors: list[ImportProblem]
    started_at: datetime
    finished_at: datetime | None


class DirectoryImportSummary(BaseModel):
    """One directory import run in the list of reports: its counts only (the skipped and
    broken entries themselves are at `GET /api/therapist-imports/{id}`)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    source: str
    created: int
    updated: int
    unchanged: int
    skipped_count: int
    error_count: int
    started_at: datetime
    finished_at: datetime | None


# ---------------------------------------------------------------- consumed events


class CoolingStartedView(BaseModel):
    """What therapist_service reads from matching's cooling.started (tolerant of new fields)."""

    model_config = ConfigDict(extra="ignore")

    practice_key: str
    therapist_ids: list[int]
    until: date


class CoolingOverriddenView(BaseModel):
    """What therapist_service reads from matching's cooling.overridden."""

    model_config = ConfigDict(extra="ignore")

    practice_key: str
    therapist_ids: list[int]
    next_contactable_date: date | None


COOLING_TOPIC = "cooling-events"
COOLING_STARTED = EventType("cooling.started", 1, CoolingStartedView, COOLING_TOPIC)
COOLING_OVERRIDDEN = EventType("cooling.overridden", 1, CoolingOverriddenView, COOLING_TOPIC)
