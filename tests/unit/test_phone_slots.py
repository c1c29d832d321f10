"""Follow-up call slots: working days, German holidays, phone hours, collisions, horizon."""

from __future__ import annotations

from datetime import UTC, date, datetime

from communication_service.rules import (
    BERLIN,
    earliest_free_slot,
    follow_up_window,
    is_working_day,
    next_working_day,
    retry_window,
)

HOURS = {"mon": ["08:00-08:30"], "wed": ["12:00-12:15"], "fri": ["08:00-08:30"]}


def _local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def test_weekends_and_nationwide_holidays_are_not_working_days() -> None:
    assert is_working_day(date(2026, 12, 23))
    assert not is_working_day(date(2026, 12, 25))  # Christmas, a Friday
    assert not is_working_day(date(2026, 12, 27))  # Sunday
    assert next_working_day(date(2026, 12, 24)) == date(2026, 12, 28)
    assert next_working_day(date(2026, 10, 2)) == date(2026, 10, 5)  # 3 Oct is a Saturday


def test_a_follow_up_goes_to_the_first_phone_hour_from_the_next_working_day() -> None:
    as_of = _local(2026, 12, 4, 7, 0)  # a Friday with phone hours later that day
    slot = earliest_free_slot(HOURS, follow_up_window(as_of, 14), [], 5)
    assert slot == _local(2026, 12, 7, 8, 0)  # Monday, not the same Friday


def test_holidays_are_skipped() -> None:
    as_of = _local(2026, 12, 22, 18, 0)  # Tuesday; the next Fridays are 25 Dec and 1 Jan
    fridays = {"fri": ["08:00-09:00"]}
    assert earliest_free_slot(fridays, follow_up_window(as_of, 17), [], 5) == _local(
        2027, 1, 8, 8, 0
    )
    assert earliest_free_slot(fridays, follow_up_window(as_of, 14), [], 5) is None


def test_taken_and_overlapping_calls_push_the_slot_on() -> None:
    window = follow_up_window(_local(2026, 12, 4, 9), 14)
    monday = _local(2026, 12, 7, 8, 0)
    assert earliest_free_slot(HOURS, window, [monday], 5) == _local(2026, 12, 7, 8, 5)
    # a call at 08:02 (other phone hours when it was booked) blocks 08:00 and 08:05
    assert earliest_free_slot(HOURS, window, [_local(2026, 12, 7, 8, 2)], 5) == _local(
        2026, 12, 7, 8, 10
    )


def test_a_full_day_moves_to_the_next_day_with_phone_hours() -> None:
    window = follow_up_window(_local(2026, 12, 4, 9), 14)
    full_monday = [_local(2026, 12, 7, 8, m) for m in range(0, 30, 5)]
    assert earliest_free_slot(HOURS, window, full_monday, 5) == _local(2026, 12, 9, 12, 0)


def test_no_phone_hours_within_the_horizon_means_no_slot() -> None:
    window = follow_up_window(_local(2026, 12, 4, 9), 14)
    assert earliest_free_slot({}, window, [], 5) is None
    assert earliest_free_slot({"sat": ["10:00-12:00"]}, window, [], 5) is None
    short = follow_up_window(_local(2026, 12, 4, 9), 2)  # Sat, Sun: Monday is beyond
    assert earliest_free_slot(HOURS, short, [], 5) is None


def test_the_horizon_end_day_is_included() -> None:
    window = follow_up_window(_local(2026, 12, 4, 9), 3)  # up to Monday 7 Dec
    assert earliest_free_slot(HOURS, window, [], 5) == _local(2026, 12, 7, 8, 0)


def test_a_slot_must_fit_before_the_phone_hours_end() -> None:
    window = follow_up_window(_local(2026, 12, 4, 9), 14)
    assert earliest_free_slot({"mon": ["08:00-08:04"]}, window, [], 5) is None


def test_a_retry_takes_the_next_free_slot_the_same_day() -> None:
    failed_at = _local(2026, 12, 7, 8, 0)
    assert earliest_free_slot(HOURS, retry_window(failed_at, 14), [failed_at], 5) == _local(
        2026, 12, 7, 8, 5
    )
    late = _local(2026, 12, 7, 8, 27)  # no whole slot left on Monday
    assert earliest_free_slot(HOURS, retry_window(late, 14), [], 5) == _local(2026, 12, 9, 12, 0)


def test_slots_are_local_german_times_across_daylight_saving() -> None:
    hours = {"tue": ["08:00-08:30"], "thu": ["08:00-08:30"]}  # clocks change on 28 Mar 2027
    winter = earliest_free_slot(hours, follow_up_window(_local(2027, 3, 24, 9), 14), [], 5)
    summer = earliest_free_slot(hours, follow_up_window(_local(2027, 3, 29, 9), 14), [], 5)
    assert winter == datetime(2027, 3, 25, 7, 0, tzinfo=UTC)  # Thursday, CET
    assert summer == datetime(2027, 3, 30, 6, 0, tzinfo=UTC)  # Tuesday after Easter, CEST
