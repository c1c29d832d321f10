"""`send-emails`: queued emails go out through SMTP (business-rules.md §7).

Each email is sent in its own transaction that holds the email's row lock
(`FOR UPDATE SKIP LOCKED`: an overlapping run takes the next one, never the same) and, for
an inquiry email, the practice's advisory lock: the weekly limit is checked and the email
marked sent under that lock, so two runs never both send to one practice in a week. A
temporary failure waits 1, 2, 4 ... minutes (at most an hour) before the next attempt.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text

from communication_service.contacts import ContactDirectory, ContactUnavailable
from communication_service.mailer import DeliveryFailed, Mailer
from communication_service.messages import (
    PATIENT_NOTICES,
    RenderedEmail,
    TherapistContact,
    inquiry_email,
    patient_notice,
    therapist_notice,
)
from communication_service.models import Email
from communication_service.rules import reference_of, retry_window
from communication_service.schemas import (
    EMAIL_FAILED,
    EMAIL_SENT,
    EmailFailedPayload,
    EmailSentPayload,
)
from communication_service.service import calls
from shared.db import Database, UnitOfWork, utcnow
from shared.outbox import PendingEvent

PRODUCER = "communication_service"
BACKOFF_FIRST_SECONDS = 60
BACKOFF_MAX_SECONDS = 3600


@dataclass(frozen=True)
class Sender:
    """What sending needs: the SMTP server, the contact directory and the rules' figures."""

    mailer: Mailer
    directory: ContactDirectory
    platform_phone: str
    min_days_between: int = 7
    max_attempts: int = 5
    slot_minutes: int = 5
    horizon_days: int = 14


def backoff(attempts: int) -> timedelta:
    """Wait before attempt `attempts + 1`: 1, 2, 4 ... minutes, at most an hour."""
    seconds = BACKOFF_FIRST_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, BACKOFF_MAX_SECONDS))


def send_due_emails(
    database: Database, sender: Sender, *, as_of: datetime | None = None, limit: int | None = None
) -> Counter[str]:
    """Send every queued email due at `as_of`; how many ended how (sent, deferred, retry,
    failed, replaced_by_call, cancelled)."""
    as_of = as_of or utcnow()
    report: Counter[str] = Counter()
    while limit is None or report.total() < limit:
        with database.unit_of_work() as uow:
            email = uow.session.execute(
                select(Email)
                .where(Email.status == "queued", Email.next_attempt_at <= as_of)
                .order_by(Email.next_attempt_at, Email.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).scalar_one_or_none()
            if email is None:
                break
            report[_send_one(uow, email, sender, as_of)] += 1
            uow.commit()
    return report


def _send_one(uow: UnitOfWork, email: Email, sender: Sender, as_of: datetime) -> str:
    if email.kind == "inquiry" and email.practice_key is not None:
        free_from = _practice_free_from(uow, email.practice_key, sender.min_days_between, as_of)
        if free_from is not None:
            email.next_attempt_at = free_from
            return "deferred"
    try:
        recipient = _render(email, sender)
    except ContactUnavailable:
        return _retry_later(uow, email, "ContactUnavailable", sender.max_attempts, as_of)
    if isinstance(recipient, Unsendable):
        return _not_sendable(uow, email, recipient, sender, as_of)
    address, rendered = recipient
    message = sender.mailer.compose(rendered, to=address, send_key=email.send_key, sent_at=as_of)
    try:
        sender.mailer.send(message)
    except DeliveryFailed as exc:
        if exc.permanent:
            return _fail(uow, email, exc.error, as_of, attempts=email.attempts + 1)
        return _retry_later(uow, email, exc.error, sender.max_attempts, as_of)
    email.status = "sent"
    email.sent_at = as_of
    email.attempts += 1
    email.to_address = address
    email.subject, email.body_text, email.body_html = rendered.subject, rendered.text, rendered.html
    email.last_error = None
    payload = EmailSentPayload(
        email_id=email.id,
        kind=email.kind,  # type: ignore[arg-type]
        inquiry_id=email.inquiry_id,
        therapist_id=email.therapist_id,
        patient_id=email.patient_id,
        sent_at=as_of,
    )
    uow.emit(PendingEvent.of(EMAIL_SENT, producer=PRODUCER, aggregate_id=email.id, payload=payload))
    return "sent"


def _practice_free_from(
    uow: UnitOfWork, practice_key: str, min_days: int, as_of: datetime
) -> datetime | None:
    """When the practice may get its next inquiry email, or None when it may now; holds the
    practice's lock until the transaction ends (the caller marks its email sent under it)."""
    uow.session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
        {"key": f"communication.inquiry_email:{practice_key}"},
    )
    window = timedelta(days=min_days)
    last = uow.session.execute(
        select(func.max(Email.sent_at)).where(
            Email.kind == "inquiry",
            Email.status == "sent",
            Email.practice_key == practice_key,
            Email.sent_at > as_of - window,
        )
    ).scalar_one_or_none()
    return None if last is None else last + window


@dataclass(frozen=True)
class Unsendable:
    """Why an email cannot go to its recipient (and the therapist's contact data, if known)."""

    reason: str
    therapist: TherapistContact | None = None


def _render(email: Email, sender: Sender) -> tuple[str, RenderedEmail] | Unsendable:
    """Address and content, or why the recipient cannot get this email."""
    phone = sender.platform_phone
    if email.patient_id is not None:
        patient = sender.directory.patient(email.patient_id)
        if patient is None:
            return Unsendable("patient_unknown")
        if not patient.email or not patient.consented:
            return Unsendable("no_email_or_consent")
        return patient.email, patient_notice(
            email.kind, email.context, patient, platform_phone=phone
        )
    assert email.therapist_id is not None
    therapist = sender.directory.therapist(email.therapist_id)
    if therapist is None:
        return Unsendable("therapist_unknown")
    if not therapist.email:
        return Unsendable("no_email", therapist)
    if email.kind == "inquiry":
        rendered = inquiry_email(email.context, therapist, platform_phone=phone)
    else:
        rendered = therapist_notice(email.kind, email.context, therapist, platform_phone=phone)
    return therapist.email, rendered


def _not_sendable(
    uow: UnitOfWork, email: Email, why: Unsendable, sender: Sender, as_of: datetime
) -> str:
    therapist = why.therapist
    if therapist is not None and email.kind == "inquiry":
        # a therapist without email is called instead (matching counts the reached call)
        assert email.inquiry_id is not None and email.therapist_id is not None
        email.status = "replaced_by_call"
        email.last_error = why.reason
        calls.book_call(
            uow,
            therapist_id=email.therapist_id,
            inquiry_id=email.inquiry_id,
            purpose="inquiry",
            phone_hours=therapist.phone_hours,
            window=retry_window(as_of, sender.horizon_days),
            slot_minutes=sender.slot_minutes,
            references=[
                reference_of(patient["search_id"]) for patient in email.context["patients"]
            ],
        )
        return "replaced_by_call"
    if email.kind in PATIENT_NOTICES or therapist is not None:
        # nobody to write to (no address or no consent): nothing failed, nothing to send
        email.status = "cancelled"
        email.last_error = why.reason
        return "cancelled"
    return _fail(uow, email, why.reason, as_of, attempts=email.attempts)


def _retry_later(
    uow: UnitOfWork, email: Email, error: str, max_attempts: int, as_of: datetime
) -> str:
    attempts = email.attempts + 1
    if attempts >= max_attempts:
        return _fail(uow, email, error, as_of, attempts=attempts)
    email.attempts = attempts
    email.last_error = error
    email.next_attempt_at = as_of + backoff(attempts)
    return "retry"


def _fail(uow: UnitOfWork, email: Email, error: str, as_of: datetime, *, attempts: int) -> str:
    email.status = "failed"
    email.attempts = attempts
    email.last_error = error[:200]
    payload = EmailFailedPayload(
        email_id=email.id,
        kind=email.kind,  # type: ignore[arg-type]
        inquiry_id=email.inquiry_id,
        therapist_id=email.therapist_id,
        patient_id=email.patient_id,
        failed_at=as_of,
        error=email.last_error,
        attempts=attempts,
    )
    uow.emit(
        PendingEvent.of(EMAIL_FAILED, producer=PRODUCER, aggregate_id=email.id, payload=payload)
    )
    return "failed"
