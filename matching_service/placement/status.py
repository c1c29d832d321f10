"""Search status transitions of business-rules.md §5, claims and trial outcomes."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from .errors import InvalidTransition
from .values import Exclusion, Id, SearchState, SearchStatus

ALLOWED_TRANSITIONS: dict[SearchStatus, frozenset[SearchStatus]] = {
    SearchStatus.ACTIVE: frozenset(
        {SearchStatus.PAUSED, SearchStatus.IN_TRIAL, SearchStatus.CANCELLED}
    ),
    SearchStatus.PAUSED: frozenset({SearchStatus.ACTIVE, SearchStatus.CANCELLED}),
    SearchStatus.IN_TRIAL: frozenset({SearchStatus.SUCCESSFUL, SearchStatus.ACTIVE}),
    SearchStatus.SUCCESSFUL: frozenset(),
    SearchStatus.CANCELLED: frozenset(),
}
TRIAL_FAILED = "trial_failed"

# What staff may set by PATCH: pause, resume, cancel. `in_trial` and `successful` come from
# answers and trial outcomes, and a trial's way back to `active` excludes its therapist.
STAFF_TRANSITIONS: dict[SearchStatus, frozenset[SearchStatus]] = {
    SearchStatus.ACTIVE: frozenset({SearchStatus.PAUSED, SearchStatus.CANCELLED}),
    SearchStatus.PAUSED: frozenset({SearchStatus.ACTIVE, SearchStatus.CANCELLED}),
    SearchStatus.IN_TRIAL: frozenset(),
    SearchStatus.SUCCESSFUL: frozenset(),
    SearchStatus.CANCELLED: frozenset(),
}
FINAL_STATUSES = frozenset(status for status, to in ALLOWED_TRANSITIONS.items() if not to)

# patient statuses (patient_service) from which a new search may start
PATIENT_STATUSES_OPEN_TO_SEARCH = frozenset(
    {"registered", "searching", "search_cancelled", "therapy_aborted"}
)


def patient_may_start_search(patient_status: str) -> bool:
    """A patient in therapy or done with it gets no new search."""
    return patient_status in PATIENT_STATUSES_OPEN_TO_SEARCH


def staff_sources(target: SearchStatus) -> frozenset[SearchStatus]:
    """The statuses from which staff may move a search to `target`."""
    return frozenset(status for status, to in STAFF_TRANSITIONS.items() if target in to)


def check_transition(current: SearchStatus, target: SearchStatus) -> None:
    """Raise InvalidTransition (with the reason) unless business-rules.md §5 allows current ->
    target."""
    if target in ALLOWED_TRANSITIONS[current]:
        return
    if not ALLOWED_TRANSITIONS[current]:
        reason = f"{current} is final"
    elif current == target:
        reason = f"the search is already {current}"
    else:
        allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[current]))
        reason = f"from {current} only {allowed} are allowed"
    raise InvalidTransition(current, target, reason)


def pause(search: SearchState) -> SearchState:
    """Pause an active search."""
    check_transition(search.status, SearchStatus.PAUSED)
    return replace(search, status=SearchStatus.PAUSED)


def resume(search: SearchState) -> SearchState:
    """Resume a paused search."""
    if search.status is not SearchStatus.PAUSED:
        raise InvalidTransition(search.status, SearchStatus.ACTIVE, "only a paused search resumes")
    return replace(search, status=SearchStatus.ACTIVE)


def cancel(search: SearchState) -> SearchState:
    """Cancel an active or paused search."""
    check_transition(search.status, SearchStatus.CANCELLED)
    return replace(search, status=SearchStatus.CANCELLED)


def claim(search: SearchState, therapist_id: Id) -> SearchState:
    """First acceptance: the search goes into trial sessions with this therapist."""
    if search.status is SearchStatus.IN_TRIAL:
        raise InvalidTransition(
            search.status,
            SearchStatus.IN_TRIAL,
            f"already claimed by therapist {search.placed_therapist_id}",
        )
    if search.excludes(therapist_id):
        raise InvalidTransition(
            search.status, SearchStatus.IN_TRIAL, f"therapist {therapist_id} is excluded"
        )
    check_transition(search.status, SearchStatus.IN_TRIAL)
    return replace(search, status=SearchStatus.IN_TRIAL, placed_therapist_id=therapist_id)


def record_trial_success(search: SearchState) -> SearchState:
    """Staff confirm the place after trial sessions: the search is successful (final)."""
    check_transition(search.status, SearchStatus.SUCCESSFUL)
    return replace(search, status=SearchStatus.SUCCESSFUL)


def record_trial_failure(search: SearchState, today: date) -> SearchState:
    """Trial failed: back to active, the trial therapist excluded for this search."""
    if search.status is not SearchStatus.IN_TRIAL or search.placed_therapist_id is None:
        raise InvalidTransition(search.status, SearchStatus.ACTIVE, "no trial is running")
    return replace(
        exclude(search, search.placed_therapist_id, TRIAL_FAILED, today),
        status=SearchStatus.ACTIVE,
        placed_therapist_id=None,
    )


def change_status(search: SearchState, target: SearchStatus, today: date) -> SearchState:
    """Generic status change; claims need a therapist, so they go through claim()."""
    if target is SearchStatus.IN_TRIAL and search.status is not SearchStatus.IN_TRIAL:
        check_transition(search.status, target)
        raise InvalidTransition(search.status, target, "a claim needs a therapist (use claim)")
    if search.status is SearchStatus.IN_TRIAL and target is SearchStatus.ACTIVE:
        return record_trial_failure(search, today)
    if target is SearchStatus.ACTIVE:
        return resume(search)
    check_transition(search.status, target)
    return replace(search, status=target)


def exclude(search: SearchState, therapist_id: Id, reason: str, since: date) -> SearchState:
    """Add a therapist to the exclusion list (idempotent)."""
    if search.excludes(therapist_id):
        return search
    return replace(search, exclusions=(*search.exclusions, Exclusion(therapist_id, reason, since)))


def grant_contacts(search: SearchState, count: int) -> SearchState:
    """Staff grant more contacts; grants add up."""
    if count < 1:
        raise ValueError("a grant adds at least one contact")
    return replace(search, contact_budget=search.contact_budget + count)


def use_contact(search: SearchState) -> SearchState:
    """One inclusion in an inquiry uses one contact."""
    if search.contact_budget < 1:
        raise InvalidTransition(search.status, search.status, "contact budget used up")
    return replace(search, contact_budget=search.contact_budget - 1)
