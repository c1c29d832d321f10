"""Edge cases of the placement rules: cooling, answers, conflicts, status, trials."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from matching_service.bundling import BundleConfig, Search, Therapist
from matching_service.placement import (
    ALLOWED_TRANSITIONS,
    FINAL_STATUSES,
    STAFF_TRANSITIONS,
    AnswerMismatch,
    InquiryAlreadyAnswered,
    InquiryState,
    InvalidTransition,
    Outcome,
    ResponseType,
    SearchState,
    SearchStatus,
    TherapistContact,
    TherapistStatus,
    cancel,
    change_status,
    claim,
    contactability,
    cooling_end,
    email_allowed,
    follow_up_due,
    grant_contacts,
    pause,
    record_answer,
    record_trial_failure,
    record_trial_success,
    replacement_offer,
    response_type,
    resume,
    staff_sources,
    use_contact,
    withdraw,
    withdrawals,
)

DAY = date(2026, 3, 2)


def _therapist(**kw: object) -> TherapistContact:
    return TherapistContact(**{"therapist_id": "t1", "practice_key": "p1", **kw})  # type: ignore[arg-type]


def _inquiry(ids: tuple[str, ...] = ("s1", "s2", "s3"), **kw: object) -> InquiryState:
    base = {"inquiry_id": "i1", "therapist_id": "t1", "practice_key": "p1", "search_ids": ids}
    return InquiryState(**{**base, "sent_on": DAY, **kw})  # type: ignore[arg-type]


def _searches(*ids: str) -> dict[str, SearchState]:
    return {sid: SearchState(search_id=sid, patient_id=f"p-{sid}", contact_budget=5) for sid in ids}


def test_therapist_is_contactable_on_the_day_cooling_ends() -> None:
    assert contactability(_therapist(next_contactable_date=DAY), DAY, set()).contactable


def test_therapist_is_not_contactable_the_day_before_cooling_ends() -> None:
    result = contactability(_therapist(next_contactable_date=date(2026, 3, 3)), DAY, set())
    assert (result.contactable, result.reason) == (False, "cooling")


def test_open_inquiry_of_the_practice_blocks_contact() -> None:
    assert contactability(_therapist(), DAY, {"p1"}).reason == "open_inquiry"


def test_blocked_or_unlocated_therapist_is_not_contactable() -> None:
    blocked = _therapist(status=TherapistStatus.BLOCKED)
    assert contactability(blocked, DAY, set()).reason == "status_blocked"
    assert contactability(_therapist(location_resolved=False), DAY, set()).reason == "no_location"


def test_cooling_ends_28_days_after_the_answer() -> None:
    assert cooling_end(DAY) == date(2026, 3, 30)


def test_follow_up_is_due_seven_days_after_sending_without_answer() -> None:
    assert not follow_up_due(DAY, None, date(2026, 3, 8))
    assert follow_up_due(DAY, None, date(2026, 3, 9))
    assert not follow_up_due(DAY, date(2026, 3, 4), date(2026, 3, 20))
    assert not follow_up_due(None, None, date(2026, 3, 20))


def test_second_email_to_a_practice_waits_seven_days() -> None:
    assert email_allowed(None, DAY)
    assert not email_allowed(DAY, date(2026, 3, 8))
    assert email_allowed(DAY, date(2026, 3, 9))


def test_answer_missing_a_patient_is_rejected_naming_it() -> None:
    with pytest.raises(AnswerMismatch, match="missing answers for s3") as err:
        record_answer(
            _inquiry(), {"s1": "accepted", "s2": "rejected_other"}, _searches("s1", "s2", "s3"), DAY
        )
    assert err.value.missing == ["s3"]


def test_answer_with_an_extra_patient_is_rejected_naming_it() -> None:
    outcomes = {s: Outcome.REJECTED_CAPACITY for s in ("s1", "s2", "s3", "s9")}
    with pytest.raises(AnswerMismatch, match="s9") as err:
        record_answer(_inquiry(), outcomes, _searches("s1", "s2", "s3", "s9"), DAY)
    assert err.value.extra == ["s9"]


def test_unsuitable_and_no_show_exclude_the_therapist() -> None:
    outcomes = {"s1": "rejected_unsuitable", "s2": "no_show", "s3": "rejected_capacity"}
    record = record_answer(_inquiry(), outcomes, _searches("s1", "s2", "s3"), DAY)
    assert record.searches["s1"].excludes("t1") and record.searches["s2"].excludes("t1")
    assert not record.searches["s3"].excludes("t1")
    assert record.response_type is ResponseType.FULL_REJECTION
    assert record.next_contactable_date == date(2026, 3, 30)


def test_first_acceptance_claims_the_search() -> None:
    outcomes = {"s1": "accepted", "s2": "rejected_other", "s3": "rejected_other"}
    record = record_answer(_inquiry(), outcomes, _searches("s1", "s2", "s3"), DAY)
    assert record.claimed == ("s1",)
    assert record.searches["s1"].status is SearchStatus.IN_TRIAL
    assert record.searches["s1"].placed_therapist_id == "t1"
    assert record.response_type is ResponseType.PARTIAL_ACCEPTANCE


def test_acceptance_after_a_claim_by_another_therapist_is_a_conflict() -> None:
    searches = _searches("s1", "s2", "s3")
    searches["s1"] = claim(searches["s1"], "t0")
    outcomes = {"s1": "accepted", "s2": "accepted", "s3": "accepted"}
    record = record_answer(_inquiry(), outcomes, searches, DAY)
    assert record.conflicts == ("s1",)
    assert record.searches["s1"].placed_therapist_id == "t0"
    assert record.claimed == ("s2", "s3")


def test_second_answer_to_the_same_inquiry_is_rejected() -> None:
    outcomes = {s: "rejected_other" for s in ("s1", "s2", "s3")}
    record = record_answer(_inquiry(), outcomes, _searches("s1", "s2", "s3"), DAY)
    with pytest.raises(InquiryAlreadyAnswered):
        record_answer(record.inquiry, outcomes, record.searches, DAY)


def test_answer_covers_only_patients_still_in_the_inquiry() -> None:
    inquiry = withdraw(_inquiry(), "s2")
    outcomes = {"s1": "rejected_other", "s3": "in_trial_sessions"}
    record = record_answer(inquiry, outcomes, _searches("s1", "s2", "s3"), DAY)
    assert record.claimed == ("s3",)
    assert inquiry.original_size == 3 and inquiry.current_search_ids == ("s1", "s3")


def test_claimed_search_is_withdrawn_from_other_open_inquiries_only() -> None:
    open_sent = _inquiry(inquiry_id="i2", therapist_id="t2")
    open_unsent = _inquiry(inquiry_id="i3", therapist_id="t3", sent_on=None)
    answered = _inquiry(inquiry_id="i4", therapist_id="t4", answered_on=DAY)
    found = withdrawals("s1", [_inquiry(), open_sent, open_unsent, answered], keep_inquiry_id="i1")
    assert [(w.inquiry_id, w.inform_therapist) for w in found] == [("i2", True), ("i3", False)]


def test_response_type_summarises_outcomes() -> None:
    assert response_type({}) is ResponseType.NO_RESPONSE
    assert response_type({"a": Outcome.ACCEPTED}) is ResponseType.FULL_ACCEPTANCE


def test_trial_failure_reactivates_and_excludes_the_therapist() -> None:
    search = claim(_searches("s1")["s1"], "t1")
    failed = record_trial_failure(search, DAY)
    assert failed.status is SearchStatus.ACTIVE and failed.placed_therapist_id is None
    assert failed.excludes("t1")
    with pytest.raises(InvalidTransition, match="excluded"):
        claim(failed, "t1")


def test_trial_success_is_final() -> None:
    done = record_trial_success(claim(_searches("s1")["s1"], "t1"))
    assert done.status is SearchStatus.SUCCESSFUL
    with pytest.raises(InvalidTransition, match="successful is final"):
        cancel(done)


def test_allowed_status_changes_follow_spec() -> None:
    search = _searches("s1")["s1"]
    assert resume(pause(search)).status is SearchStatus.ACTIVE
    assert cancel(pause(search)).status is SearchStatus.CANCELLED
    assert change_status(claim(search, "t1"), SearchStatus.ACTIVE, DAY).excludes("t1")


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (SearchStatus.PAUSED, SearchStatus.IN_TRIAL),
        (SearchStatus.CANCELLED, SearchStatus.ACTIVE),
        (SearchStatus.ACTIVE, SearchStatus.SUCCESSFUL),
        (SearchStatus.ACTIVE, SearchStatus.ACTIVE),
        (SearchStatus.IN_TRIAL, SearchStatus.PAUSED),
    ],
)
def test_wrong_status_change_raises_with_reason(start: SearchStatus, target: SearchStatus) -> None:
    search = SearchState(search_id="s", patient_id="p", status=start, placed_therapist_id="t")
    with pytest.raises(InvalidTransition) as err:
        change_status(search, target, DAY)
    assert err.value.reason


def test_staff_pause_resume_and_cancel_open_searches_only() -> None:
    assert {
        SearchStatus.ACTIVE: {SearchStatus.PAUSED, SearchStatus.CANCELLED},
        SearchStatus.PAUSED: {SearchStatus.ACTIVE, SearchStatus.CANCELLED},
        SearchStatus.IN_TRIAL: set(),
        SearchStatus.SUCCESSFUL: set(),
        SearchStatus.CANCELLED: set(),
    } == STAFF_TRANSITIONS
    assert staff_sources(SearchStatus.CANCELLED) == {SearchStatus.ACTIVE, SearchStatus.PAUSED}
    assert staff_sources(SearchStatus.ACTIVE) == {SearchStatus.PAUSED}  # not a failed trial
    assert staff_sources(SearchStatus.IN_TRIAL) == set()


def test_every_staff_transition_is_one_the_spec_allows() -> None:
    for current, targets in STAFF_TRANSITIONS.items():
        assert targets <= ALLOWED_TRANSITIONS[current]


def test_successful_and_cancelled_are_final() -> None:
    assert {SearchStatus.SUCCESSFUL, SearchStatus.CANCELLED} == FINAL_STATUSES


def test_contact_budget_grants_add_up_and_run_out() -> None:
    search = grant_contacts(SearchState(search_id="s", patient_id="p"), 2)
    assert use_contact(use_contact(search)).contact_budget == 0
    with pytest.raises(InvalidTransition, match="budget"):
        use_contact(use_contact(use_contact(search)))


def test_replacement_offer_lists_only_eligible_patients_longest_waiting_first() -> None:
    def search(sid: str, lat: float, days_ago: int, **kw: object) -> Search:
        since = datetime(2026, 3, 2, tzinfo=UTC) - timedelta(days=days_ago)
        return Search(sid, f"p{sid}", lat, 13.4, 20, "car", since, 3, **kw)  # type: ignore[arg-type]

    therapist = Therapist("t1", 52.5, 13.4, gender="male", contactable=False)
    pool = [
        search("near-new", 52.51, 2),
        search("near-old", 52.52, 20),
        search("far", 53.5, 25),
        search("wants-female", 52.5, 25, preferred_therapist_gender="female"),
        search("excluded", 52.5, 25, excluded_therapist_ids=frozenset({"t1"})),
        search("conflict", 52.5, 25),
    ]
    offer = replacement_offer(therapist, pool, BundleConfig(), DAY, skip_search_ids={"conflict"})
    assert offer == ["near-old", "near-new"]
