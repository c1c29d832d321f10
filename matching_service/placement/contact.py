"""Who may be contacted when: cooling period, follow-up due dates, one email per week."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta

from .values import DEFAULT_SETTINGS, PlacementSettings, TherapistContact, TherapistStatus


@dataclass(frozen=True, slots=True)
class Contactability:
    """Whether a therapist may get an inquiry today, and if not, why."""

    contactable: bool
    reason: str | None = None


def contactability(
    therapist: TherapistContact, today: date, practices_with_open_inquiry: Collection[str]
) -> Contactability:
    """Apply business-rules.md §6: active, not cooling, no open inquiry of the practice, location
    known."""
    if therapist.status is not TherapistStatus.ACTIVE:
        return Contactability(False, f"status_{therapist.status}")
    if in_cooling(therapist, today):
        return Contactability(False, "cooling")
    if therapist.practice_key in practices_with_open_inquiry:
        return Contactability(False, "open_inquiry")
    if not therapist.location_resolved:
        return Contactability(False, "no_location")
    return Contactability(True)


def in_cooling(therapist: TherapistContact, today: date) -> bool:
    """In cooling while next_contactable_date is after today."""
    return therapist.next_contactable_date is not None and therapist.next_contactable_date > today


def cooling_end(answered_on: date, settings: PlacementSettings = DEFAULT_SETTINGS) -> date:
    """next_contactable_date after an answer: answer date + COOLING_PERIOD_DAYS."""
    return answered_on + timedelta(days=settings.cooling_period_days)


def follow_up_due_on(sent_on: date, settings: PlacementSettings = DEFAULT_SETTINGS) -> date:
    """Day a follow-up call becomes due when no answer arrived."""
    return sent_on + timedelta(days=settings.follow_up_after_days)


def follow_up_due(
    sent_on: date | None,
    answered_on: date | None,
    today: date,
    settings: PlacementSettings = DEFAULT_SETTINGS,
) -> bool:
    """A sent, unanswered inquiry needs a follow-up from FOLLOW_UP_AFTER_DAYS on."""
    if sent_on is None or answered_on is not None:
        return False
    return today >= follow_up_due_on(sent_on, settings)


def next_email_allowed_on(
    last_email_on: date | None, settings: PlacementSettings = DEFAULT_SETTINGS
) -> date | None:
    """First day the practice may get another inquiry email (None: any day)."""
    if last_email_on is None:
        return None
    return last_email_on + timedelta(days=settings.email_min_days_between)


def email_allowed(
    last_email_on: date | None, today: date, settings: PlacementSettings = DEFAULT_SETTINGS
) -> bool:
    """At most one inquiry email per practice per EMAIL_MIN_DAYS_BETWEEN days."""
    allowed_on = next_email_allowed_on(last_email_on, settings)
    return allowed_on is None or today >= allowed_on
