"""Consumed event type -> use case."""

from __future__ import annotations

from collections.abc import Mapping

from patient_service import service
from patient_service.schemas import SEARCH_STARTED, SEARCH_TOPIC, SearchStartedView
from patient_service.settings import PatientSettings
from shared.consumer import Handler
from shared.db import UnitOfWork
from shared.events import Envelope

SUBSCRIPTIONS: tuple[str, ...] = (SEARCH_TOPIC,)


def handlers(settings: PatientSettings) -> Mapping[str, Handler]:
    """Event type -> handler, bound to this process's settings."""
    policy = settings.qualification_policy()

    def on_search_started(uow: UnitOfWork, envelope: Envelope) -> None:
        """search.started -> the patient is `searching`."""
        started = SEARCH_STARTED.parse_payload(envelope)
        assert isinstance(started, SearchStartedView)
        service.mark_searching(
            uow, started.patient_id, policy, correlation_id=envelope.correlation_id
        )

    return {SEARCH_STARTED.name: on_search_started}
