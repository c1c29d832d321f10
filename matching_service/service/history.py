"""Therapists' answer histories for the bundler (business-rules.md §6: learn who tends to have
openings).

Per therapist the newest `limit` sent inquiries (by `sent_at`; unsent ones do not count), in
one query: a window function numbers each therapist's inquiries, newest first, the outcomes
of their patients are counted per inquiry, and each therapist's entries are aggregated into
one JSON array (the bundle run joins it to its read of the therapists).

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
from datetime import date
from typing import Any

from sqlalchemy import Date, Select, case, cast, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
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
    documents = history_documents(therapist_ids, limit)
    return {
        therapist_id: history_entries(entries)
        for therapist_id, entries in session.execute(
            select(documents.c.therapist_id, documents.c.entries)
        )
    }


def history_documents(
    therapist_ids: Collection[int] | Select[Any] | None, limit: int = MAX_HISTORY_ENTRIES
) -> Any:
    """Subquery: one row per therapist with a sent inquiry (of `therapist_ids`, a list or a
    SELECT of ids; None: all of them), `therapist_id` and `entries`: a JSON array of the
    newest `limit` entries, newest first, each `[sent_on, answered_on, patients, accepted,
    rejected_capacity, rejected_other]` (`history_entries` reads it); the days are UTC days."""
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
        ids = therapist_ids if isinstance(therapist_ids, Select) else list(therapist_ids)
        numbered = numbered.where(Inquiry.therapist_id.in_(ids))
    recent = numbered.subquery()

    def outcomes(values: tuple[str, ...]) -> Any:
        return func.count().filter(InquiryPatient.outcome.in_(values))

    entries = (
        select(
            recent.c.therapist_id,
            recent.c.newest,
            func.json_build_array(
                _utc_day(recent.c.sent_at),
                _utc_day(recent.c.answered_at),
                recent.c.original_size,
                outcomes(ACCEPTED_OUTCOMES),
                outcomes(CAPACITY_OUTCOMES),
                outcomes(OTHER_REJECTION_OUTCOMES),
            ).label("entry"),
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
        .subquery()
    )
    return (
        select(
            entries.c.therapist_id,
            func.json_agg(aggregate_order_by(entries.c.entry, entries.c.newest)).label("entries"),
        )
        .group_by(entries.c.therapist_id)
        .subquery("answer_history")
    )


def history_entries(entries: list[list[Any]] | None) -> tuple[HistoryEntry, ...]:
    """The entries of one `history_documents` row (None: no history)."""
    if not entries:
        return ()
    return tuple(
        HistoryEntry(
            sent_on=date.fromisoformat(sent_on),
            answered_on=None if answered_on is None else date.fromisoformat(answered_on),
            patients=patients,
            accepted=accepted,
            rejected_capacity=capacity,
            rejected_other=other,
        )
        for sent_on, answered_on, patients, accepted, capacity, other in entries
    )


def _utc_day(moment: Any) -> Any:
    """The UTC day of a timestamptz (NULL stays NULL)."""
    return cast(func.timezone("UTC", moment), Date)
