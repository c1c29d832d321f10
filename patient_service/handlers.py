"""Consumed event type -> use case."""

from __future__ import annotations

from collections.abc import Mapping

from patient_service import service
from patient_service.schemas import (
    SEARCH_CANCELLED,
    SEARCH_FAILED_TRIAL,
    SEARCH_STARTED,
    SEARCH_SUCCEEDED,
    SEARCH_TOPIC,
    SearchCancelledView,
    SearchStartedView,
    SearchTrialView,
)
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
            uow,
            started.patient_id,
            started.search_id,
            policy,
            correlation_id=envelope.correlation_id,
        )

    def on_search_cancelled(uow: UnitOfWork, envelope: Envelope) -> None:
        """search.cancelled -> a searching patient is `search_cancelled`."""
        cancelled = SEARCH_CANCELLED.parse_payload(envelope)
        assert isinstance(cancelled, SearchCancelledView)
        service.mark_search_cancelled(
            uow,
            cancelled.patient_id,
            cancelled.search_id,
            policy,
            correlation_id=envelope.correlation_id,
        )

    def on_search_succeeded(uow: UnitOfWork, envelope: Envelope) -> None:
        """search.succeeded (staff confirmed the place) -> a searching patient is
        `in_therapy`."""
        succeeded = SEARCH_SUCCEEDED.parse_payload(envelope)
        assert isinstance(succeeded, SearchTrialView)
        service.mark_in_therapy(
            uow,
            succeeded.patient_id,
            succeeded.search_id,
            policy,
            correlation_id=envelope.correlation_id,
        )

    def on_search_failed_trial(uow: UnitOfWork, envelope: Envelope) -> None:
        """search.failed_trial -> the search goes on: the patient stays (or is again)
        `searching`. (search.claimed changes nothing: business-rules.md §2 has no status for trial
        sessions; the patient is searching until the place is confirmed.)"""
        failed = SEARCH_FAILED_TRIAL.parse_payload(envelope)
        assert isinstance(failed, SearchTrialView)
        service.mark_searching(
            uow, failed.patient_id, failed.search_id, policy, correlation_id=envelope.correlation_id
        )

    return {
        SEARCH_STARTED.name: on_search_started,
        SEARCH_CANCELLED.name: on_search_cancelled,
        SEARCH_SUCCEEDED.name: on_search_succeeded,
        SEARCH_FAILED_TRIAL.name: on_search_failed_trial,
    }
