"""Pure patient rules: lifecycle, qualification, weekly hours, age. No I/O."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from shared.errors import InvalidTransition, ValidationFailed
from shared.weekly import parse_time_range

SYMPTOMS = (
    "low_mood",
    "loss_of_interest",
    "anxiety",
    "panic_attacks",
    "social_anxiety",
    "sleep_problems",
    "exhaustion",
    "concentration_problems",
    "compulsions",
    "trauma_consequences",
    "grief",
    "relationship_problems",
    "eating_problems",
    "addiction",
    "self_harm_thoughts",
    "psychosomatic_complaints",
    "social_withdrawal",
    "stress",
    "anger",
    "loneliness",
)


class PatientStatus(enum.StrEnum):
    """Where a patient stands (business-rules.md §2)."""

    REGISTERED = "registered"
    SEARCHING = "searching"
    IN_THERAPY = "in_therapy"
    THERAPY_COMPLETED = "therapy_completed"
    SEARCH_CANCELLED = "search_cancelled"
    THERAPY_ABORTED = "therapy_aborted"
    # personal data erased (GDPR Art. 17): final, set only by erasure
    ERASED = "erased"


ALLOWED_TRANSITIONS: Mapping[PatientStatus, frozenset[PatientStatus]] = {
    PatientStatus.REGISTERED: frozenset({PatientStatus.SEARCHING, PatientStatus.SEARCH_CANCELLED}),
    PatientStatus.SEARCHING: frozenset({PatientStatus.IN_THERAPY, PatientStatus.SEARCH_CANCELLED}),
    PatientStatus.IN_THERAPY: frozenset(
        {PatientStatus.THERAPY_COMPLETED, PatientStatus.THERAPY_ABORTED}
    ),
    PatientStatus.SEARCH_CANCELLED: frozenset({PatientStatus.SEARCHING}),
    PatientStatus.THERAPY_ABORTED: frozenset({PatientStatus.SEARCHING}),
    PatientStatus.THERAPY_COMPLETED: frozenset(),
    PatientStatus.ERASED: frozenset(),
}


def check_transition(
    current: PatientStatus,
    target: PatientStatus,
    offered: frozenset[PatientStatus] | None = None,
) -> None:
    """Raise `InvalidTransition` with the reason unless `current -> target` is allowed; the
    reason lists `offered` (default: every status the lifecycle allows from `current`)."""
    if target == current:
        return
    if target not in ALLOWED_TRANSITIONS[current]:
        allowed = sorted(ALLOWED_TRANSITIONS[current] if offered is None else offered)
        final = not ALLOWED_TRANSITIONS[current]
        options = ", ".join(allowed) or ("none (final status)" if final else "none")
        raise InvalidTransition(
            f"a patient in status '{current}' cannot move to '{target}'; allowed: {options}",
            {"current": current.value, "requested": target.value, "allowed": allowed},
        )


# Statuses the patient's search sets (matching's events: search.started, and a confirmed
# placement), never staff by PATCH: a patient is `searching` when matching has a search.
EVENT_DRIVEN_STATUSES: frozenset[PatientStatus] = frozenset(
    {PatientStatus.SEARCHING, PatientStatus.IN_THERAPY, PatientStatus.ERASED}
)


def from_older_search(followed_search_id: int | None, search_id: int) -> bool:
    """Whether a search event is about a search older than the one the patient follows (one
    open search per patient, and search ids grow: a newer search has replaced it)."""
    return followed_search_id is not None and search_id < followed_search_id


def staff_targets(current: PatientStatus) -> frozenset[PatientStatus]:
    """The statuses staff may move a patient to from `current`."""
    return ALLOWED_TRANSITIONS[current] - EVENT_DRIVEN_STATUSES


def check_staff_transition(current: PatientStatus, target: PatientStatus) -> None:
    """A status change by staff: `ValidationFailed` on `status` (listing what staff may set)
    for a status only events set, else `check_transition` offering the staff statuses."""
    if target != current and target in EVENT_DRIVEN_STATUSES:
        allowed = sorted(staff_targets(current))
        raise ValidationFailed(
            "invalid body: status",
            [
                {
                    "field": "status",
                    "message": f"'{target}' is set by the patient's search, not by staff; "
                    f"from '{current}' staff may set: {', '.join(allowed) or 'none'}",
                    "allowed": allowed,
                }
            ],
        )
    check_transition(current, target, staff_targets(current))


def weekly_hours(availability: Mapping[str, Sequence[str]]) -> float:
    """Hours per week covered by the availability, overlapping ranges counted once."""
    total = 0
    for ranges in availability.values():
        merged_end = -1
        for start, end in sorted(parse_time_range(r) for r in ranges):
            start = max(start, merged_end)
            if end > start:
                total += end - start
            merged_end = max(merged_end, end)
    return total / 60


def age_on(birth_date: date, day: date) -> int:
    """Age in whole years on `day`."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


@dataclass(frozen=True)
class QualificationPolicy:
    """Qualification thresholds (business-rules.md §11), from settings."""

    min_weekly_hours: float = 20
    min_weekly_hours_group: float = 10
    two_year_rule_days: int = 730


@dataclass(frozen=True)
class QualificationInput:
    """What qualification looks at."""

    contract_signed: bool
    payment_received: bool
    diagnosis: str | None
    availability: Mapping[str, Sequence[str]]
    group_therapy_only: bool
    last_therapy_end_date: date | None
    postal_code: str | None


@dataclass(frozen=True)
class Qualification:
    """Unmet criteria (empty = qualified) and flags therapists must know about."""

    unmet: tuple[str, ...]
    two_year_rule_flag: bool
    weekly_hours: float

    @property
    def qualified(self) -> bool:
        """Whether a search may start."""
        return not self.unmet


def qualify(
    data: QualificationInput,
    today: date,
    *,
    min_weekly_hours: float = 20,
    min_weekly_hours_group: float = 10,
    two_year_rule_days: int = 730,
) -> Qualification:
    """Every unmet qualification criterion of business-rules.md §2, in a stable order."""
    unmet: list[str] = []
    if not data.contract_signed:
        unmet.append("contract_not_signed")
    if not data.payment_received:
        unmet.append("payment_not_received")
    if not data.diagnosis or not data.diagnosis.startswith("F"):
        unmet.append("no_current_f_diagnosis")
    hours = weekly_hours(data.availability)
    needed = min_weekly_hours_group if data.group_therapy_only else min_weekly_hours
    if hours < needed:
        unmet.append(f"availability_below_{needed:g}_hours_per_week")
    if not data.postal_code:
        unmet.append("location_unknown")
    flag = (
        data.last_therapy_end_date is not None
        and (today - data.last_therapy_end_date).days < two_year_rule_days
    )
    return Qualification(unmet=tuple(unmet), two_year_rule_flag=flag, weekly_hours=hours)
