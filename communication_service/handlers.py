"""Consumed event type -> use case: inquiry events (emails to therapists, calls) and search
events (notifications to patients).

The follow-up call reads the therapist's phone hours from therapist_service, so the table
is built from the settings (`handlers_for`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from pydantic import BaseModel

from communication_service.contacts import directory_of
from communication_service.schemas import (
    INQUIRY_ANSWERED,
    INQUIRY_CLOSED,
    INQUIRY_CREATED,
    INQUIRY_FOLLOW_UP_DUE,
    INQUIRY_PATIENT_WITHDRAWN,
    INQUIRY_TOPIC,
    PATIENT_ERASED,
    PATIENT_TOPIC,
    SEARCH_CLAIMED,
    SEARCH_STARTED,
    SEARCH_TOPIC,
    InquiryAnsweredView,
    InquiryClosedView,
    InquiryCreatedView,
    InquiryFollowUpDueView,
    InquiryPatientWithdrawnView,
    PatientErasedView,
    SearchChangedView,
)
from communication_service.service import emails, gdpr
from communication_service.settings import CommunicationSettings
from shared.consumer import Handler
from shared.db import UnitOfWork
from shared.events import Envelope, EventType

SUBSCRIPTIONS: tuple[str, ...] = (INQUIRY_TOPIC, SEARCH_TOPIC, PATIENT_TOPIC)

View = TypeVar("View", bound=BaseModel)


def _route(
    event: EventType, view: type[View], use_case: Callable[[UnitOfWork, View], object]
) -> tuple[str, Handler]:
    """`event`'s name and a handler that parses its payload as `view` for `use_case`."""

    def handle(uow: UnitOfWork, envelope: Envelope) -> None:
        payload = event.parse_payload(envelope)
        assert isinstance(payload, view)
        use_case(uow, payload)

    return event.name, handle


def _erase(uow: UnitOfWork, erased: PatientErasedView) -> None:
    gdpr.erase_patient(uow, erased.patient_id)


def handlers_for(settings: CommunicationSettings) -> Mapping[str, Handler]:
    """The handler table of this service's consumer."""
    directory = directory_of(settings)

    def follow_up_due(uow: UnitOfWork, due: InquiryFollowUpDueView) -> None:
        emails.follow_up_due(
            uow,
            due,
            directory,
            slot_minutes=settings.phone_slot_minutes,
            horizon_days=settings.phone_search_horizon_days,
        )

    return dict(
        (
            _route(INQUIRY_CREATED, InquiryCreatedView, emails.queue_inquiry_email),
            _route(INQUIRY_PATIENT_WITHDRAWN, InquiryPatientWithdrawnView, emails.withdraw_patient),
            _route(INQUIRY_ANSWERED, InquiryAnsweredView, emails.inquiry_answered),
            _route(INQUIRY_FOLLOW_UP_DUE, InquiryFollowUpDueView, follow_up_due),
            _route(INQUIRY_CLOSED, InquiryClosedView, emails.inquiry_closed),
            _route(SEARCH_STARTED, SearchChangedView, emails.search_started),
            _route(SEARCH_CLAIMED, SearchChangedView, emails.place_found),
            _route(PATIENT_ERASED, PatientErasedView, _erase),
        )
    )
