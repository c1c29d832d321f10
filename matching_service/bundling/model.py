"""Value types of the bundle algorithm: searches, therapists, configuration and results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

Id = str | int
Weekly = Mapping[str, Sequence[str]]

GENDERS = ("male", "female", "diverse", "unspecified")
METHODS = ("behavioural", "psychodynamic", "analytic", "systemic")
TRAVEL_MODES = ("car", "transit")


class Strategy(StrEnum):
    """Assignment strategies that can be compared on the same input."""

    GLOBAL = "global"
    BASELINE = "baseline"


class SearchReason(StrEnum):
    """Why a waiting search is in no inquiry of a run."""

    NO_LOCATION = "no_location"
    BUDGET_USED_UP = "budget_used_up"
    NO_THERAPIST_IN_RANGE = "no_therapist_in_range"
    NO_THERAPIST_MATCHES_PREFERENCES = "no_therapist_matches_preferences"
    EXCLUDED_EVERYWHERE = "excluded_everywhere"
    THERAPISTS_BELOW_MINIMUM = "fewer_than_minimum_eligible"
    PRACTICE_SERVED_BY_COLLEAGUE = "practice_served_by_colleague"
    NO_CAPACITY = "no_capacity"


class TherapistReason(StrEnum):
    """Why a therapist of a run gets no inquiry."""

    NOT_CONTACTABLE = "not_contactable"
    NO_LOCATION = "no_location"
    FEWER_THAN_MINIMUM_ELIGIBLE = "fewer_than_minimum_eligible"
    PRACTICE_HAS_INQUIRY = "practice_has_inquiry"
    PATIENTS_ASSIGNED_ELSEWHERE = "patients_assigned_elsewhere"


@dataclass(frozen=True, slots=True)
class BundleConfig:
    """Run configuration; defaults follow business-rules.md §11 where it names one."""

    bundle_min_size: int = 3
    bundle_max_size: int = 6
    max_inquiries_per_patient: int = 3
    detour_factor: Mapping[str, float] = field(default_factory=lambda: {"car": 1.3, "transit": 1.5})
    # Candidates kept per patient for the global assignment (nearest-best first); bounds the
    # work in dense cities where a patient can reach thousands of therapists.
    candidate_limit: int = 64
    # Prefer therapists whose answer history and availability flag suggest an opening
    # (bundling/openness.py); False ranks as if no therapist had any history.
    use_answer_history: bool = True


@dataclass(frozen=True, slots=True)
class Search:
    """An active patient search as the bundler sees it."""

    search_id: Id
    patient_id: Id
    lat: float | None
    lon: float | None
    max_travel_km: float
    travel_mode: str
    waiting_since: datetime
    contact_budget: int
    gender: str = "unspecified"
    birth_date: date | None = None
    diagnosis: str | None = None
    preferred_therapy_method: str | None = None
    preferred_therapist_gender: str | None = None
    open_to_group_therapy: bool = False
    availability: Weekly | None = None
    excluded_therapist_ids: frozenset[Id] = frozenset()


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One earlier inquiry to a therapist and how it was answered (business-rules.md §6 answer
    history).

    `answered_on` is None while unanswered and when closed without an answer;
    `rejected_other` counts every rejection other than for capacity.
    """

    sent_on: date
    answered_on: date | None
    patients: int
    accepted: int = 0
    rejected_capacity: int = 0
    rejected_other: int = 0


MAX_HISTORY_ENTRIES = 10


@dataclass(frozen=True, slots=True)
class Therapist:
    """A therapist of the run with the preferences that act as hard constraints."""

    therapist_id: Id
    lat: float | None
    lon: float | None
    practice_key: str | None = None
    gender: str = "unspecified"
    therapy_methods: tuple[str, ...] = ()
    patient_age_min: int | None = None
    patient_age_max: int | None = None
    preferred_patient_gender: str | None = None
    preferred_diagnoses: tuple[str, ...] = ()
    prefers_group_therapy: bool = False
    working_hours: Weekly | None = None
    contactable: bool = True
    not_contactable_reason: str | None = None
    # the therapist's own flag: may have a place free
    potentially_available: bool = False
    # newest first, at most MAX_HISTORY_ENTRIES
    answer_history: tuple[HistoryEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class PatientFit:
    """Why one patient is in an inquiry, at its position."""

    search_id: Id
    position: int
    distance_km: float
    overlap_hours: float | None
    waiting_days: int


@dataclass(frozen=True, slots=True)
class ProposedInquiry:
    """One inquiry to one therapist (for its practice) with ordered patients."""

    therapist_id: Id
    practice_key: str
    patients: tuple[PatientFit, ...]

    @property
    def search_ids(self) -> list[Id]:
        """Search ids in bundle order."""
        return [fit.search_id for fit in self.patients]


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A search in no inquiry, with the reason."""

    search_id: Id
    reason: str


@dataclass(frozen=True, slots=True)
class TherapistWithoutInquiry:
    """A therapist of the run without an inquiry, with the reason."""

    therapist_id: Id
    reason: str


@dataclass(frozen=True, slots=True)
class BundleResult:
    """Everything one bundling run proposes and explains."""

    strategy: Strategy
    inquiries: tuple[ProposedInquiry, ...]
    left_out: tuple[LeftOut, ...]
    therapists_without_inquiry: tuple[TherapistWithoutInquiry, ...]

    def covered_search_ids(self) -> set[Id]:
        """Search ids that appear in at least one inquiry."""
        return {sid for inquiry in self.inquiries for sid in inquiry.search_ids}


def id_sort_key(value: Id) -> tuple[int, int, str]:
    """Total order over mixed int/str ids, used for every tie-break."""
    if isinstance(value, int):
        return (0, value, "")
    return (1, 0, value)
