"""Pure patient rules: lifecycle, weekly hours, age, qualification."""

from __future__ import annotations

from datetime import date

import pytest

from patient_service.rules import (
    PatientStatus,
    QualificationInput,
    age_on,
    check_transition,
    from_older_search,
    parse_time_range,
    qualify,
    weekly_hours,
)
from shared.errors import InvalidTransition


def _input(**changes: object) -> QualificationInput:
    values: dict[str, object] = {
        "contract_signed": True,
        "payment_received": True,
        "diagnosis": "F32.1",
        "availability": {"mon": ["08:00-18:00"], "tue": ["08:00-18:00"]},
        "group_therapy_only": False,
        "last_therapy_end_date": None,
        "postal_code": "10115",
    }
    values.update(changes)
    return QualificationInput(**values)  # type: ignore[arg-type]


def test_registered_patient_may_start_searching_but_not_jump_to_therapy() -> None:
    check_transition(PatientStatus.REGISTERED, PatientStatus.SEARCHING)
    with pytest.raises(InvalidTransition, match="allowed: search_cancelled, searching"):
        check_transition(PatientStatus.REGISTERED, PatientStatus.IN_THERAPY)


def test_completed_therapy_is_final() -> None:
    with pytest.raises(InvalidTransition, match="final status"):
        check_transition(PatientStatus.THERAPY_COMPLETED, PatientStatus.SEARCHING)


def test_weekly_hours_count_overlapping_ranges_once() -> None:
    assert weekly_hours({"mon": ["09:00-12:00", "11:00-13:00"], "tue": ["14:00-14:30"]}) == 4.5


@pytest.mark.parametrize("text", ["9-12", "12:00-09:00", "25:00-26:00", "09:60-10:00"])
def test_malformed_time_range_is_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time_range(text)


def test_age_counts_whole_years_up_to_the_birthday() -> None:
    assert age_on(date(2000, 6, 15), date(2026, 6, 14)) == 25
    assert age_on(date(2000, 6, 15), date(2026, 6, 15)) == 26


def test_qualified_patient_has_no_unmet_criteria() -> None:
    result = qualify(_input(), date(2026, 11, 23))
    assert result.qualified
    assert result.weekly_hours == 20


def test_every_unmet_criterion_is_listed() -> None:
    result = qualify(
        _input(contract_signed=False, payment_received=False, diagnosis="G40", availability={}),
        date(2026, 11, 23),
    )
    assert result.unmet == (
        "contract_not_signed",
        "payment_not_received",
        "no_current_f_diagnosis",
        "availability_below_20_hours_per_week",
    )


def test_group_only_patients_need_ten_hours() -> None:
    ten_hours = {"mon": ["08:00-18:00"]}
    assert not qualify(_input(availability=ten_hours), date(2026, 11, 23)).qualified
    assert qualify(
        _input(availability=ten_hours, group_therapy_only=True), date(2026, 11, 23)
    ).qualified


def test_therapy_ended_less_than_two_years_ago_is_flagged_not_blocked() -> None:
    recent = qualify(_input(last_therapy_end_date=date(2025, 1, 1)), date(2026, 11, 23))
    old = qualify(_input(last_therapy_end_date=date(2024, 11, 23)), date(2026, 11, 23))
    assert recent.qualified and recent.two_year_rule_flag
    assert not old.two_year_rule_flag


def test_only_an_event_of_an_older_search_than_the_followed_one_is_ignored() -> None:
    assert from_older_search(501, 500)
    assert not from_older_search(501, 501)
    assert not from_older_search(501, 502)
    assert not from_older_search(None, 1)  # no search followed yet
