"""Request, response and event payload schemas of matching_service."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

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
    inquiries: list[dict[str, Any]] = Field(
        description="every inquiry the search is in, oldest first: inquiry_id, therapist_id, "
        "status, created_at, sent_at, and the patient's patient_status and outcome there"
    )


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
    """Payload of search.paused|resumed|cancelled|claimed|succeeded|failed_trial (no staff
    reason): claimed, succeeded and failed_trial name the therapist of the trial."""

    previous_status: SearchStatus
    therapist_id: int | None = None
    # the inquiry whose acceptance claimed the search (none: a manual placement)
    inquiry_id: int | None = None


SEARCH_TOPIC = "search-events"
SEARCH_STARTED = EventType("search.started", 1, SearchStartedPayload, SEARCH_TOPIC)
SEARCH_PAUSED = EventType("search.paused", 1, SearchStatusChangedPayload, SEARCH_TOPIC)
SEARCH_RESUMED = EventType("search.resumed", 1, SearchStatusChangedPayload, SEARCH_TOPIC)
SEARCH_CANCELLED = EventType("search.cancelled", 1, SearchStatusChangedPayload, SEARCH_TOPIC)
SEARCH_CLAIMED = EventType("search.claimed", 1, SearchStatusChangedPayload, SEARCH_TOPIC)
SEARCH_SUCCEEDED = EventType("search.succeeded", 1, SearchStatusChangedPayload, SEARCH_TOPIC)
SEARCH_FAILED_TRIAL = EventType("search.failed_trial", 1, SearchStatusChangedPayload, SEARCH_TOPIC)

Outcome = Literal[
    "accepted",
    "rejected_capacity",
    "rejected_unsuitable",
    "rejected_other",
    "no_show",
    "in_trial_sessions",
]
ResponseType = Literal["full_acceptance", "partial_acceptance", "full_rejection", "no_response"]
InquiryStatus = Literal["unsent", "sent", "answered", "closed"]


class InquiryPatientSummary(BaseModel):
    """One patient of inquiry.created, anonymised (SPEC.md §6): what the email shows."""

    model_config = ConfigDict(extra="forbid")

    search_id: int
    patient_id: int
    # the reference the therapist quotes back (never a name)
    reference: str
    position: int
    age: int
    gender: str
    diagnosis: str | None
    symptoms: list[str]
    # statutory | private | unknown (the insurer's name is not sent)
    insurer_type: str
    availability: dict[str, list[str]]
    distance_km: float | None
    two_year_rule_flag: bool
    # outcome -> signed URL that records that answer for this patient
    answer_links: dict[str, str]


class InquiryCreatedPayload(BaseModel):
    """Payload of inquiry.created: everything communication needs to write to the therapist
    (contact data it fetches from therapist_service when it sends)."""

    model_config = ConfigDict(extra="forbid")

    inquiry_id: int
    therapist_id: int
    practice_key: str
    origin: Literal["bundle_run", "manual", "replacement"]
    bundle_run_id: int | None
    created_at: datetime
    # the answer links expire then
    answer_links_valid_until: datetime
    patients: list[InquiryPatientSummary]


class InquirySentPayload(BaseModel):
    """Payload of inquiry.sent (the email went out, or the call reached the therapist)."""

    model_config = ConfigDict(extra="forbid")

    inquiry_id: int
    therapist_id: int
    practice_key: str
    sent_at: datetime
    sent_via: Literal["email", "phone"]


class AnsweredPatient(BaseModel):
    """One patient of inquiry.answered."""

    model_config = ConfigDict(extra="forbid")

    search_id: int
    patient_id: int
    outcome: Outcome
    # the acceptance came after another therapist claimed the patient
    conflict: bool = False
    replacement_offers: list[int] = Field(default_factory=list)


class InquiryAnsweredPayload(BaseModel):
    """Payload of inquiry.answered (no staff notes: free text stays in matching)."""

    model_config = ConfigDict(extra="forbid")

    inquiry_id: int
    therapist_id: int
    practice_key: str
    response_type: ResponseType
    channel: Literal["email", "phone", "link"]
    answered_at: datetime
    patients: list[AnsweredPatient]


class InquiryPatientWithdrawnPayload(BaseModel):
    """Payload of inquiry.patient_withdrawn: a patient no longer offered in an open inquiry."""

    model_config = ConfigDict(extra="forbid")

    inquiry_id: int
    therapist_id: int
    practice_key: str
    search_id: int
    patient_id: int
    # claimed_elsewhere | search_cancelled | search_succeeded | ...
    reason: str
    # the therapist received the inquiry already: tell them
    inform_therapist: bool
    current_size: int


class InquiryFollowUpDuePayload(BaseModel):
    """Payload of inquiry.follow_up_due: sent, unanswered for FOLLOW_UP_AFTER_DAYS."""

    model_config = ConfigDict(extra="forbid")

    inquiry_id: int
    therapist_id: int
    practice_key: str
    sent_at: datetime
    due_since: datetime
    search_ids: list[int]


class InquiryClosedPayload(BaseModel):
    """Payload of inquiry.closed: no answer after INQUIRY_CLOSE_AFTER_DAYS (no_response)."""

    model_config = ConfigDict(extra="forbid")

    inquiry_id: int
    therapist_id: int
    practice_key: str
    response_type: Literal["no_response"]
    closed_at: datetime


INQUIRY_TOPIC = "inquiry-events"
INQUIRY_CREATED = EventType("inquiry.created", 1, InquiryCreatedPayload, INQUIRY_TOPIC)
INQUIRY_SENT = EventType("inquiry.sent", 1, InquirySentPayload, INQUIRY_TOPIC)
INQUIRY_ANSWERED = EventType("inquiry.answered", 1, InquiryAnsweredPayload, INQUIRY_TOPIC)
INQUIRY_PATIENT_WITHDRAWN = EventType(
    "inquiry.patient_withdrawn", 1, InquiryPatientWithdrawnPayload, INQUIRY_TOPIC
)
INQUIRY_FOLLOW_UP_DUE = EventType(
    "inquiry.follow_up_due", 1, InquiryFollowUpDuePayload, INQUIRY_TOPIC
)
INQUIRY_CLOSED = EventType("inquiry.closed", 1, InquiryClosedPayload, INQUIRY_TOPIC)


class CoolingStartedPayload(BaseModel):
    """Payload of cooling.started: the practice is not contacted before `until`."""

    model_config = ConfigDict(extra="forbid")

    practice_key: str
    therapist_ids: list[int]
    starts_on: date
    until: date
    inquiry_id: int | None


class CoolingOverriddenPayload(BaseModel):
    """Payload of cooling.overridden: staff ended the practice's cooling early (the reason
    is in matching's records, not in the event)."""

    model_config = ConfigDict(extra="forbid")

    practice_key: str
    therapist_ids: list[int]
    overridden_at: datetime
    # the practice's next contactable date now (none: contactable today)
    next_contactable_date: date | None


COOLING_TOPIC = "cooling-events"
COOLING_STARTED = EventType("cooling.started", 1, CoolingStartedPayload, COOLING_TOPIC)
COOLING_OVERRIDDEN = EventType("cooling.overridden", 1, CoolingOverriddenPayload, COOLING_TOPIC)


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


COMMUNICATION_TOPIC = "communication-events"


class EmailSentView(BaseModel):
    """What matching reads from email.sent: an inquiry email went out (other kinds ignored)."""

    model_config = ConfigDict(extra="ignore")

    email_id: int = Field(ge=1)
    kind: str = Field(max_length=50)
    inquiry_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    therapist_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    sent_at: datetime


class PhoneCallCompletedView(BaseModel):
    """What matching reads from phone_call.completed: an inquiry told by phone (a therapist
    without email) counts as sent when the call reached them."""

    model_config = ConfigDict(extra="ignore")

    call_id: int = Field(ge=1)
    purpose: str = Field(max_length=50)
    inquiry_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    therapist_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    outcome: Literal["reached", "not_reached"]
    completed_at: datetime


EMAIL_SENT = EventType("email.sent", 1, EmailSentView, COMMUNICATION_TOPIC)
PHONE_CALL_COMPLETED = EventType(
    "phone_call.completed", 1, PhoneCallCompletedView, COMMUNICATION_TOPIC
)

LOCATION_TOPIC = "location-events"
LOCATION_RESOLVED = EventType("location.resolved", 1, LocationResolvedView, LOCATION_TOPIC)
LOCATION_UNRESOLVED = EventType("location.unresolved", 1, LocationUnresolvedView, LOCATION_TOPIC)


# ---- bundle runs and inquiries


AS_OF_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
AS_OF_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _plausible_moment(value: datetime) -> datetime:
    if not AS_OF_EARLIEST <= value <= AS_OF_LATEST:
        raise ValueError(f"must lie between {AS_OF_EARLIEST:%Y} and {AS_OF_LATEST:%Y}")
    return value


# a moment a use case runs at (default now): with a time zone, within this century
AsOf = Annotated[AwareDatetime, AfterValidator(_plausible_moment)]

PostalCodePrefix = Annotated[str, StringConstraints(pattern=r"^[0-9]{2,5}$")]


class BundleRunCreate(BaseModel):
    """Body of `POST /api/bundle-runs`: a region, a list of therapists, or everywhere."""

    model_config = ConfigDict(extra="forbid")

    postal_code_prefix: PostalCodePrefix | None = None
    therapist_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = Field(
        default=None, min_length=1, max_length=10_000
    )
    dry_run: bool = False
    # the moment the run plans for (default now): cooling, waiting times and links count from it
    as_of: AsOf | None = None


class BundleRunInquiryOut(BaseModel):
    """One inquiry of a run (`id` null in a dry run), its patients in position order."""

    id: int | None
    therapist_id: int
    search_ids: list[int]


class BundleRunLeftOutOut(BaseModel):
    """A search of the run in no inquiry, and why."""

    search_id: int
    reason: str


class BundleRunTherapistOut(BaseModel):
    """A therapist of the run without an inquiry, and why."""

    therapist_id: int
    reason: str


class BundleRunSummaryOut(BaseModel):
    """A bundle run as listed: its request and figures (the lists are in the detail)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    dry_run: bool
    as_of: datetime
    postal_code_prefix: str | None
    therapist_ids: list[int] | None
    created_by: str
    created_at: datetime
    searches_considered: int
    therapists_considered: int
    inquiries_created: int
    seconds: float
    # where the time went: read (projections), bundle (the algorithm), write (rows, events)
    phase_seconds: dict[str, float]


class BundleRunOut(BundleRunSummaryOut):
    """A bundle run as stored: what it considered, created and left out, and why."""

    inquiries: list[BundleRunInquiryOut]
    left_out: list[BundleRunLeftOutOut]
    therapists_without_inquiry: list[BundleRunTherapistOut]


class BundleRunListQuery(PageQuery):
    """Pagination of `GET /api/bundle-runs` (newest first)."""


class InquiryCreate(BaseModel):
    """Body of `POST /api/inquiries`: staff bundle patients for one therapist by hand."""

    model_config = ConfigDict(extra="forbid")

    therapist_id: int = Field(ge=1, le=MAX_ID)
    # 1 .. BUNDLE_MAX_SIZE distinct searches (the maximum is a setting: checked by the service)
    search_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=100)


class InquiryPatientOut(BaseModel):
    """One patient of an inquiry, at its position, with the therapist's answer."""

    model_config = ConfigDict(from_attributes=True)

    search_id: int
    patient_id: int
    position: int
    status: Literal["open", "withdrawn", "answered"]
    outcome: Outcome | None
    conflict: bool
    replacement_offers: list[int] | None


class InquiryOut(BaseModel):
    """An inquiry with its patients in position order."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    therapist_id: int
    practice_key: str
    origin: Literal["bundle_run", "manual", "replacement"]
    bundle_run_id: int | None
    status: InquiryStatus
    created_at: datetime
    sent_at: datetime | None
    answered_at: datetime | None
    response_type: ResponseType | None
    channel: Literal["email", "phone", "link"] | None
    original_size: int
    current_size: int
    patients: list[InquiryPatientOut]


class InquiryListQuery(PageQuery):
    """Filters of `GET /api/inquiries` (newest first)."""

    therapist_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    status: InquiryStatus | None = None
    # sent, unanswered and sent more than FOLLOW_UP_AFTER_DAYS before `as_of`
    overdue: bool | None = None
    # of the therapist's postal code (matching's projection)
    postal_code_prefix: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,5}$")] | None = None
    # the moment `overdue` is judged at (default now)
    as_of: AsOf | None = None
