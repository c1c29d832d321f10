"""The weekly time format shared by patients' availability and therapists' phone and working
hours: `{"mon": ["08:00-09:00", "14:00-16:30"], ...}`. Pure: no I/O."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_time_range(text: str) -> tuple[int, int]:
    """'09:00-12:30' -> (540, 750) minutes since midnight; raises ValueError when malformed."""
    try:
        start_text, end_text = text.split("-")
        start, end = _minutes(start_text), _minutes(end_text)
    except ValueError:
        raise ValueError(f"'{text}' is not a time range like '09:00-12:00'") from None
    if start >= end:
        raise ValueError(f"'{text}' ends before it starts")
    return start, end


def _minutes(text: str) -> int:
    hours, minutes = text.strip().split(":")
    value = int(hours) * 60 + int(minutes)
    if not (0 <= int(minutes) < 60 and 0 <= value <= 24 * 60):
        raise ValueError(text)
    return value


def _check_ranges(ranges: list[str]) -> list[str]:
    for item in ranges:
        parse_time_range(item)
    return ranges


TimeRanges = Annotated[list[str], Field(max_length=12), AfterValidator(_check_ranges)]
WeeklySchedule = dict[Literal[WEEKDAYS], TimeRanges]  # type: ignore[valid-type]
