"""Simulation parameters (every behavioural assumption in one place) and mutable state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ..bundling.model import HistoryEntry, Search, Therapist
from ..placement import InquiryState, SearchState


@dataclass(frozen=True)
class Parameters:
    """Behavioural parameters; defaults and their sources are documented in __main__."""

    seed: int = 1
    days: int = 180
    therapists: int = 300
    patients: int = 400
    observe_days: int = 60
    centre_lat: float = 51.3397
    centre_lon: float = 12.3731
    opening_every_days: float = 30.0
    opening_lasts_days: int = 14
    opening_rate_spread: float = 0.0
    flag_share: float = 0.0
    answer_probability: float = 0.6
    answer_within_days: int = 7
    phone_reach_probability: float = 0.5
    phone_attempts: int = 3
    unsuitable_probability: float = 0.1
    unaware_of_withdrawal_probability: float = 0.5
    trial_days: int = 21
    trial_success_probability: float = 0.8
    contact_budget: int = 25
    top_up_after_days: int = 7
    max_inquiries_per_patient: int = 3
    bundle_min_size: int = 3
    bundle_max_size: int = 6
    cooling_period_days: int = 28
    follow_up_after_days: int = 7
    email_min_days_between: int = 7
    start: date = date(2026, 1, 5)


@dataclass
class OpenInquiry:
    """An inquiry in flight with the therapist's planned reaction."""

    state: InquiryState
    original: tuple[str, ...]
    answer_day: int | None
    phone_attempts_left: int
    # where the inquiry's entry sits in the therapist's answer history (oldest first)
    history_index: int = -1


@dataclass
class World:
    """Everything the simulation changes day by day."""

    searches: dict[str, SearchState] = field(default_factory=dict)
    profiles: dict[str, Search] = field(default_factory=dict)
    started: dict[str, int] = field(default_factory=dict)
    placed_day: dict[str, int] = field(default_factory=dict)
    budget_empty_since: dict[str, int] = field(default_factory=dict)
    claim_day: dict[str, int] = field(default_factory=dict)
    trial_ends: dict[str, int] = field(default_factory=dict)
    therapists: dict[str, Therapist] = field(default_factory=dict)
    openings: dict[str, list[int]] = field(default_factory=dict)
    next_contactable: dict[str, int] = field(default_factory=dict)
    last_email: dict[str, int] = field(default_factory=dict)
    inquiries: dict[str, OpenInquiry] = field(default_factory=dict)
    # per therapist every inquiry sent and its answer, oldest first
    history: dict[str, list[HistoryEntry]] = field(default_factory=dict)
    events: list[tuple] = field(default_factory=list)
    counter: int = 0
