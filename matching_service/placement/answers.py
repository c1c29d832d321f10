"""Recording an answer, first acceptance wins, withdrawals and replacement offers
(business-rules.md §8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

from .contact import cooling_end
from .errors import AnswerMismatch, InquiryAlreadyAnswered
from .status import claim, exclude
from .values import (
    ACCEPTING,
    DEFAULT_SETTINGS,
    EXCLUDING,
    Id,
    InquiryState,
    Outcome,
    PlacementSettings,
    ResponseType,
    SearchState,
    SearchStatus,
)


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A patient to take out of another open inquiry; inform the therapist if it was sent."""

    inquiry_id: Id
    search_id: Id
    therapist_id: Id
    inform_therapist: bool


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    """Everything that follows from one recorded answer."""

    inquiry: InquiryState
    response_type: ResponseType
    searches: dict[Id, SearchState]
    claimed: tuple[Id, ...]
    conflicts: tuple[Id, ...]
    excluded: tuple[Id, ...]
    next_contactable_date: date


def response_type(outcomes: Mapping[Id, Outcome]) -> ResponseType:
    """Summarise per-patient outcomes; an empty answer is no response."""
    if not outcomes:
        return ResponseType.NO_RESPONSE
    accepted = sum(1 for o in outcomes.values() if o in ACCEPTING)
    if accepted == len(outcomes):
        return ResponseType.FULL_ACCEPTANCE
    return ResponseType.PARTIAL_ACCEPTANCE if accepted else ResponseType.FULL_REJECTION


def check_answered_patients(inquiry: InquiryState, outcomes: Mapping[Id, Outcome]) -> None:
    """The answered patients must be exactly the inquiry's current ones."""
    expected, given = set(inquiry.current_search_ids), set(outcomes)
    if expected != given:
        raise AnswerMismatch(missing=expected - given, extra=given - expected)


def record_answer(
    inquiry: InquiryState,
    outcomes: Mapping[Id, Outcome | str],
    searches: Mapping[Id, SearchState],
    answered_on: date,
    settings: PlacementSettings = DEFAULT_SETTINGS,
) -> AnswerRecord:
    """Apply an answer: exclusions, claims (first acceptance wins), conflicts, cooling."""
    if inquiry.answered_on is not None:
        raise InquiryAlreadyAnswered(f"inquiry {inquiry.inquiry_id} was answered already")
    parsed = {sid: Outcome(o) for sid, o in outcomes.items()}
    check_answered_patients(inquiry, parsed)
    updated = dict(searches)
    claimed, conflicts, excluded = [], [], []
    for sid in inquiry.current_search_ids:
        outcome, search = parsed[sid], updated[sid]
        if outcome in EXCLUDING:
            updated[sid] = exclude(search, inquiry.therapist_id, outcome.value, answered_on)
            excluded.append(sid)
        elif outcome in ACCEPTING:
            if accepts_first(search, inquiry.therapist_id):
                if search.status is SearchStatus.ACTIVE:
                    updated[sid] = claim(search, inquiry.therapist_id)
                claimed.append(sid)
            else:
                conflicts.append(sid)
    return AnswerRecord(
        inquiry=replace(inquiry, answered_on=answered_on),
        response_type=response_type(parsed),
        searches=updated,
        claimed=tuple(claimed),
        conflicts=tuple(conflicts),
        excluded=tuple(excluded),
        next_contactable_date=cooling_end(answered_on, settings),
    )


def accepts_first(search: SearchState, therapist_id: Id) -> bool:
    """An acceptance claims the search only while it is active (or already this therapist's)."""
    if search.status is SearchStatus.IN_TRIAL:
        return search.placed_therapist_id == therapist_id
    return search.status is SearchStatus.ACTIVE and not search.excludes(therapist_id)


def withdrawals(
    search_id: Id, inquiries: Sequence[InquiryState], keep_inquiry_id: Id | None = None
) -> list[Withdrawal]:
    """Open inquiries a claimed or ended search must be withdrawn from."""
    return [
        Withdrawal(
            inquiry_id=inq.inquiry_id,
            search_id=search_id,
            therapist_id=inq.therapist_id,
            inform_therapist=inq.sent_on is not None,
        )
        for inq in inquiries
        if inq.is_open and inq.inquiry_id != keep_inquiry_id and search_id in inq.current_search_ids
    ]


def withdraw(inquiry: InquiryState, search_id: Id) -> InquiryState:
    """Take a patient out of an inquiry; the original list stays for its original size."""
    if search_id not in inquiry.search_ids:
        raise KeyError(f"search {search_id} is not in inquiry {inquiry.inquiry_id}")
    return replace(inquiry, withdrawn=inquiry.withdrawn | {search_id})
