"""Therapists' answer histories for the bundler (business-rules.md §6: learn who tends to have
openings).

Per therapist the newest `limit` sent inquiries (by `sent_at`; unsent ones do not count), in
one query: a window function numbers each therapist's inquiries, newest first, and the
outcomes of their patients are counted per inquiry.

- `answered_on`: the day of the first answer; None while unanswered and when the inquiry
  was closed without one (`response_type` `no_response`).
- `patients`: the inquiry's original size (patients withdrawn later included).
- `accepted`: outcomes `accepted`, `in_trial_sessions` and `no_show` (each means the
  therapist offered a place; the acceptance of a withdrawn patient, a conflict, included).
- `rejected_capacity`: outcome `rejected_capacity`.
- `rejected_other`: outcomes `rejected_unsuitable` and `rejected_other`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from matching_service.bundling.model import MAX_HISTORY_ENTRIES, HistoryEntry
from matching_service.models import Inquiry, InquiryPatient

ACCEPTED_OUTCOMES = ("accepted", "in_trial_sessions", "no_show")
CAPACITY_OUTCOMES = ("rejected_capacity",)
OTHER_REJECTION_OUTCOMES = ("rejected_unsuitable", "rejected_other")


def answer_histories(
    session: Session, therapist_ids: Collection[int] | None, limit: int = MAX_HISTORY_ENTRIES
) -> dict[int, tuple[HistoryEntry, ...]]:
    """Answer history per therapist (None: all therapists), newest first, at most `limit`.

    Therapists without a sent inquiry are absent from the result.
    """
    if therapist_ids is not None and not therapist_ids:
        return {}
    numbered = select(
        Inquiry.id,
        Inquiry.therapist_id,
        Inquiry.sent_at,
        case(
            (func.coalesce(Inquiry.response_type, "") == "no_response", None),
            else_=Inquiry.answered_at,
        ).label("answered_at"),
        Inquiry.original_size,
        func.row_number()
        .over(
            partition_by=Inquiry.therapist_id,
            order_by=(Inquiry.sent_at.desc(), Inquiry.id.desc()),
        )
        .label("newest"),
    ).where(Inquiry.sent_at.is_not(None))
    if therapist_ids is not None:
        numbered = numbered.where(Inquiry.therapist_id.in_(list(therapist_ids)))
    recent = numbered.subquery()

    def outcomes(values: tuple[str, ...]) -> Any:
        return func.count().filter(InquiryPatient.outcome.in_(values))

    statement = (
        select(
            recent.c.therapist_id,
            recent.c.sent_at,
            recent.c.answered_at,
            recent.c.original_size,
            outcomes(ACCEPTED_OUTCOMES).label("accepted"),
            outcomes(CAPACITY_OUTCOMES).label("rejected_capacity"),
            outcomes(OTHER_REJECTION_OUTCOMES).label("rejected_other"),
        )
        .outerjoin(InquiryPatient, InquiryPatient.inquiry_id == recent.c.id)
        .where(recent.c.newest <= limit)
        .group_by(
            recent.c.id,
            recent.c.therapist_id,
            recent.c.sent_at,
            recent.c.answered_at,
            recent.c.original_size,
            recent.c.newest,
        )
        .order_by(recent.c.therapist_id, recent.c.newest)
    )
    histories: dict[int, list[HistoryEntry]] = {}
    for row in session.execute(statement):
        histories.setdefault(row.therapist_id, []).append(
            HistoryEntry(
                sent_on=_utc_day(row.sent_at),
                answered_on=None if row.answered_at is None else _utc_day(row.answered_at),
                patients=row.original_size,
                accepted=row.accepted,
                rejected_capacity=row.rejected_capacity,
                rejected_other=row.rejected_other,
            )
        )
    return {therapist_id: tuple(entries) for therapist_id, entries in histories.items()}


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()
