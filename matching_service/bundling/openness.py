"""How likely a therapist has a place free, from the answer history and the own flag
(business-rules.md §6).

The score is a sum of simple signals, each weighed by its age (half-life HALF_LIFE_DAYS):

- flagged `potentially_available`: +1 (not aged: the therapist keeps it current);
- an answer that accepted a patient: +1;
- an answer without any capacity rejection (patients unsuitable, or none left): +0.5, the
  therapist had room;
- an answer that rejected for capacity and accepted nobody: -0.5;
- an inquiry sent and never answered (still open, or closed without answer): -0.25.

The assignment uses the score only as a coarse level (`openness_levels`), so that nearby
scores rank alike and distance, overlap and scarcity still decide among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np

from .model import Therapist

HALF_LIFE_DAYS = 90.0
FLAG_WEIGHT = 1.0
ACCEPTED_WEIGHT = 1.0
HAD_ROOM_WEIGHT = 0.5
FULL_WEIGHT = -0.5
UNANSWERED_WEIGHT = -0.25
# Levels are half-points of score, clipped to -LEVEL_RANGE..+LEVEL_RANGE.
LEVEL_RANGE = 4


def openness(therapist: Therapist, today: date) -> float:
    """The therapist's openness score on `today` (0: nothing known)."""
    score = FLAG_WEIGHT if therapist.potentially_available else 0.0
    for entry in therapist.answer_history:
        seen_on = entry.answered_on if entry.answered_on is not None else entry.sent_on
        decay = 0.5 ** (max((today - seen_on).days, 0) / HALF_LIFE_DAYS)
        if entry.answered_on is None:
            weight = UNANSWERED_WEIGHT
        elif entry.accepted > 0:
            weight = ACCEPTED_WEIGHT
        elif entry.rejected_capacity == 0:
            weight = HAD_ROOM_WEIGHT
        else:
            weight = FULL_WEIGHT
        score += weight * decay
    return score


def openness_level(therapist: Therapist, today: date) -> int:
    """The score rounded to half-points and clipped (higher = more likely open)."""
    level = round(2.0 * openness(therapist, today))
    return max(-LEVEL_RANGE, min(LEVEL_RANGE, level))


def openness_levels(
    therapists: Sequence[Therapist], today: date, use_history: bool = True
) -> np.ndarray:
    """Level per therapist (in the given order); all zero when the history is not used."""
    if not use_history:
        return np.zeros(len(therapists), dtype=np.int64)
    return np.array([openness_level(t, today) for t in therapists], dtype=np.int64)
