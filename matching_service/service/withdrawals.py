"""Withdrawing a patient from open inquiries (business-rules.md §8): when their search is claimed,
succeeds or is cancelled, every other open inquiry stops offering them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from matching_service.models import OPEN_INQUIRY_STATUSES, Inquiry, InquiryPatient
from matching_service.schemas import INQUIRY_PATIENT_WITHDRAWN, InquiryPatientWithdrawnPayload
from shared.db import UnitOfWork, utcnow
from shared.outbox import PendingEvent

PRODUCER = "matching_service"

CLAIMED_ELSEWHERE = "claimed_elsewhere"
SEARCH_CANCELLED = "search_cancelled"
SEARCH_SUCCEEDED = "search_succeeded"


@dataclass(frozen=True, slots=True)
class Withdrawn:
    """A patient taken out of an open inquiry."""

    inquiry_id: int
    search_id: int
    inform_therapist: bool
    current_size: int


def withdraw_search(
    uow: UnitOfWork,
    search_id: int,
    reason: str,
    keep_inquiry_id: int | None = None,
    correlation_id: str | None = None,
    as_of: datetime | None = None,
) -> list[Withdrawn]:
    """Withdraw the search's patient from every other open inquiry (inside the caller's
    transaction): the patient row becomes `withdrawn`, the inquiry's current size drops by
    one, and inquiry.patient_withdrawn tells communication whether to inform the therapist
    (the inquiry was sent)."""
    now = as_of or utcnow()
    session = uow.session
    elsewhere = [Inquiry.id != keep_inquiry_id] if keep_inquiry_id is not None else []
    # the inquiries first, in id order (the order every answer locks them in)
    inquiry_ids = list(
        session.execute(
            select(Inquiry.id)
            .join(InquiryPatient, InquiryPatient.inquiry_id == Inquiry.id)
            .where(
                InquiryPatient.search_id == search_id,
                InquiryPatient.status == "open",
                Inquiry.status.in_(OPEN_INQUIRY_STATUSES),
                *elsewhere,
            )
            .order_by(Inquiry.id)
            .with_for_update(of=Inquiry, key_share=True)
        ).scalars()
    )
    if not inquiry_ids:
        return []
    patients = dict(
        session.execute(
            update(InquiryPatient)
            .where(
                InquiryPatient.inquiry_id.in_(inquiry_ids),
                InquiryPatient.search_id == search_id,
                InquiryPatient.status == "open",
            )
            .values(status="withdrawn", withdrawn_at=now, withdrawn_reason=reason)
            .returning(InquiryPatient.inquiry_id, InquiryPatient.patient_id)
        ).all()
    )
    if not patients:
        return []
    shrunk = session.execute(
        update(Inquiry)
        .where(Inquiry.id.in_(list(patients)))
        .values(current_size=Inquiry.current_size - 1, updated_at=now)
        .returning(
            Inquiry.id,
            Inquiry.therapist_id,
            Inquiry.practice_key,
            Inquiry.status,
            Inquiry.current_size,
        )
    ).all()
    withdrawn = []
    for row in sorted(shrunk, key=lambda r: r.id):
        inform = row.status == "sent"
        uow.emit(
            PendingEvent.of(
                INQUIRY_PATIENT_WITHDRAWN,
                producer=PRODUCER,
                aggregate_id=row.id,
                payload=InquiryPatientWithdrawnPayload(
                    inquiry_id=row.id,
                    therapist_id=row.therapist_id,
                    practice_key=row.practice_key,
                    search_id=search_id,
                    patient_id=patients[row.id],
                    reason=reason,
                    inform_therapist=inform,
                    current_size=row.current_size,
                ),
                correlation_id=correlation_id,
            )
        )
        withdrawn.append(Withdrawn(row.id, search_id, inform, row.current_size))
    return withdrawn
