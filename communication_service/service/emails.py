"""Emails queued from events (business-rules.md §7): one row per cause, rendered and sent later by
`send-emails`; the staff views of them."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from communication_service.contacts import ContactDirectory
from communication_service.models import Email, PhoneCall
from communication_service.rules import reference_of
from communication_service.schemas import (
    EMAIL_QUEUED,
    EmailKind,
    EmailListQuery,
    EmailQueuedPayload,
    InquiryAnsweredView,
    InquiryClosedView,
    InquiryCreatedView,
    InquiryFollowUpDueView,
    InquiryPatientWithdrawnView,
    SearchChangedView,
)
from communication_service.service import calls
from shared.db import UnitOfWork, count_upto, utcnow
from shared.errors import NotFound
from shared.outbox import PendingEvent
from shared.web import Page

PRODUCER = "communication_service"


def queue_email(
    uow: UnitOfWork,
    *,
    kind: EmailKind,
    send_key: str,
    context: dict[str, Any],
    therapist_id: int | None = None,
    patient_id: int | None = None,
    inquiry_id: int | None = None,
    practice_key: str | None = None,
    as_of: datetime | None = None,
) -> int | None:
    """Queue one email (inside the caller's transaction) and emit email.queued; None when
    its cause queued one already (same send key)."""
    as_of = as_of or utcnow()
    email_id = uow.session.execute(
        pg_insert(Email)
        .values(
            kind=kind,
            send_key=send_key,
            context=context,
            therapist_id=therapist_id,
            patient_id=patient_id,
            inquiry_id=inquiry_id,
            practice_key=practice_key,
            next_attempt_at=as_of,
            created_at=as_of,
        )
        .on_conflict_do_nothing(index_elements=[Email.send_key])
        .returning(Email.id)
    ).scalar_one_or_none()
    if email_id is not None:
        payload = EmailQueuedPayload(
            email_id=email_id,
            kind=kind,
            inquiry_id=inquiry_id,
            therapist_id=therapist_id,
            patient_id=patient_id,
            queued_at=as_of,
        )
        uow.emit(
            PendingEvent.of(EMAIL_QUEUED, producer=PRODUCER, aggregate_id=email_id, payload=payload)
        )
    return email_id


def queue_inquiry_email(uow: UnitOfWork, inquiry: InquiryCreatedView) -> int | None:
    """inquiry.created: queue the inquiry email (rendered with contact data when sent)."""
    return queue_email(
        uow,
        kind="inquiry",
        send_key=f"inquiry:{inquiry.inquiry_id}",
        context=inquiry.model_dump(mode="json"),
        therapist_id=inquiry.therapist_id,
        inquiry_id=inquiry.inquiry_id,
        practice_key=inquiry.practice_key,
    )


def withdraw_patient(uow: UnitOfWork, withdrawn: InquiryPatientWithdrawnView) -> int | None:
    """inquiry.patient_withdrawn: a therapist who received the patient is told; an inquiry
    email not sent yet, and the inquiry's scheduled calls, lose the patient; with nobody
    left, the email and the calls are cancelled."""
    reference = reference_of(withdrawn.search_id)
    uow.session.execute(
        update(PhoneCall)
        .where(PhoneCall.inquiry_id == withdrawn.inquiry_id, PhoneCall.status == "scheduled")
        .values(patient_references=PhoneCall.patient_references.op("-")(reference))
    )
    email = uow.session.execute(
        select(Email)
        .where(Email.send_key == f"inquiry:{withdrawn.inquiry_id}", Email.status == "queued")
        .with_for_update()
    ).scalar_one_or_none()
    remaining = withdrawn.current_size
    if email is not None:
        patients = [
            patient
            for patient in email.context["patients"]
            if patient["search_id"] != withdrawn.search_id
        ]
        email.context = {**email.context, "patients": patients}
        remaining = len(patients) if remaining is None else remaining
        if not patients:
            email.status = "cancelled"
    if remaining == 0:
        calls.cancel_calls(uow, withdrawn.inquiry_id, "withdrawn", utcnow())
    if not withdrawn.inform_therapist:
        return None
    return queue_email(
        uow,
        kind="withdrawal",
        send_key=f"withdrawal:{withdrawn.inquiry_id}:{withdrawn.search_id}",
        context={
            "inquiry_id": withdrawn.inquiry_id,
            "reference": reference,
            "reason": withdrawn.reason,
        },
        therapist_id=withdrawn.therapist_id,
        inquiry_id=withdrawn.inquiry_id,
        practice_key=withdrawn.practice_key,
    )


def inquiry_answered(uow: UnitOfWork, answered: InquiryAnsweredView) -> int | None:
    """inquiry.answered: its open calls and unsent email are cancelled; a therapist whose
    acceptance came too late gets the conflict notice with the replacement offers."""
    calls.cancel_calls(uow, answered.inquiry_id, "answered", answered.answered_at)
    uow.session.execute(
        update(Email)
        .where(Email.send_key == f"inquiry:{answered.inquiry_id}", Email.status == "queued")
        .values(status="cancelled")
    )
    conflicts = [patient for patient in answered.patients if patient.conflict]
    if not conflicts:
        return None
    return queue_email(
        uow,
        kind="conflict",
        send_key=f"conflict:{answered.inquiry_id}",
        context={
            "inquiry_id": answered.inquiry_id,
            "patients": [
                {
                    "reference": reference_of(patient.search_id),
                    "offers": [reference_of(offer) for offer in patient.replacement_offers],
                }
                for patient in conflicts
            ],
        },
        therapist_id=answered.therapist_id,
        inquiry_id=answered.inquiry_id,
        practice_key=answered.practice_key,
    )


def inquiry_closed(uow: UnitOfWork, closed: InquiryClosedView) -> None:
    """inquiry.closed (unanswered): nobody needs to call any more."""
    calls.cancel_calls(uow, closed.inquiry_id, "closed", closed.closed_at)


def follow_up_due(
    uow: UnitOfWork,
    due: InquiryFollowUpDueView,
    directory: ContactDirectory,
    *,
    slot_minutes: int,
    horizon_days: int,
) -> None:
    """inquiry.follow_up_due: book the follow-up call."""
    calls.schedule_follow_up(
        uow, due, directory, slot_minutes=slot_minutes, horizon_days=horizon_days
    )


def search_started(uow: UnitOfWork, search: SearchChangedView) -> int | None:
    """search.started: tell the patient (if they gave an email and consent, checked when
    sending)."""
    return queue_email(
        uow,
        kind="search_started",
        send_key=f"search_started:{search.search_id}",
        context={"search_id": search.search_id, "reference": reference_of(search.search_id)},
        patient_id=search.patient_id,
    )


def place_found(uow: UnitOfWork, search: SearchChangedView) -> int | None:
    """search.claimed: a therapist offered the patient a place."""
    return queue_email(
        uow,
        kind="place_found",
        send_key=f"place_found:{search.search_id}",
        context={"search_id": search.search_id, "reference": reference_of(search.search_id)},
        patient_id=search.patient_id,
    )


WEEKLY_INQUIRIES = text(
    """
    SELECT (patient->>'patient_id')::int AS patient_id,
           max((patient->>'search_id')::int) AS search_id,
           count(*) AS inquiries
    FROM communication_service.emails AS email,
         jsonb_array_elements(email.context->'patients') AS patient
    WHERE email.kind = 'inquiry'
      AND (
        (email.status = 'sent' AND email.sent_at > :since AND email.sent_at <= :until)
        OR (
          email.status = 'replaced_by_call'
          AND EXISTS (
            SELECT 1 FROM communication_service.phone_calls AS call
            WHERE call.inquiry_id = email.inquiry_id AND call.purpose = 'inquiry'
              AND call.status = 'reached'
              AND call.completed_at > :since AND call.completed_at <= :until
          )
        )
      )
    GROUP BY 1
    """
)


def queue_weekly_updates(uow: UnitOfWork, *, as_of: datetime | None = None) -> int:
    """Queue for every patient whose inquiries went out in the 7 days up to `as_of` how many
    went out (the count only; once per patient and ISO week); how many were queued."""
    as_of = as_of or utcnow()
    year, week, _ = as_of.isocalendar()
    queued = 0
    with uow:
        counts = uow.session.execute(
            WEEKLY_INQUIRIES, {"since": as_of - timedelta(days=7), "until": as_of}
        ).all()
        for patient_id, search_id, inquiries in counts:
            email_id = queue_email(
                uow,
                kind="inquiries_this_week",
                send_key=f"inquiries_this_week:{patient_id}:{year}-W{week:02d}",
                context={"count": inquiries, "reference": reference_of(search_id)},
                patient_id=patient_id,
                as_of=as_of,
            )
            queued += email_id is not None
        uow.commit()
    return queued


def list_emails(uow: UnitOfWork, query: EmailListQuery) -> Page:
    """Emails, newest first, filtered as asked."""
    conditions = []
    for name in ("status", "kind", "therapist_id", "patient_id", "inquiry_id"):
        value = getattr(query, name)
        if value is not None:
            conditions.append(getattr(Email, name) == value)
    if query.day is not None:
        start = datetime.combine(query.day, time(0), UTC)
        conditions.append(Email.created_at >= start)
        conditions.append(Email.created_at < start + timedelta(days=1))
    with uow:
        total, exact = count_upto(uow.session, select(Email).where(*conditions))
        items = list(
            uow.session.execute(
                select(Email)
                .where(*conditions)
                .order_by(Email.created_at.desc(), Email.id.desc())
                .limit(query.per_page)
                .offset((query.page - 1) * query.per_page)
            ).scalars()
        )
    return Page(
        items=items, total=total, page=query.page, per_page=query.per_page, total_exact=exact
    )


def get_email(uow: UnitOfWork, email_id: int) -> Email:
    """One email with its content."""
    with uow:
        email = uow.session.get(Email, email_id)
    if email is None:
        raise NotFound(f"email {email_id} not found", {"email_id": email_id})
    return email
