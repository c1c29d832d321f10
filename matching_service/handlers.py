"""Consumed event type -> use case."""

from __future__ import annotations

from collections.abc import Mapping

from matching_service import service
from matching_service.schemas import (
    LOCATION_RESOLVED,
    LOCATION_TOPIC,
    LOCATION_UNRESOLVED,
    PATIENT_CREATED,
    PATIENT_TOPIC,
    PATIENT_UPDATED,
    THERAPIST_EVENTS,
    THERAPIST_TOPIC,
    LocationResolvedView,
    LocationUnresolvedView,
    PatientSnapshot,
    TherapistSnapshot,
)
from shared.consumer import Handler
from shared.db import UnitOfWork
from shared.events import Envelope

SUBSCRIPTIONS: tuple[str, ...] = (PATIENT_TOPIC, THERAPIST_TOPIC, LOCATION_TOPIC)


def on_patient_changed(uow: UnitOfWork, envelope: Envelope) -> None:
    """patient.created / patient.updated -> patient projection."""
    snapshot = _PATIENT_EVENTS[envelope.event_type].parse_payload(envelope)
    assert isinstance(snapshot, PatientSnapshot)
    service.apply_patient_snapshot(uow, snapshot)


_PATIENT_EVENTS = {event.name: event for event in (PATIENT_CREATED, PATIENT_UPDATED)}


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


HANDLERS: Mapping[str, Handler] = {
    PATIENT_CREATED.name: on_patient_changed,
    PATIENT_UPDATED.name: on_patient_changed,
    **{name: on_therapist_changed for name in _THERAPIST_EVENTS},
    **{name: on_location_changed for name in _LOCATION_EVENTS},
}
