"""Value types of the placement rules: statuses, outcomes, settings, searches, inquiries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

Id = str | int


class SearchStatus(StrEnum):
    """Status of a patient search (business-rules.md §5)."""

    ACTIVE = "active"
    PAUSED = "paused"
    IN_TRIAL = "in_trial"
    SUCCESSFUL = "successful"
    CANCELLED = "cancelled"


class TherapistStatus(StrEnum):
    """Status of a therapist record (business-rules.md §3)."""

    ACTIVE = "active"
    BLOCKED = "blocked"
    INACTIVE = "inactive"


class Outcome(StrEnum):
    """A therapist's answer for one patient of an inquiry (business-rules.md §8)."""

    ACCEPTED = "accepted"
    REJECTED_CAPACITY = "rejected_capacity"
    REJECTED_UNSUITABLE = "rejected_unsuitable"
    REJECTED_OTHER = "rejected_other"
    NO_SHOW = "no_show"
    IN_TRIAL_SESSIONS = "in_trial_sessions"


ACCEPTING = frozenset({Outcome.ACCEPTED, Outcome.IN_TRIAL_SESSIONS})
EXCLUDING = frozenset({Outcome.REJECTED_UNSUITABLE, Outcome.NO_SHOW})


class ResponseType(StrEnum):
    """Summary of an inquiry's answer."""

    FULL_ACCEPTANCE = "full_acceptance"
    PARTIAL_ACCEPTANCE = "partial_acceptance"
    FULL_REJECTION = "full_rejection"
    NO_RESPONSE = "no_response"


@dataclass(frozen=True, slots=True)
class PlacementSettings:
    """Timing rules of business-rules.md §7/§11 with their defaults."""

    cooling_period_days: int = 28
    follow_up_after_days: int = 7
    email_min_days_between: int = 7


DEFAULT_SETTINGS = PlacementSettings()


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A therapist a search must not be offered to again."""

    therapist_id: Id
    reason: str
    since: date


@dataclass(frozen=True, slots=True)
class SearchState:
    """The parts of a search the placement rules read and change."""

    search_id: Id
    patient_id: Id
    status: SearchStatus = SearchStatus.ACTIVE
    placed_therapist_id: Id | None = None
    exclusions: tuple[Exclusion, ...] = ()
    contact_budget: int = 0

    def excludes(self, therapist_id: Id) -> bool:
        """Whether the therapist is on this search's exclusion list."""
        return any(e.therapist_id == therapist_id for e in self.exclusions)


@dataclass(frozen=True, slots=True)
class TherapistContact:
    """What decides whether a therapist may be contacted (business-rules.md §6/§7)."""

    therapist_id: Id
    practice_key: str
    status: TherapistStatus = TherapistStatus.ACTIVE
    next_contactable_date: date | None = None
    location_resolved: bool = True
    last_email_on: date | None = None


@dataclass(frozen=True, slots=True)
class InquiryState:
    """An inquiry to one therapist; withdrawn patients stay listed for the original size."""

    inquiry_id: Id
    therapist_id: Id
    practice_key: str
    search_ids: tuple[Id, ...]
    sent_on: date | None = None
    answered_on: date | None = None
    withdrawn: frozenset[Id] = field(default_factory=frozenset)

    @property
    def original_size(self) -> int:
        """Patients the inquiry was created with."""
        return len(self.search_ids)

    @property
    def current_search_ids(self) -> tuple[Id, ...]:
        """Patients still offered (not withdrawn)."""
        return tuple(s for s in self.search_ids if s not in self.withdrawn)

    @property
    def is_open(self) -> bool:
        """Unsent, or sent and unanswered."""
        return self.answered_on is None
