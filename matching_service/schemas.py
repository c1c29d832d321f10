"""Request, response and event payload schemas of matching_service."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    field_validator,
    model_validator,
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
    # therapists the patient is never matched with (absent in older events: none)
    excluded_therapist_ids: list[int] = Field(default_factory=list)


class PatientErasedView(BaseModel):
    """What matching reads from patient.erased (tolerant of new fields)."""

    model_config = ConfigDict(extra="ignore")

    patient_id: int


PATIENT_TOPIC = "patient-events"
PATIENT_CREATED = EventType("patient.created", 1, PatientSnapshot, PATIENT_TOPIC)
PATIENT_UPDATED = EventType("patient.updated", 1, PatientSnapshot, PATIENT_TOPIC)
PATIENT_ERASED = EventType("patient.erased", 1, PatientErasedView, PATIENT_TOPIC)


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
    """One patient of inquiry.created, anonymised (business-rules.md §6): what the email shows."""

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
    # outcome -> signed URL that records that answer for this patient (accepted,
    # rejected_capacity, rejected_unsuitable, rejected_other)
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


# ---- answers, trial outcomes and manual placements


class AnswerPatientIn(BaseModel):
    """One patient's outcome in `PUT /api/inquiries/{id}/response`."""

    model_config = ConfigDict(extra="forbid")

    search_id: int = Field(ge=1, le=MAX_ID)
    outcome: Outcome


class InquiryResponseIn(BaseModel):
    """Body of `PUT /api/inquiries/{id}/response`: the answer for every patient of the
    inquiry (withdrawn ones included) and the response type the outcomes make."""

    model_config = ConfigDict(extra="forbid")

    response_type: ResponseType
    channel: Literal["email", "phone", "link"]
    patients: list[AnswerPatientIn] = Field(min_length=1, max_length=100)
    notes: StaffText | None = None

    @field_validator("patients")
    @classmethod
    def _each_patient_once(cls, patients: list[AnswerPatientIn]) -> list[AnswerPatientIn]:
        counts = Counter(p.search_id for p in patients)
        twice = sorted(search_id for search_id, n in counts.items() if n > 1)
        if twice:
            raise ValueError(f"search ids answered more than once: {twice}")
        return patients


class AnswerConflictOut(BaseModel):
    """An acceptance that lost: the patient is no longer available; these are offered."""

    search_id: int
    replacement_offers: list[int]


class TrialOutcomeIn(BaseModel):
    """Body of `POST /api/patient-searches/{id}/trial-outcome`."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["success", "failure"]


class PlacementIn(BaseModel):
    """Body of `POST /api/patient-searches/{id}/placements` (a therapist called with an
    opening)."""

    model_config = ConfigDict(extra="forbid")

    therapist_id: int = Field(ge=1, le=MAX_ID)


EMAIL_SENT = EventType("email.sent", 1, EmailSentView, COMMUNICATION_TOPIC)
PHONE_CALL_COMPLETED = EventType(
    "phone_call.completed", 1, PhoneCallCompletedView, COMMUNICATION_TOPIC
)

LOCATION_TOPIC = "location-events"
LOCATION_RESOLVED = EventType("location.resolved", 1, LocationResolvedView, LOCATION_TOPIC)
LOCATION_UNRESOLVED = EventType("location.unresolved", 1, LocationUnresolvedView, LOCATION_TOPIC)


# ---- contactability and cooling overrides


def _iso_date_text(value: Any) -> Any:
    """A query's date only as YYYY-MM-DD text (no number read as a timestamp)."""
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("must be a date as YYYY-MM-DD")
    if not isinstance(value, str | date):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


def _plausible_date(value: date) -> date:
    if not date(1900, 1, 1) <= value <= date(2999, 12, 31):
        raise ValueError("must be between 1900-01-01 and 2999-12-31")
    return value


QueryDate = Annotated[date, BeforeValidator(_iso_date_text), AfterValidator(_plausible_date)]


class ContactabilityQuery(BaseModel):
    """Query of `GET /api/contactability/{therapist_id}`."""

    model_config = ConfigDict(extra="forbid")

    as_of: QueryDate | None = Field(
        default=None, description="the day asked about (default: today)"
    )


class ContactabilityOut(BaseModel):
    """Whether a therapist may get an inquiry on a day, and every reason why not."""

    model_config = ConfigDict(from_attributes=True)

    therapist_id: int
    practice_key: str
    contactable: bool
    next_contactable_date: date | None = Field(
        description="the first day the practice's cooling allows a contact; null when it is "
        "not cooling (another reason may still hold the therapist back)"
    )
    reasons: list[str] = Field(
        description="every reason against a contact: `status_<status>` (not active), "
        "`cooling` (a cooling period of the practice in force), `open_inquiry` (the practice "
        "has an unsent, or sent and unanswered, inquiry), `no_location: <why>`; empty when "
        "contactable"
    )


class CoolingOverride(BaseModel):
    """Body of `POST /api/contactability/{therapist_id}/override`: why cooling ends early."""

    model_config = ConfigDict(extra="forbid")

    reason: StaffText


# ---- contact log


class ContactLogQuery(BaseModel):
    """Query of `GET /api/patient-searches/{id}/contact-log`."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["json", "csv"] = Field(
        default="json", description="`csv`: text/csv (semicolons, German headers) instead"
    )


class ContactLogEntry(BaseModel):
    """One inquiry the search's patient was in, and what came of it for that patient."""

    model_config = ConfigDict(from_attributes=True)

    inquiry_id: int
    therapist_id: int
    created_at: datetime
    inquiry_status: InquiryStatus
    sent_at: datetime | None
    sent_via: Literal["email", "phone"] | None
    answered_at: datetime | None
    answer_channel: Literal["email", "phone", "link"] | None = Field(
        description="how the therapist answered (null: no answer)"
    )
    outcome: Outcome | None = Field(description="the therapist's answer for this patient")
    closed_at: datetime | None = Field(
        description="closed without answer (no_response) after INQUIRY_CLOSE_AFTER_DAYS"
    )
    withdrawn: bool = Field(description="the patient was taken out of the inquiry")
    withdrawn_at: datetime | None
    conflict: bool = Field(
        description="the therapist accepted after another therapist had claimed the patient"
    )


class ContactLogOut(RootModel[list[ContactLogEntry]]):
    """Every inquiry of a search, oldest first (the evidence for the insurer, §13(3) SGB V)."""


# ---- analytics


class AnalyticsQuery(BaseModel):
    """Query of `GET /api/analytics/summary`: a window of days (UTC, both included)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: QueryDate | None = Field(
        default=None, alias="from", description="first day (default: 89 days before `to`)"
    )
    to: QueryDate | None = Field(default=None, description="last day (default: today)")
    postal_code_prefix: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,5}$")] | None = Field(
        default=None, description="only patients whose postal code starts with it"
    )

    @model_validator(mode="after")
    def _window_in_order(self) -> AnalyticsQuery:
        if self.from_ is not None and self.to is not None and self.from_ > self.to:
            raise ValueError("`from` must not be after `to`")
        return self


class AnalyticsSummaryOut(BaseModel):
    """The numbers the business watches (business-rules.md §9). "In the window": the timestamp's UTC
    day lies in [from, to]; "now": the state at the time of the request. With
    `postal_code_prefix`, searches and acceptances count when their patient's postal code
    starts with it, inquiries when at least one of their patients' does."""

    model_config = ConfigDict(from_attributes=True)

    window_from: date
    window_to: date
    postal_code_prefix: str | None
    searches_started: int = Field(description="searches created in the window")
    searches_placed: int = Field(
        description="searches claimed by an acceptance or manual placement in the window "
        "(`claimed_at`)"
    )
    days_to_placement_median: float | None = Field(
        description="median of `claimed_at - waiting_since` in days over the searches placed "
        "in the window (continuous percentile); null without placements"
    )
    days_to_placement_p90: float | None = Field(
        description="90th percentile of the same (continuous); null without placements"
    )
    inquiries_created: int = Field(description="inquiries created in the window")
    inquiries_answered: int = Field(description="inquiries answered in the window")
    acceptances_per_inquiry: float | None = Field(
        description="patients accepted in the inquiries answered in the window, divided by "
        "those inquiries; null when none was answered"
    )
    inquiries_sent: int = Field(description="inquiries sent in the window")
    answered_within_7_days_share: float | None = Field(
        description="share (0..1) of the inquiries sent in the window that were answered at "
        "most 7 days after sending (one sent recently and not yet answered counts as not "
        "answered); null when none was sent"
    )
    acceptances: int = Field(
        description="acceptances (patient outcome `accepted`) recorded in the window"
    )
    conflicting_acceptances: int = Field(
        description="those of them that came after another therapist had claimed the patient"
    )
    conflict_rate: float | None = Field(
        description="conflicting acceptances / acceptances; null without acceptances"
    )
    cooling_violations: int = Field(
        description="inquiries created in the window for a practice while one of its cooling "
        "periods was in force (recorded before the inquiry, started on or before its day, "
        "ending after it, not overridden before it); replacement offers are exempt (business "
        "rules §8). Must be 0"
    )
    active_searches: int = Field(description="searches active now")
    concurrent_inquiries_avg: float | None = Field(
        description="open inquiries (unsent, or sent and unanswered) in which an active "
        "search's patient is still offered, averaged over the active searches now (zeros "
        "count); null without active searches"
    )
    concurrent_inquiries_max: int | None = Field(
        description="the most such inquiries of one active search now"
    )
    searches_waiting_over_30_days: int = Field(
        description="active searches now whose `waiting_since` is more than 30 days ago"
    )


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


class InquiryAnswerOut(InquiryOut):
    """An inquiry with its recorded answer and the conflicts its acceptances met."""

    conflicts: list[AnswerConflictOut] = Field(
        description="acceptances of patients claimed by another therapist (or withdrawn from "
        "this inquiry): each with replacement patients eligible for this therapist"
    )


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
