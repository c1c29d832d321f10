"""GDPR for matching: a patient's data part of the export, and erasure on patient.erased.

Erasure cancels the patient's open search (withdrawing them from unsent and open inquiries,
whose sizes keep the anonymous counts), blanks staff free text about them (search reasons,
exclusion reasons, answer notes of inquiries that held them), keeps only the birth year in
the projection and drops their location. Searches, inquiry rows and outcomes stay, without
personal data, so statistics still count the patient.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Date, cast, delete, func, select, update
from sqlalchemy.orm import Session

from matching_service.models import (
    INFRA,
    Inquiry,
    InquiryPatient,
    Location,
    PatientProjection,
    PatientSearch,
    SearchExclusion,
)
from matching_service.schemas import SEARCH_CANCELLED, SearchStatusChangedPayload
from matching_service.service.withdrawals import SEARCH_CANCELLED as WITHDRAWN_CANCELLED
from matching_service.service.withdrawals import withdraw_search
from shared import audit
from shared.db import UnitOfWork, utcnow
from shared.outbox import PendingEvent

PRODUCER = "matching_service"
OPEN_SEARCH_STATUSES = ("active", "paused", "in_trial")
ERASED = "erased"


def erase_patient(uow: UnitOfWork, patient_id: int, *, correlation_id: str | None = None) -> None:
    """patient.erased: runs inside the consumer's unit of work (the consumer commits);
    a redelivery finds nothing left to change."""
    session = uow.session
    now = utcnow()
    cancelled = session.execute(
        select(
            PatientSearch.id,
            PatientSearch.status,
            PatientSearch.waiting_since,
            PatientSearch.contact_budget,
        )
        .where(
            PatientSearch.patient_id == patient_id,
            PatientSearch.status.in_(OPEN_SEARCH_STATUSES),
        )
        .order_by(PatientSearch.id)
        .with_for_update()
    ).all()
    if cancelled:
        session.execute(
            update(PatientSearch)
            .where(PatientSearch.id.in_([row.id for row in cancelled]))
            .values(status="cancelled", ended_at=now, updated_at=now)
        )
    previous = {row.id: row for row in cancelled}
    for search_id in sorted(previous):
        withdraw_search(uow, search_id, WITHDRAWN_CANCELLED, correlation_id=correlation_id)
        row = previous[search_id]
        uow.emit(
            PendingEvent.of(
                SEARCH_CANCELLED,
                producer=PRODUCER,
                aggregate_id=search_id,
                payload=SearchStatusChangedPayload(
                    search_id=search_id,
                    patient_id=patient_id,
                    status="cancelled",
                    previous_status=row.status,
                    waiting_since=row.waiting_since,
                    contact_budget=row.contact_budget,
                ),
                correlation_id=correlation_id,
            )
        )
    search_ids = select(PatientSearch.id).where(PatientSearch.patient_id == patient_id)
    session.execute(
        update(PatientSearch)
        .where(PatientSearch.patient_id == patient_id, PatientSearch.status_reason.is_not(None))
        .values(status_reason=None)
    )
    session.execute(
        update(SearchExclusion)
        .where(SearchExclusion.search_id.in_(search_ids), SearchExclusion.reason != "")
        .values(reason="")
    )
    session.execute(
        update(Inquiry)
        .where(
            Inquiry.id.in_(
                select(InquiryPatient.inquiry_id).where(InquiryPatient.patient_id == patient_id)
            ),
            Inquiry.notes.is_not(None),
        )
        .values(notes=None)
    )
    session.execute(
        update(PatientProjection)
        .where(PatientProjection.patient_id == patient_id)
        .values(
            status=ERASED,
            birth_date=cast(func.date_trunc("year", PatientProjection.birth_date), Date),
            updated_at=now,
        )
    )
    session.execute(
        delete(Location).where(Location.entity_type == "patient", Location.entity_id == patient_id)
    )
    audit.record(session, INFRA.audit_events, "erase", "patient", patient_id)


def patient_data(uow: UnitOfWork, patient_id: int) -> dict[str, Any]:
    """Everything matching holds about one patient (their part of the data export)."""
    with uow:
        session = uow.session
        projection = session.get(PatientProjection, patient_id)
        searches = session.scalars(
            select(PatientSearch)
            .where(PatientSearch.patient_id == patient_id)
            .order_by(PatientSearch.id)
        ).all()
        ids = [search.id for search in searches]
        exclusions = session.scalars(
            select(SearchExclusion)
            .where(SearchExclusion.search_id.in_(ids))
            .order_by(SearchExclusion.id)
        ).all()
        inquiries = session.execute(
            select(InquiryPatient, Inquiry)
            .join(Inquiry, Inquiry.id == InquiryPatient.inquiry_id)
            .where(InquiryPatient.patient_id == patient_id)
            .order_by(Inquiry.id)
        ).all()
        location = session.get(Location, ("patient", patient_id))
        entries = audit.entries_of(session, INFRA.audit_events, "patient", patient_id)
        return {
            "patient_projection": _row(session, projection),
            "searches": [_row(session, search) for search in searches],
            "search_exclusions": [_row(session, exclusion) for exclusion in exclusions],
            "inquiries": [
                {"inquiry": _row(session, inquiry), "patient_entry": _row(session, entry)}
                for entry, inquiry in inquiries
            ],
            "location": _row(session, location),
            "audit_events": [
                {key: _plain(value) for key, value in entry.items()} for entry in entries
            ],
        }


def _row(session: Session, instance: Any) -> dict[str, Any] | None:
    if instance is None:
        return None
    return {
        column.key: _plain(getattr(instance, column.key)) for column in instance.__table__.columns
    }


def _plain(value: Any) -> Any:
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    return value
