"""Request, response and event payload schemas of communication_service."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from shared.events import EventType
from shared.web import MAX_ID, MultilineText, PageQuery

TOPIC = "communication-events"

EmailKind = Literal[
    "inquiry", "withdrawal", "conflict", "search_started", "inquiries_this_week", "place_found"
]
EmailStatus = Literal["queued", "sent", "failed", "cancelled", "replaced_by_call"]
CallPurpose = Literal["inquiry", "follow_up"]
CallStatus = Literal["scheduled", "reached", "not_reached", "cancelled"]


def _calendar_date(value: object) -> object:
    # a query string is text: '0' must not become 1970-01-01 (pydantic's lax int -> date)
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("must be a date YYYY-MM-DD")
    if not isinstance(value, str | date):
        raise ValueError("must be a date YYYY-MM-DD")
    return value


def _in_range(value: date) -> date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"must be between {FIRST_DAY} and {LAST_DAY}")
    return value


FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)
# a day in a query string: YYYY-MM-DD only, far enough from the calendar's ends that its
# bounds in any time zone exist
QueryDate = Annotated[date, BeforeValidator(_calendar_date), AfterValidator(_in_range)]

# ---------------------------------------------------------------- emails


class EmailListQuery(PageQuery):
    """Filters of `GET /api/emails` (`date`: created that day, UTC)."""

    status: EmailStatus | None = None
    kind: EmailKind | None = None
    therapist_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    patient_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    inquiry_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    # `date` in the query string (the attribute name would hide the type)
    day: QueryDate | None = Field(default=None, alias="date")


class EmailOut(BaseModel):
    """An email as the staff list shows it (no content)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: EmailKind
    status: EmailStatus
    therapist_id: int | None
    patient_id: int | None
    inquiry_id: int | None
    practice_key: str | None
    subject: str | None
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class EmailDetailOut(EmailOut):
    """An email with its rendered content (filled when it was sent)."""

    to_address: str | None
    body_text: str | None
    body_html: str | None


# ---------------------------------------------------------------- phone calls


class CallListQuery(BaseModel):
    """`GET /api/phone-calls?date=YYYY-MM-DD`: the calls of one day (Europe/Berlin)."""

    model_config = ConfigDict(extra="forbid")

    day: QueryDate = Field(alias="date")
    status: CallStatus | None = None


class PhoneCallOut(BaseModel):
    """A phone call as the call list shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    therapist_id: int
    inquiry_id: int
    purpose: CallPurpose
    status: CallStatus
    attempt: int
    scheduled_at: datetime
    patient_references: list[str]
    notes: str | None
    completed_at: datetime | None


class CallListItem(PhoneCallOut):
    """A call of the day's list, with whom to call (fetched from therapist_service)."""

    therapist_name: str | None
    therapist_phone: str | None


class CallListOut(BaseModel):
    """`GET /api/phone-calls?date=...`: the day's calls in slot order."""

    date: date
    calls: list[CallListItem]


CallNotes = Annotated[MultilineText, StringConstraints(min_length=1, max_length=2000)]


class CallOutcome(BaseModel):
    """Body of `PATCH /api/phone-calls/{id}`: how the call went."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["reached", "not_reached"]
    notes: CallNotes | None = None


class CallOutcomeOut(BaseModel):
    """The call as recorded, and the next attempt when it did not reach the therapist."""

    call: PhoneCallOut
    next_call: PhoneCallOut | None


# ---------------------------------------------------------------- produced events


class EmailQueuedPayload(BaseModel):
    """Payload of email.queued."""

    model_config = ConfigDict(extra="forbid")

    email_id: int
    kind: EmailKind
    inquiry_id: int | None
    therapist_id: int | None
    patient_id: int | None
    queued_at: datetime


class EmailSentPayload(BaseModel):
    """Payload of email.sent (matching marks an inquiry `sent` on kind 'inquiry')."""

    model_config = ConfigDict(extra="forbid")

    email_id: int
    kind: EmailKind
    inquiry_id: int | None
    therapist_id: int | None
    patient_id: int | None
    sent_at: datetime


class EmailFailedPayload(BaseModel):
    """Payload of email.failed: refused for good, or out of attempts (error class only)."""

    model_config = ConfigDict(extra="forbid")

    email_id: int
    kind: EmailKind
    inquiry_id: int | None
    therapist_id: int | None
    patient_id: int | None
    failed_at: datetime
    error: str
    attempts: int


class PhoneCallScheduledPayload(BaseModel):
    """Payload of phone_call.scheduled."""

    model_config = ConfigDict(extra="forbid")

    call_id: int
    purpose: CallPurpose
    inquiry_id: int
    therapist_id: int
    attempt: int
    scheduled_at: datetime


class PhoneCallCompletedPayload(BaseModel):
    """Payload of phone_call.completed (staff recorded the outcome)."""

    model_config = ConfigDict(extra="forbid")

    call_id: int
    purpose: CallPurpose
    inquiry_id: int
    therapist_id: int
    attempt: int
    outcome: Literal["reached", "not_reached"]
    completed_at: datetime


class PhoneCallFailedPayload(BaseModel):
    """Payload of phone_call.failed: no call could be scheduled (no phone hours in the
    horizon), or the last attempt did not reach the therapist."""

    model_config = ConfigDict(extra="forbid")

    purpose: CallPurpose
    inquiry_id: int
    therapist_id: int
    call_id: int | None
    attempts: int
    reason: Literal["no_phone_hours_in_horizon", "attempts_exhausted"]
    failed_at: datetime


class PhoneCallCancelledPayload(BaseModel):
    """Payload of phone_call.cancelled (the inquiry was answered, withdrawn or closed)."""

    model_config = ConfigDict(extra="forbid")

    call_id: int
    purpose: CallPurpose
    inquiry_id: int
    therapist_id: int
    reason: str
    cancelled_at: datetime


EMAIL_QUEUED = EventType("email.queued", 1, EmailQueuedPayload, TOPIC)
EMAIL_SENT = EventType("email.sent", 1, EmailSentPayload, TOPIC)
EMAIL_FAILED = EventType("email.failed", 1, EmailFailedPayload, TOPIC)
PHONE_CALL_SCHEDULED = EventType("phone_call.scheduled", 1, PhoneCallScheduledPayload, TOPIC)
PHONE_CALL_COMPLETED = EventType("phone_call.completed", 1, PhoneCallCompletedPayload, TOPIC)
PHONE_CALL_FAILED = EventType("phone_call.failed", 1, PhoneCallFailedPayload, TOPIC)
PHONE_CALL_CANCELLED = EventType("phone_call.cancelled", 1, PhoneCallCancelledPayload, TOPIC)


# ---------------------------------------------------------------- consumed events


class InquiryPatientView(BaseModel):
    """One anonymised patient of inquiry.created, as the email shows it."""

    model_config = ConfigDict(extra="ignore")

    search_id: int
    patient_id: int
    reference: str = Field(max_length=50)
    position: int
    age: int
    gender: str = Field(max_length=20)
    diagnosis: str | None = Field(default=None, max_length=20)
    symptoms: list[str] = Field(default_factory=list)
    insurer_type: str = Field(default="unknown", max_length=20)
    availability: dict[str, list[str]] = Field(default_factory=dict)
    distance_km: float | None = None
    two_year_rule_flag: bool = False
    answer_links: dict[str, str] = Field(default_factory=dict)


class InquiryCreatedView(BaseModel):
    """What communication reads from inquiry.created (tolerant of new fields)."""

    model_config = ConfigDict(extra="ignore")

    inquiry_id: int = Field(ge=1, le=MAX_ID)
    therapist_id: int = Field(ge=1, le=MAX_ID)
    practice_key: str = Field(max_length=20)
    answer_links_valid_until: datetime | None = None
    patients: list[InquiryPatientView] = Field(min_length=1)


class InquiryPatientWithdrawnView(BaseModel):
    """What communication reads from inquiry.patient_withdrawn."""

    model_config = ConfigDict(extra="ignore")

    inquiry_id: int = Field(ge=1, le=MAX_ID)
    therapist_id: int = Field(ge=1, le=MAX_ID)
    practice_key: str = Field(max_length=20)
    search_id: int = Field(ge=1, le=MAX_ID)
    patient_id: int = Field(ge=1, le=MAX_ID)
    reason: str = Field(max_length=100)
    inform_therapist: bool
    # patients still offered in the inquiry (0: nobody left to talk about)
    current_size: int | None = Field(default=None, ge=0)


class AnsweredPatientView(BaseModel):
    """One patient of inquiry.answered."""

    model_config = ConfigDict(extra="ignore")

    search_id: int
    patient_id: int
    outcome: str
    conflict: bool = False
    replacement_offers: list[int] = Field(default_factory=list)


class InquiryAnsweredView(BaseModel):
    """What communication reads from inquiry.answered."""

    model_config = ConfigDict(extra="ignore")

    inquiry_id: int = Field(ge=1, le=MAX_ID)
    therapist_id: int = Field(ge=1, le=MAX_ID)
    practice_key: str = Field(max_length=20)
    answered_at: datetime
    patients: list[AnsweredPatientView] = Field(default_factory=list)


class InquiryFollowUpDueView(BaseModel):
    """What communication reads from inquiry.follow_up_due."""

    model_config = ConfigDict(extra="ignore")

    inquiry_id: int = Field(ge=1, le=MAX_ID)
    therapist_id: int = Field(ge=1, le=MAX_ID)
    due_since: datetime
    search_ids: list[int] = Field(default_factory=list)


class InquiryClosedView(BaseModel):
    """What communication reads from inquiry.closed."""

    model_config = ConfigDict(extra="ignore")

    inquiry_id: int = Field(ge=1, le=MAX_ID)
    therapist_id: int = Field(ge=1, le=MAX_ID)
    closed_at: datetime


class SearchChangedView(BaseModel):
    """What communication reads from search.started / search.claimed."""

    model_config = ConfigDict(extra="ignore")

    search_id: int = Field(ge=1, le=MAX_ID)
    patient_id: int = Field(ge=1, le=MAX_ID)
    status: str = Field(max_length=20)


INQUIRY_TOPIC = "inquiry-events"
INQUIRY_CREATED = EventType("inquiry.created", 1, InquiryCreatedView, INQUIRY_TOPIC)
INQUIRY_PATIENT_WITHDRAWN = EventType(
    "inquiry.patient_withdrawn", 1, InquiryPatientWithdrawnView, INQUIRY_TOPIC
)
INQUIRY_ANSWERED = EventType("inquiry.answered", 1, InquiryAnsweredView, INQUIRY_TOPIC)
INQUIRY_FOLLOW_UP_DUE = EventType("inquiry.follow_up_due", 1, InquiryFollowUpDueView, INQUIRY_TOPIC)
INQUIRY_CLOSED = EventType("inquiry.closed", 1, InquiryClosedView, INQUIRY_TOPIC)


class PatientErasedView(BaseModel):
    """What communication reads from patient.erased (tolerant of new fields)."""

    model_config = ConfigDict(extra="ignore")

    patient_id: int


PATIENT_TOPIC = "patient-events"
PATIENT_ERASED = EventType("patient.erased", 1, PatientErasedView, PATIENT_TOPIC)

SEARCH_TOPIC = "search-events"
SEARCH_STARTED = EventType("search.started", 1, SearchChangedView, SEARCH_TOPIC)
SEARCH_CLAIMED = EventType("search.claimed", 1, SearchChangedView, SEARCH_TOPIC)
