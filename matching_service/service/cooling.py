"""Cooling periods (business-rules.md §7): any recorded answer, or an inquiry closed unanswered,
keeps the practice from being contacted for COOLING_PERIOD_DAYS."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import cast, func, insert, select
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by

from matching_service.models import CoolingPeriod, Inquiry, TherapistProjection
from matching_service.schemas import COOLING_STARTED, CoolingStartedPayload
from shared.db import UnitOfWork
from shared.outbox import PendingEvent

PRODUCER = "matching_service"


def practice_therapists(uow: UnitOfWork, practice_key: str) -> list[int]:
    """The therapists of a practice known to matching, by id."""
    return list(
        uow.session.execute(
            select(TherapistProjection.therapist_id)
            .where(TherapistProjection.practice_key == practice_key)
            .order_by(TherapistProjection.therapist_id)
        ).scalars()
    )


def start_cooling(
    uow: UnitOfWork,
    inquiry: Inquiry,
    starts_on: date,
    *,
    cooling_period_days: int,
    correlation_id: str | None = None,
) -> CoolingPeriod:
    """Record the practice's cooling from `starts_on` and emit cooling.started (inside the
    caller's transaction)."""
    until = starts_on + timedelta(days=cooling_period_days)
    # the practice's therapists known here (else the inquiry's), found by the INSERT itself,
    # and the new row as the INSERT returns it: one statement
    members = (
        select(
            func.coalesce(
                func.jsonb_agg(
                    aggregate_order_by(
                        TherapistProjection.therapist_id, TherapistProjection.therapist_id
                    )
                ),
                cast([inquiry.therapist_id], JSONB),
            )
        )
        .where(TherapistProjection.practice_key == inquiry.practice_key)
        .scalar_subquery()
    )
    period = uow.session.execute(
        insert(CoolingPeriod)
        .values(
            practice_key=inquiry.practice_key,
            therapist_ids=members,
            inquiry_id=inquiry.id,
            starts_on=starts_on,
            until=until,
        )
        .returning(CoolingPeriod)
    ).scalar_one()
    payload = CoolingStartedPayload(
        practice_key=inquiry.practice_key,
        therapist_ids=period.therapist_ids,
        starts_on=starts_on,
        until=until,
        inquiry_id=inquiry.id,
    )
    uow.emit(
        PendingEvent.of(
            COOLING_STARTED,
            producer=PRODUCER,
            aggregate_id=inquiry.practice_key,
            payload=payload,
            correlation_id=correlation_id,
        )
    )
    return period
