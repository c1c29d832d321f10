"""Consumed event type -> use case."""

from __future__ import annotations

from collections.abc import Mapping

from geocoding_service import service
from geocoding_service.providers import providers_from_settings
from geocoding_service.schemas import (
    PATIENT_ERASED,
    PATIENT_EVENTS,
    PATIENT_TOPIC,
    THERAPIST_EVENTS,
    THERAPIST_TOPIC,
    PatientErasedView,
    PatientLocationView,
    TherapistLocationView,
)
from geocoding_service.settings import GeocodingSettings
from shared.consumer import Handler
from shared.db import UnitOfWork
from shared.events import Envelope

SUBSCRIPTIONS: tuple[str, ...] = (PATIENT_TOPIC, THERAPIST_TOPIC)

_PATIENT_EVENTS = {event.name: event for event in PATIENT_EVENTS}
_THERAPIST_EVENTS = {event.name: event for event in THERAPIST_EVENTS}


def handlers(settings: GeocodingSettings) -> Mapping[str, Handler]:
    """Event type -> handler, bound to this process's providers."""
    providers = providers_from_settings(settings)

    def on_patient_changed(uow: UnitOfWork, envelope: Envelope) -> None:
        """patient.created / updated -> locate the patient (PLZ centroid) if it moved."""
        patient = _PATIENT_EVENTS[envelope.event_type].parse_payload(envelope)
        assert isinstance(patient, PatientLocationView)
        service.locate_patient(
            uow,
            providers,
            patient.patient_id,
            patient.version,
            patient.postal_code,
            correlation_id=envelope.correlation_id,
        )

    def on_therapist_changed(uow: UnitOfWork, envelope: Envelope) -> None:
        """therapist.created / updated -> locate the practice if its address changed."""
        therapist = _THERAPIST_EVENTS[envelope.event_type].parse_payload(envelope)
        assert isinstance(therapist, TherapistLocationView)
        service.locate_therapist(
            uow,
            providers,
            therapist.therapist_id,
            therapist.version,
            therapist.postal_code,
            therapist.street,
            therapist.city,
            correlation_id=envelope.correlation_id,
        )

    def on_patient_erased(uow: UnitOfWork, envelope: Envelope) -> None:
        """patient.erased -> the patient's location is dropped."""
        erased = PATIENT_ERASED.parse_payload(envelope)
        assert isinstance(erased, PatientErasedView)
        service.erase_patient(uow, erased.patient_id)

    return {
        **{name: on_patient_changed for name in _PATIENT_EVENTS},
        PATIENT_ERASED.name: on_patient_erased,
        **{name: on_therapist_changed for name in _THERAPIST_EVENTS},
    }
