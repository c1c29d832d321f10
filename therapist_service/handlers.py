"""Consumed event type -> use case: the cooling periods matching starts and ends."""

from __future__ import annotations

from collections.abc import Mapping

from shared.consumer import Handler
from shared.db import UnitOfWork
from shared.events import Envelope
from therapist_service import service
from therapist_service.schemas import (
    COOLING_OVERRIDDEN,
    COOLING_STARTED,
    COOLING_TOPIC,
    CoolingOverriddenView,
    CoolingStartedView,
)

SUBSCRIPTIONS: tuple[str, ...] = (COOLING_TOPIC,)


def on_cooling_started(uow: UnitOfWork, envelope: Envelope) -> None:
    """cooling.started -> the practice's therapists are not contactable before `until`."""
    cooling = COOLING_STARTED.parse_payload(envelope)
    assert isinstance(cooling, CoolingStartedView)
    service.follow_cooling(
        uow,
        cooling.therapist_ids,
        service.cooling_until(cooling.until),
        occurred_at=envelope.occurred_at,
        correlation_id=envelope.correlation_id,
    )


def on_cooling_overridden(uow: UnitOfWork, envelope: Envelope) -> None:
    """cooling.overridden -> the practice's next contactable date is matching's new one."""
    override = COOLING_OVERRIDDEN.parse_payload(envelope)
    assert isinstance(override, CoolingOverriddenView)
    service.follow_cooling(
        uow,
        override.therapist_ids,
        lambda _held: override.next_contactable_date,
        occurred_at=envelope.occurred_at,
        correlation_id=envelope.correlation_id,
    )


HANDLERS: Mapping[str, Handler] = {
    COOLING_STARTED.name: on_cooling_started,
    COOLING_OVERRIDDEN.name: on_cooling_overridden,
}
