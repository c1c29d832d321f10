"""GDPR for communication: a patient's data part of the export, and erasure on
patient.erased.

Messages stay as rows (statistics count them) but lose what identifies the patient: emails
to the patient lose address, subject, bodies and context; messages to therapists that
offered the patient lose their rendered bodies and the patient's entry in their context;
phone calls lose the patient's reference and staff notes.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from communication_service.models import INFRA, Email, PhoneCall
from communication_service.rules import reference_of
from shared import audit
from shared.db import UnitOfWork


def _mentions(session: Session, patient_id: int) -> tuple[list[Email], set[str], set[int]]:
    """The emails that mention the patient, the patient's references ('PS-<search>') and the
    inquiries that offered them."""
    offered = Email.context["patients"].contains([{"patient_id": patient_id}])
    direct = session.scalars(
        select(Email).where(or_(Email.patient_id == patient_id, offered)).order_by(Email.id)
    ).all()
    search_ids: set[int] = set()
    inquiry_ids: set[int] = set()
    for email in direct:
        if email.patient_id == patient_id and "search_id" in email.context:
            search_ids.add(int(email.context["search_id"]))
        for entry in email.context.get("patients", []):
            if entry.get("patient_id") == patient_id:
                search_ids.add(int(entry["search_id"]))
                if email.inquiry_id is not None:
                    inquiry_ids.add(email.inquiry_id)
    references = {reference_of(search_id) for search_id in search_ids}
    if not references:
        return list(direct), references, inquiry_ids
    # withdrawal notices name the reference; conflict notices name it or offer it
    mentioned = or_(
        *(
            condition
            for ref in sorted(references)
            for condition in (
                Email.context.contains({"reference": ref}),
                Email.context["patients"].contains([{"reference": ref}]),
                Email.context["patients"].contains([{"offers": [ref]}]),
            )
        )
    )
    seen = [email.id for email in direct]
    others = session.scalars(
        select(Email).where(mentioned, Email.id.not_in(seen)).order_by(Email.id)
    ).all()
    return [*direct, *others], references, inquiry_ids


def _calls(session: Session, references: set[str], inquiry_ids: set[int]) -> list[PhoneCall]:
    conditions = [PhoneCall.patient_references.contains([ref]) for ref in references]
    if inquiry_ids:
        conditions.append(PhoneCall.inquiry_id.in_(sorted(inquiry_ids)))
    if not conditions:
        return []
    return list(session.scalars(select(PhoneCall).where(or_(*conditions)).order_by(PhoneCall.id)))


def erase_patient(uow: UnitOfWork, patient_id: int) -> None:
    """patient.erased: runs inside the consumer's unit of work (the consumer commits);
    a redelivery finds nothing left to change."""
    session = uow.session
    emails, references, inquiry_ids = _mentions(session, patient_id)
    for email in emails:
        email.subject = None
        email.body_text = None
        email.body_html = None
        if email.patient_id == patient_id:
            email.to_address = None
            email.context = {}
        else:
            email.context = _without_patient(email.context, patient_id, references)
        if email.status == "queued":
            email.status = "cancelled"
    for call in _calls(session, references, inquiry_ids):
        call.patient_references = [ref for ref in call.patient_references if ref not in references]
        call.notes = None
    audit.record(session, INFRA.audit_events, "erase", "patient", patient_id)


def _without_patient(
    context: dict[str, Any], patient_id: int, references: set[str]
) -> dict[str, Any]:
    kept = dict(context)
    if "patients" in kept:
        kept["patients"] = [
            {
                **entry,
                **(
                    {"offers": [o for o in entry["offers"] if o not in references]}
                    if "offers" in entry
                    else {}
                ),
            }
            for entry in kept["patients"]
            if entry.get("patient_id") != patient_id and entry.get("reference") not in references
        ]
    if kept.get("reference") in references:
        kept["reference"] = None
    return kept


def patient_data(uow: UnitOfWork, patient_id: int) -> dict[str, Any]:
    """Everything communication holds about one patient (their part of the data export)."""
    with uow:
        session = uow.session
        emails, references, inquiry_ids = _mentions(session, patient_id)
        calls = _calls(session, references, inquiry_ids)
        entries = audit.entries_of(session, INFRA.audit_events, "patient", patient_id)
        return {
            "emails": [_row(email) for email in emails],
            "phone_calls": [_row(call) for call in calls],
            "audit_events": [{k: _plain(v) for k, v in entry.items()} for entry in entries],
        }


def _row(instance: Any) -> dict[str, Any]:
    return {
        column.key: _plain(getattr(instance, column.key)) for column in instance.__table__.columns
    }


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value
