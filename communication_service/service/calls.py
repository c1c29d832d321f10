"""Phone calls (business-rules.md §7): booked in the therapist's phone hours, one therapist
never twice in one slot and one open call per inquiry and purpose (partial unique indexes),
rescheduled when a call did not reach the therapist, cancelled when the inquiry no longer
needs it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from communication_service.contacts import ContactDirectory, ContactUnavailable
from communication_service.models import INFRA, PhoneCall
from communication_service.rules import (
    BERLIN,
    SlotSearch,
    earliest_free_slot,
    follow_up_window,
    reference_of,
    retry_window,
)
from communication_service.schemas import (
    PHONE_CALL_CANCELLED,
    PHONE_CALL_COMPLETED,
    PHONE_CALL_FAILED,
    PHONE_CALL_SCHEDULED,
    CallListItem,
    CallListOut,
    CallListQuery,
    CallOutcome,
    CallOutcomeOut,
    CallPurpose,
    InquiryFollowUpDueView,
    PhoneCallCancelledPayload,
    PhoneCallCompletedPayload,
    PhoneCallFailedPayload,
    PhoneCallOut,
    PhoneCallScheduledPayload,
)
from shared import audit
from shared.db import UnitOfWork, utcnow
from shared.errors import Conflict, NotFound
from shared.events import EventType
from shared.outbox import PendingEvent

PRODUCER = "communication_service"
# a slot taken by a concurrent booking between our read and our insert: try the next one
BOOKING_TRIES = 5


def _emit(uow: UnitOfWork, event: EventType, aggregate_id: int, payload: BaseModel) -> None:
    uow.emit(PendingEvent.of(event, producer=PRODUCER, aggregate_id=aggregate_id, payload=payload))


def _open_call(uow: UnitOfWork, inquiry_id: int, purpose: str) -> PhoneCall | None:
    return uow.session.execute(
        select(PhoneCall).where(
            PhoneCall.inquiry_id == inquiry_id,
            PhoneCall.purpose == purpose,
            PhoneCall.status == "scheduled",
        )
    ).scalar_one_or_none()


def book_call(
    uow: UnitOfWork,
    *,
    therapist_id: int,
    inquiry_id: int,
    purpose: CallPurpose,
    phone_hours: Mapping[str, Sequence[str]],
    window: SlotSearch,
    slot_minutes: int,
    references: Sequence[str],
    attempt: int = 1,
) -> PhoneCall | None:
    """Book the earliest free slot of `window` inside the caller's transaction and emit
    phone_call.scheduled; None (and phone_call.failed) when the window has no free slot.

    An inquiry that already has an open call of this purpose keeps it (returned as is)."""
    existing = _open_call(uow, inquiry_id, purpose)
    if existing is not None:
        return existing
    taken = set(
        uow.session.execute(
            select(PhoneCall.scheduled_at).where(
                PhoneCall.therapist_id == therapist_id,
                PhoneCall.status == "scheduled",
                PhoneCall.scheduled_at >= window.not_before - timedelta(minutes=slot_minutes),
            )
        ).scalars()
    )
    for _ in range(BOOKING_TRIES):
        slot = earliest_free_slot(phone_hours, window, taken, slot_minutes)
        if slot is None:
            payload = PhoneCallFailedPayload(
                purpose=purpose,
                inquiry_id=inquiry_id,
                therapist_id=therapist_id,
                call_id=None,
                attempts=attempt - 1,
                reason="no_phone_hours_in_horizon",
                failed_at=window.not_before,
            )
            _emit(uow, PHONE_CALL_FAILED, inquiry_id, payload)
            return None
        # DO NOTHING on either unique index: the slot was booked meanwhile (take the next),
        # or the inquiry got its call meanwhile (keep that one)
        call_id = uow.session.execute(
            pg_insert(PhoneCall)
            .values(
                therapist_id=therapist_id,
                inquiry_id=inquiry_id,
                purpose=purpose,
                attempt=attempt,
                scheduled_at=slot,
                patient_references=list(references),
            )
            .on_conflict_do_nothing()
            .returning(PhoneCall.id)
        ).scalar_one_or_none()
        if call_id is not None:
            call = uow.session.get_one(PhoneCall, call_id)
            scheduled = PhoneCallScheduledPayload(
                call_id=call.id,
                purpose=purpose,
                inquiry_id=inquiry_id,
                therapist_id=therapist_id,
                attempt=attempt,
                scheduled_at=slot,
            )
            _emit(uow, PHONE_CALL_SCHEDULED, call.id, scheduled)
            return call
        existing = _open_call(uow, inquiry_id, purpose)
        if existing is not None:
            return existing
        taken.add(slot)
    raise Conflict(
        f"no free slot could be booked for therapist {therapist_id} in {BOOKING_TRIES} tries "
        "(concurrent bookings); try again",
        {"therapist_id": therapist_id},
    )


def schedule_follow_up(
    uow: UnitOfWork,
    due: InquiryFollowUpDueView,
    directory: ContactDirectory,
    *,
    slot_minutes: int,
    horizon_days: int,
    as_of: datetime | None = None,
) -> PhoneCall | None:
    """inquiry.follow_up_due: a follow-up call from the working day after the follow-up fell
    due (None when the therapist has no phone hours in the horizon, reported by
    phone_call.failed). A follow-up run with a future `--as-of` books from that day on; one
    handled late, or backfilled, from now."""
    as_of = max(as_of or utcnow(), due.due_since)
    therapist = directory.therapist(due.therapist_id)
    phone_hours = therapist.phone_hours if therapist is not None else {}
    return book_call(
        uow,
        therapist_id=due.therapist_id,
        inquiry_id=due.inquiry_id,
        purpose="follow_up",
        phone_hours=phone_hours,
        window=follow_up_window(as_of, horizon_days),
        slot_minutes=slot_minutes,
        references=[reference_of(search_id) for search_id in due.search_ids],
    )


def cancel_calls(uow: UnitOfWork, inquiry_id: int, reason: str, as_of: datetime) -> list[int]:
    """Cancel the inquiry's open calls (answered, withdrawn, closed); their ids."""
    cancelled = uow.session.execute(
        update(PhoneCall)
        .where(PhoneCall.inquiry_id == inquiry_id, PhoneCall.status == "scheduled")
        .values(status="cancelled", completed_at=as_of)
        .returning(PhoneCall.id, PhoneCall.purpose, PhoneCall.therapist_id)
    ).all()
    for call_id, purpose, therapist_id in cancelled:
        payload = PhoneCallCancelledPayload(
            call_id=call_id,
            purpose=purpose,  # type: ignore[arg-type]
            inquiry_id=inquiry_id,
            therapist_id=therapist_id,
            reason=reason,
            cancelled_at=as_of,
        )
        _emit(uow, PHONE_CALL_CANCELLED, call_id, payload)
    return [call_id for call_id, _, _ in cancelled]


def record_outcome(
    uow: UnitOfWork,
    call_id: int,
    body: CallOutcome,
    directory: ContactDirectory,
    *,
    slot_minutes: int,
    horizon_days: int,
    max_attempts: int,
    as_of: datetime | None = None,
) -> CallOutcomeOut:
    """Staff record how a call went; a call that did not reach the therapist is booked
    again in the next free slot, up to `max_attempts` attempts."""
    as_of = as_of or utcnow()
    with uow:
        call = uow.session.execute(
            update(PhoneCall)
            .where(PhoneCall.id == call_id, PhoneCall.status == "scheduled")
            .values(status=body.outcome, notes=body.notes, completed_at=as_of)
            .returning(PhoneCall)
        ).scalar_one_or_none()
        if call is None:
            status = uow.session.execute(
                select(PhoneCall.status).where(PhoneCall.id == call_id)
            ).scalar_one_or_none()
            if status is None:
                raise NotFound(f"phone call {call_id} not found", {"call_id": call_id})
            raise Conflict(
                f"phone call {call_id} is '{status}': an outcome is recorded only for a "
                "scheduled call",
                {"call_id": call_id, "status": status, "allowed_statuses": ["scheduled"]},
            )
        completed = PhoneCallCompletedPayload(
            call_id=call.id,
            purpose=call.purpose,  # type: ignore[arg-type]
            inquiry_id=call.inquiry_id,
            therapist_id=call.therapist_id,
            attempt=call.attempt,
            outcome=body.outcome,
            completed_at=as_of,
        )
        _emit(uow, PHONE_CALL_COMPLETED, call.id, completed)
        next_call = None
        if body.outcome == "not_reached":
            next_call = _try_again(
                uow, call, directory, slot_minutes, horizon_days, max_attempts, as_of
            )
        audit.record(
            uow.session, INFRA.audit_events, "update", "phone_call", call.id, ["notes", "status"]
        )
        uow.commit()
    return CallOutcomeOut(
        call=PhoneCallOut.model_validate(call),
        next_call=None if next_call is None else PhoneCallOut.model_validate(next_call),
    )


def _try_again(
    uow: UnitOfWork,
    call: PhoneCall,
    directory: ContactDirectory,
    slot_minutes: int,
    horizon_days: int,
    max_attempts: int,
    as_of: datetime,
) -> PhoneCall | None:
    if call.attempt >= max_attempts:
        payload = PhoneCallFailedPayload(
            purpose=call.purpose,  # type: ignore[arg-type]
            inquiry_id=call.inquiry_id,
            therapist_id=call.therapist_id,
            call_id=call.id,
            attempts=call.attempt,
            reason="attempts_exhausted",
            failed_at=as_of,
        )
        _emit(uow, PHONE_CALL_FAILED, call.inquiry_id, payload)
        return None
    therapist = directory.therapist(call.therapist_id)
    return book_call(
        uow,
        therapist_id=call.therapist_id,
        inquiry_id=call.inquiry_id,
        purpose=call.purpose,  # type: ignore[arg-type]
        phone_hours=therapist.phone_hours if therapist is not None else {},
        window=retry_window(as_of, horizon_days),
        slot_minutes=slot_minutes,
        references=call.patient_references,
        attempt=call.attempt + 1,
    )


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """A local (Europe/Berlin) day as a UTC interval [start, end)."""
    start = datetime.combine(day, time(0), BERLIN)
    end = datetime.combine(day + timedelta(days=1), time(0), BERLIN)
    return start.astimezone(UTC), end.astimezone(UTC)


def call_list(uow: UnitOfWork, query: CallListQuery, directory: ContactDirectory) -> CallListOut:
    """The calls of one local day in slot order, with whom to call and their number (a
    therapist_service that cannot answer leaves name and number empty)."""
    start, end = day_bounds(query.day)
    with uow:
        statement = select(PhoneCall).where(
            PhoneCall.scheduled_at >= start, PhoneCall.scheduled_at < end
        )
        if query.status is not None:
            statement = statement.where(PhoneCall.status == query.status)
        calls = uow.session.execute(statement.order_by(PhoneCall.scheduled_at, PhoneCall.id))
        calls_list = list(calls.scalars())
    # one request per 100 therapists of the day, not one per therapist
    try:
        contacts: dict[int, Any] = directory.therapists(call.therapist_id for call in calls_list)
    except ContactUnavailable:
        contacts = {}
    items = []
    for call in calls_list:
        contact = contacts.get(call.therapist_id)
        name = None
        if contact is not None:
            name = " ".join(
                part
                for part in (
                    contact.salutation,
                    contact.title,
                    contact.first_name,
                    contact.last_name,
                )
                if part
            )
        items.append(
            CallListItem.model_validate(
                {
                    **PhoneCallOut.model_validate(call).model_dump(),
                    "therapist_name": name,
                    "therapist_phone": None if contact is None else contact.phone,
                }
            )
        )
    return CallListOut(date=query.day, calls=items)
