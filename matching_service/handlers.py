"""Consumed event type -> use case."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matching_service import service
from matching_service.models import PatientProjection
from matching_service.schemas import (
    COMMUNICATION_TOPIC,
    EMAIL_SENT,
    LOCATION_RESOLVED,
    LOCATION_TOPIC,
    LOCATION_UNRESOLVED,
    PATIENT_CREATED,
    PATIENT_ERASED,
    PATIENT_TOPIC,
    PATIENT_UPDATED,
    PHONE_CALL_COMPLETED,
    THERAPIST_EVENTS,
    THERAPIST_TOPIC,
    EmailSentView,
    LocationResolvedView,
    LocationUnresolvedView,
    PatientErasedView,
    PatientSnapshot,
    PhoneCallCompletedView,
    TherapistSnapshot,
)
from matching_service.service import _upsert_newer
from matching_service.service.erasure import erase_patient
from matching_service.service.sending import mark_inquiry_sent
from shared.consumer import Batchable, Handler
from shared.db import UnitOfWork, utcnow
from shared.events import MAX_VERSION_JUMP, Envelope

SUBSCRIPTIONS: tuple[str, ...] = (
    PATIENT_TOPIC,
    THERAPIST_TOPIC,
    LOCATION_TOPIC,
    COMMUNICATION_TOPIC,
)


def on_patient_changed(uow: UnitOfWork, envelope: Envelope) -> None:
    """patient.created / patient.updated -> patient projection."""
    snapshot = _PATIENT_EVENTS[envelope.event_type].parse_payload(envelope)
    assert isinstance(snapshot, PatientSnapshot)
    service.apply_patient_snapshot(uow, snapshot)


def on_patients_changed(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
    """Several patient.created / patient.updated (partition order) -> one multi-row upsert.

    The same statement as `service.apply_patient_snapshot` (insert, or update where the held
    version is older), run for every patient's highest version in the batch (the first of
    equal ones): exactly what applying them one by one leaves behind. A version past the
    plausibility bound goes the one-by-one way, which checks it against the version held.
    """
    latest: dict[int, PatientSnapshot] = {}
    for envelope in envelopes:
        snapshot = _PATIENT_EVENTS[envelope.event_type].parse_payload(envelope)
        assert isinstance(snapshot, PatientSnapshot)
        held = latest.get(snapshot.patient_id)
        if held is None or snapshot.version > held.version:
            latest[snapshot.patient_id] = snapshot
    if any(snapshot.version > MAX_VERSION_JUMP for snapshot in latest.values()):
        for snapshot in latest.values():
            service.apply_patient_snapshot(uow, snapshot)
        return
    now = utcnow()
    rows = [{**snapshot.model_dump(), "updated_at": now} for snapshot in latest.values()]
    statement = _upsert_newer(PatientProjection, tuple(rows[0]), ("patient_id",))
    uow.session.execute(statement, rows)


_PATIENT_EVENTS = {event.name: event for event in (PATIENT_CREATED, PATIENT_UPDATED)}


def on_patient_erased(uow: UnitOfWork, envelope: Envelope) -> None:
    """patient.erased -> open search cancelled, free text blanked, birth year only."""
    erased = PATIENT_ERASED.parse_payload(envelope)
    assert isinstance(erased, PatientErasedView)
    erase_patient(uow, erased.patient_id, correlation_id=envelope.correlation_id)


def on_therapist_changed(uow: UnitOfWork, envelope: Envelope) -> None:
    """therapist.created / updated / blocked / unblocked -> therapist projection."""
    snapshot = _THERAPIST_EVENTS[envelope.event_type].parse_payload(envelope)
    assert isinstance(snapshot, TherapistSnapshot)
    service.apply_therapist_snapshot(uow, snapshot)


_THERAPIST_EVENTS = {event.name: event for event in THERAPIST_EVENTS}


def on_location_changed(uow: UnitOfWork, envelope: Envelope) -> None:
    """location.resolved / location.unresolved -> locations (version-guarded)."""
    location = _LOCATION_EVENTS[envelope.event_type].parse_payload(envelope)
    assert isinstance(location, LocationResolvedView | LocationUnresolvedView)
    service.apply_location(uow, location)


_LOCATION_EVENTS = {event.name: event for event in (LOCATION_RESOLVED, LOCATION_UNRESOLVED)}


def on_email_sent(uow: UnitOfWork, envelope: Envelope) -> None:
    """email.sent of an inquiry email -> the inquiry is sent (other kinds: nothing)."""
    email = EMAIL_SENT.parse_payload(envelope)
    assert isinstance(email, EmailSentView)
    if email.kind == "inquiry" and email.inquiry_id is not None:
        mark_inquiry_sent(
            uow,
            email.inquiry_id,
            sent_at=email.sent_at,
            sent_via="email",
            correlation_id=envelope.correlation_id,
        )


def on_phone_call_completed(uow: UnitOfWork, envelope: Envelope) -> None:
    """phone_call.completed that reached the therapist about an inquiry -> the inquiry is
    sent (by phone: a therapist without email); a call that did not reach them: nothing."""
    call = PHONE_CALL_COMPLETED.parse_payload(envelope)
    assert isinstance(call, PhoneCallCompletedView)
    if call.outcome == "reached" and call.inquiry_id is not None:
        mark_inquiry_sent(
            uow,
            call.inquiry_id,
            sent_at=call.completed_at,
            sent_via="phone",
            correlation_id=envelope.correlation_id,
        )


HANDLERS: Mapping[str, Handler] = {
    PATIENT_CREATED.name: Batchable(on_patient_changed, on_patients_changed),
    PATIENT_UPDATED.name: Batchable(on_patient_changed, on_patients_changed),
    PATIENT_ERASED.name: on_patient_erased,
    **{name: on_therapist_changed for name in _THERAPIST_EVENTS},
    **{name: on_location_changed for name in _LOCATION_EVENTS},
    EMAIL_SENT.name: on_email_sent,
    PHONE_CALL_COMPLETED.name: on_phone_call_completed,
}
