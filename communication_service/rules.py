"""Phone work as pure rules: working days and the earliest free call slot (business-rules.md §7).

Phone hours are local German times (`{"mon": ["08:00-09:00"], ...}`); slots are computed in
Europe/Berlin and returned as UTC instants, so a slot stays the same moment across daylight
saving changes. A working day is Monday to Friday and not a nationwide German public holiday
(state holidays need the practice's state, which the platform does not hold).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays

from shared.weekly import WEEKDAYS, parse_time_range

BERLIN = ZoneInfo("Europe/Berlin")


@cache
def _german_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("DE", years=year))


def is_working_day(day: date) -> bool:
    """Monday to Friday and not a nationwide German public holiday."""
    return day.weekday() < 5 and day not in _german_holidays(day.year)


def next_working_day(after: date) -> date:
    """The first working day after `after`."""
    day = after + timedelta(days=1)
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


@dataclass(frozen=True, slots=True)
class SlotSearch:
    """Where a call may go: from `first_day` (local) on, not before `not_before`, up to and
    including `last_day`."""

    first_day: date
    last_day: date
    not_before: datetime


def follow_up_window(as_of: datetime, horizon_days: int) -> SlotSearch:
    """A follow-up call: from the next working day after `as_of` (local date), within
    `horizon_days` days of it."""
    today = as_of.astimezone(BERLIN).date()
    return SlotSearch(next_working_day(today), today + timedelta(days=horizon_days), as_of)


def retry_window(failed_at: datetime, horizon_days: int) -> SlotSearch:
    """A call that did not reach the therapist: the next free slot after it, the same day
    included, within `horizon_days` days."""
    today = failed_at.astimezone(BERLIN).date()
    return SlotSearch(today, today + timedelta(days=horizon_days), failed_at)


def candidate_slots(
    phone_hours: Mapping[str, Sequence[str]], window: SlotSearch, slot_minutes: int
) -> Iterator[datetime]:
    """Every slot start (UTC) inside the phone hours of the window's working days, in order."""
    if slot_minutes < 1:
        raise ValueError("slot_minutes must be at least 1")
    day = window.first_day
    while day <= window.last_day:
        if is_working_day(day):
            weekday = WEEKDAYS[day.weekday()]
            ranges = sorted(parse_time_range(r) for r in phone_hours.get(weekday, ()))
            for start, end in ranges:
                minute = start
                while minute + slot_minutes <= end:
                    local = datetime.combine(day, time(minute // 60, minute % 60), BERLIN)
                    # (clock changes happen on Sunday nights, never in working hours)
                    instant = local.astimezone(UTC)
                    if instant >= window.not_before:
                        yield instant
                    minute += slot_minutes
        day += timedelta(days=1)


def earliest_free_slot(
    phone_hours: Mapping[str, Sequence[str]],
    window: SlotSearch,
    taken: Collection[datetime],
    slot_minutes: int,
) -> datetime | None:
    """The first slot of the window that overlaps no call in `taken` (slot starts), or None
    when the window has no free slot (or no phone hours at all)."""
    length = timedelta(minutes=slot_minutes)
    busy = sorted(moment.astimezone(UTC) for moment in taken)
    for slot in candidate_slots(phone_hours, window, slot_minutes):
        if not any(abs(slot - call) < length for call in busy):
            return slot
    return None


def reference_of(search_id: int) -> str:
    """The reference a therapist quotes for a patient of an inquiry."""
    return f"PS-{search_id}"
