"""Weekly time windows ({"mon": ["09:00-12:00"], ...}) as 30-minute slot bitmasks."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SLOT_MINUTES = 30
SLOTS_PER_DAY = 24 * 60 // SLOT_MINUTES
WORDS = (len(DAYS) * SLOTS_PER_DAY + 63) // 64
_INTERVAL = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class WeeklyFormatError(ValueError):
    """A weekly schedule that does not follow the documented format."""


def parse_interval(text: str) -> tuple[int, int]:
    """Return (start, end) minutes of day for 'HH:MM-HH:MM'; end may be 24:00."""
    match = _INTERVAL.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise WeeklyFormatError(f"interval {text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if m1 > 59 or m2 > 59 or start >= end or end > 24 * 60:
        raise WeeklyFormatError(f"interval {text!r} is not a valid time range")
    return start, end


def validate_weekly(weekly: object) -> None:
    """Raise WeeklyFormatError unless weekly is a day -> list of intervals mapping."""
    if not isinstance(weekly, Mapping):
        raise WeeklyFormatError("must be an object mapping days to interval lists")
    for day, intervals in weekly.items():
        if day not in DAYS:
            raise WeeklyFormatError(f"unknown day {day!r} (use {', '.join(DAYS)})")
        if not isinstance(intervals, list | tuple):
            raise WeeklyFormatError(f"{day} must be a list of 'HH:MM-HH:MM' strings")
        for interval in intervals:
            parse_interval(interval)


def weekly_mask(weekly: Mapping[str, Sequence[str]] | None) -> np.ndarray:
    """Bitmask (uint64 words) of the 30-minute slots a schedule touches."""
    words = np.zeros(WORDS, dtype=np.uint64)
    if not weekly:
        return words
    bits = np.zeros(WORDS * 64, dtype=bool)
    for day, intervals in weekly.items():
        base = DAYS.index(day) * SLOTS_PER_DAY
        for interval in intervals:
            start, end = parse_interval(interval)
            # Generous rounding: a slot counts when the window touches it.
            first, last = start // SLOT_MINUTES, -(-end // SLOT_MINUTES)
            bits[base + first : base + last] = True
    packed = np.packbits(bits, bitorder="little")
    return packed.view(np.uint64).copy()


def weekly_hours(weekly: Mapping[str, Sequence[str]] | None) -> float:
    """Exact hours per week a schedule covers (for qualification rules)."""
    if not weekly:
        return 0.0
    minutes = 0
    for intervals in weekly.values():
        for interval in intervals:
            start, end = parse_interval(interval)
            minutes += end - start
    return minutes / 60.0
