"""The daily follow-up job (business-rules.md §7): a sent inquiry unanswered for
FOLLOW_UP_AFTER_DAYS is due a follow-up call (inquiry.follow_up_due, once); one unanswered for
INQUIRY_CLOSE_AFTER_DAYS is closed as `no_response` and its practice starts cooling."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from matching_service.models import Inquiry, InquiryPatient
from matching_service.schemas import (
    INQUIRY_CLOSED,
    INQUIRY_FOLLOW_UP_DUE,
    InquiryClosedPayload,
    InquiryFollowUpDuePayload,
)
from matching_service.service.cooling import PRODUCER, start_cooling
from shared.db import UnitOfWork, utcnow
from shared.outbox import PendingEvent


@dataclass(frozen=True)
class FollowUpRun:
    """What one run did: the inquiries it found due a follow-up and those it closed."""

    as_of: datetime
    follow_ups_due: list[int]
    closed: list[int]

    def summary(self) -> str:
        """One line for the cron log."""
        return (
            f"follow-ups as of {self.as_of.isoformat()}: {len(self.follow_ups_due)} due, "
            f"{len(self.closed)} inquiries closed without answer (cooling started)"
        )


def run_follow_ups(
    uow: UnitOfWork,
    *,
    follow_up_after_days: int,
    close_after_days: int,
    cooling_period_days: int,
    as_of: datetime | None = None,
    correlation_id: str | None = None,
) -> FollowUpRun:
    """Close the inquiries unanswered for `close_after_days` (cooling from `as_of`'s date),
    then flag those unanswered for `follow_up_after_days`; each a conditional UPDATE ...
    RETURNING, so every event is emitted once however often or concurrently it runs."""
    now = as_of or utcnow()
    with uow:
        closed = _close_unanswered(uow, now, close_after_days, cooling_period_days, correlation_id)
        due = _flag_follow_ups(uow, now, follow_up_after_days, correlation_id)
        uow.commit()
    return FollowUpRun(as_of=now, follow_ups_due=due, closed=closed)


def _close_unanswered(
    uow: UnitOfWork,
    now: datetime,
    close_after_days: int,
    cooling_period_days: int,
    correlation_id: str | None,
) -> list[int]:
    inquiries = uow.session.scalars(
        update(Inquiry)
        .where(
            Inquiry.status == "sent",
            Inquiry.answered_at.is_(None),
            Inquiry.sent_at <= now - timedelta(days=close_after_days),
        )
        .values(status="closed", response_type="no_response", closed_at=now, updated_at=now)
        .returning(Inquiry),
        execution_options={"synchronize_session": False},
    ).all()
    for inquiry in sorted(inquiries, key=lambda inquiry: inquiry.id):
        payload = InquiryClosedPayload(
            inquiry_id=inquiry.id,
            therapist_id=inquiry.therapist_id,
            practice_key=inquiry.practice_key,
            response_type="no_response",
            closed_at=now,
        )
        uow.emit(
            PendingEvent.of(
                INQUIRY_CLOSED,
                producer=PRODUCER,
                aggregate_id=inquiry.id,
                payload=payload,
                correlation_id=correlation_id,
            )
        )
        start_cooling(
            uow,
            inquiry,
            now.date(),
            cooling_period_days=cooling_period_days,
            correlation_id=correlation_id,
        )
    return sorted(inquiry.id for inquiry in inquiries)


def _flag_follow_ups(
    uow: UnitOfWork, now: datetime, follow_up_after_days: int, correlation_id: str | None
) -> list[int]:
    rows = uow.session.execute(
        update(Inquiry)
        .where(
            Inquiry.status == "sent",
            Inquiry.answered_at.is_(None),
            Inquiry.follow_up_due_at.is_(None),
            Inquiry.sent_at <= now - timedelta(days=follow_up_after_days),
        )
        .values(follow_up_due_at=now, updated_at=now)
        .returning(Inquiry.id, Inquiry.therapist_id, Inquiry.practice_key, Inquiry.sent_at)
    ).all()
    searches = _open_searches(uow, [row.id for row in rows])
    for row in sorted(rows, key=lambda row: row.id):
        assert row.sent_at is not None  # the UPDATE's condition
        payload = InquiryFollowUpDuePayload(
            inquiry_id=row.id,
            therapist_id=row.therapist_id,
            practice_key=row.practice_key,
            sent_at=row.sent_at,
            due_since=now,
            search_ids=searches.get(row.id, []),
        )
        uow.emit(
            PendingEvent.of(
                INQUIRY_FOLLOW_UP_DUE,
                producer=PRODUCER,
                aggregate_id=row.id,
                payload=payload,
                correlation_id=correlation_id,
            )
        )
    return sorted(row.id for row in rows)


def _open_searches(uow: UnitOfWork, inquiry_ids: list[int]) -> dict[int, list[int]]:
    """The searches still offered in each inquiry, by position (one query)."""
    if not inquiry_ids:
        return {}
    rows = uow.session.execute(
        select(InquiryPatient.inquiry_id, InquiryPatient.search_id)
        .where(InquiryPatient.inquiry_id.in_(inquiry_ids), InquiryPatient.status == "open")
        .order_by(InquiryPatient.inquiry_id, InquiryPatient.position)
    )
    searches: dict[int, list[int]] = {}
    for inquiry_id, search_id in rows:
        searches.setdefault(inquiry_id, []).append(search_id)
    return searches
