"""Column input of the bundle engine: one numpy array per attribute instead of one object per row.

A caller that reads the database straight into arrays builds `SearchColumns` and
`TherapistColumns` itself and skips the objects; `searches_from_objects` and
`therapists_from_objects` are the adapters `propose_bundles` uses. Codes:

- genders: 0 none / any, then 1 + index in `model.GENDERS` (unknown values count as
  "unspecified");
- methods: preference 0 none / any, else 1 + index in `model.METHODS`; a therapist's offer
  is a bit mask with bit 1 + index set per method (`any` sets all four);
- travel mode: index in `model.TRAVEL_MODES`;
- birth date: `yyyymmdd` as an integer, 0 when unknown;
- ages: a therapist without a lower (upper) limit has `NO_AGE_MIN` (`NO_AGE_MAX`);
- diagnoses and diagnosis preferences: index into the `diagnoses` / `diagnosis_prefixes`
  table of the columns (one entry per distinct value);
- schedules: `weekly.WORDS` uint64 words of 30-minute slots per row (all zero: none);
- exclusions: compressed rows, `excluded_ids[excluded_start[i]:excluded_start[i + 1]]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from .model import GENDERS, METHODS, TRAVEL_MODES, Id, Search, Therapist, Weekly
from .openness import openness_levels
from .weekly import DAYS, SLOT_MINUTES, SLOTS_PER_DAY, WORDS, parse_interval

NO_AGE_MIN = -(10**6)
NO_AGE_MAX = 10**6
ALL_METHODS = 0b11110
_GENDER = {g: i + 1 for i, g in enumerate(GENDERS)}
_UNSPECIFIED = _GENDER["unspecified"]
_METHOD = {m: i + 1 for i, m in enumerate(METHODS)}
_MODE = {m: i for i, m in enumerate(TRAVEL_MODES)}


@dataclass(frozen=True, slots=True)
class SearchColumns:
    """Searches of a run as columns (row i = one search, in any order)."""

    search_id: list[Id]
    lat: np.ndarray  # float64 degrees, NaN: no location
    lon: np.ndarray
    max_travel_km: np.ndarray  # float64
    travel_mode: np.ndarray  # int8 index in TRAVEL_MODES
    waiting_day: np.ndarray  # int64 proleptic ordinal of waiting_since's date
    waiting_at: np.ndarray  # float64 POSIX seconds of waiting_since (tie-break)
    contact_budget: np.ndarray  # int64
    gender: np.ndarray  # int8 gender code
    birth: np.ndarray  # int32 yyyymmdd, 0 unknown
    diagnosis: np.ndarray  # int32 index into diagnoses
    diagnoses: list[str | None]
    preferred_method: np.ndarray  # int8 method code, 0 none
    preferred_therapist_gender: np.ndarray  # int8 gender code, 0 none
    open_to_group_therapy: np.ndarray  # bool
    availability: np.ndarray  # uint64 (n, WORDS)
    excluded_start: np.ndarray  # int64 (n + 1)
    excluded_ids: list[Id]

    def __len__(self) -> int:
        return len(self.search_id)


@dataclass(frozen=True, slots=True)
class TherapistColumns:
    """Therapists of a run as columns (row j = one therapist, in any order)."""

    therapist_id: list[Id]
    lat: np.ndarray  # float64 degrees, NaN: no location
    lon: np.ndarray
    practice_key: list[str]  # own practice: "therapist:<id>"
    gender: np.ndarray  # int8 gender code
    methods: np.ndarray  # int16 method bit mask
    age_min: np.ndarray  # int32, NO_AGE_MIN: none
    age_max: np.ndarray  # int32, NO_AGE_MAX: none
    preferred_patient_gender: np.ndarray  # int8 gender code, 0 none
    diagnosis_prefixes: np.ndarray  # int32 index into prefix_sets
    prefix_sets: list[tuple[str, ...]]  # () = any diagnosis
    prefers_group_therapy: np.ndarray  # bool
    hours: np.ndarray  # uint64 (n, WORDS)
    contactable: np.ndarray  # bool
    not_contactable_reason: list[str | None]
    openness: np.ndarray  # int64 level (bundling/openness.py), 0 when unknown

    def __len__(self) -> int:
        return len(self.therapist_id)


def _codes(values: Sequence[object]) -> tuple[np.ndarray, list]:
    table: dict[object, int] = {}
    codes = np.fromiter((table.setdefault(v, len(table)) for v in values), np.int32, len(values))
    return codes, list(table)


def _weekly_rows(items: Sequence[Weekly | None]) -> np.ndarray:
    """Slot masks per row (as `weekly.weekly_mask`); schedules and intervals parsed once."""
    out = np.zeros((len(items), WORDS), dtype=np.uint64)
    seen: dict[tuple, int] = {}
    spans: dict[tuple[str, str], int] = {}
    masks: list[int] = []
    rows, which = [], []
    for i, weekly in enumerate(items):
        if not weekly:
            continue
        # days, then their interval lists: unambiguous (as many of each) and cheap
        key = (*weekly, *map(tuple, weekly.values()))
        k = seen.get(key)
        if k is None:
            k = seen[key] = len(masks)
            bits = 0
            for day, intervals in weekly.items():
                for interval in intervals:
                    span = spans.get((day, interval))
                    if span is None:
                        span = spans[(day, interval)] = _span_bits(day, interval)
                    bits |= span
            masks.append(bits)
        rows.append(i)
        which.append(k)
    if rows:
        full = (1 << 64) - 1
        words = np.array(
            [[(bits >> (64 * w)) & full for w in range(WORDS)] for bits in masks], dtype=np.uint64
        )
        out[rows] = words[which]
    return out


def _span_bits(day: str, interval: str) -> int:
    """Slot bits of one interval (bit i = slot i of the week), rounded as `weekly_mask`."""
    start, end = parse_interval(interval)
    first, last = start // SLOT_MINUTES, -(-end // SLOT_MINUTES)
    return ((1 << (last - first)) - 1) << (DAYS.index(day) * SLOTS_PER_DAY + first)


def _gender(value: str | None) -> int:
    return 0 if value in (None, "any") else _GENDER.get(value, _UNSPECIFIED)


def searches_from_objects(searches: Sequence[Search]) -> SearchColumns:
    """Columns of `Search` objects (the adapter `propose_bundles` uses)."""
    n = len(searches)
    nan = float("nan")
    diag, diagnoses = _codes([s.diagnosis for s in searches])
    excluded_ids: list[Id] = []
    counts = np.zeros(n + 1, dtype=np.int64)
    for i, s in enumerate(searches):
        if s.excluded_therapist_ids:
            ids = sorted(s.excluded_therapist_ids, key=str)
            excluded_ids.extend(ids)
            counts[i + 1] = len(ids)
    births = [s.birth_date for s in searches]
    return SearchColumns(
        search_id=[s.search_id for s in searches],
        lat=np.array([nan if s.lat is None else s.lat for s in searches], dtype=np.float64),
        lon=np.array([nan if s.lon is None else s.lon for s in searches], dtype=np.float64),
        max_travel_km=np.array([s.max_travel_km for s in searches], dtype=np.float64),
        travel_mode=np.array([_MODE[s.travel_mode] for s in searches], dtype=np.int8),
        waiting_day=np.array([s.waiting_since.toordinal() for s in searches], dtype=np.int64),
        waiting_at=np.array([s.waiting_since.timestamp() for s in searches], dtype=np.float64),
        contact_budget=np.array([s.contact_budget for s in searches], dtype=np.int64),
        gender=np.array([_GENDER.get(s.gender, _UNSPECIFIED) for s in searches], dtype=np.int8),
        birth=np.array(
            [0 if b is None else b.year * 10000 + b.month * 100 + b.day for b in births],
            dtype=np.int32,
        ),
        diagnosis=diag,
        diagnoses=diagnoses,
        preferred_method=np.array(
            [_METHOD.get(s.preferred_therapy_method or "any", 0) for s in searches], dtype=np.int8
        ),
        preferred_therapist_gender=np.array(
            [_gender(s.preferred_therapist_gender) for s in searches], dtype=np.int8
        ),
        open_to_group_therapy=np.array([s.open_to_group_therapy for s in searches], dtype=bool),
        availability=_weekly_rows([s.availability for s in searches]),
        excluded_start=np.cumsum(counts),
        excluded_ids=excluded_ids,
    )


def methods_mask(methods: Sequence[str]) -> int:
    """Bit i+1 set for each offered method; 'any' offers every method."""
    if "any" in methods:
        return ALL_METHODS
    return sum(1 << _METHOD[m] for m in set(methods) if m in _METHOD)


def therapists_from_objects(
    therapists: Sequence[Therapist], today: date, use_history: bool = True
) -> TherapistColumns:
    """Columns of `Therapist` objects; openness levels as of `today` (zero without history)."""
    nan = float("nan")
    prefixes, prefix_sets = _codes([tuple(sorted(set(t.preferred_diagnoses))) for t in therapists])
    return TherapistColumns(
        therapist_id=[t.therapist_id for t in therapists],
        lat=np.array([nan if t.lat is None else t.lat for t in therapists], dtype=np.float64),
        lon=np.array([nan if t.lon is None else t.lon for t in therapists], dtype=np.float64),
        practice_key=[
            t.practice_key if t.practice_key is not None else f"therapist:{t.therapist_id}"
            for t in therapists
        ],
        gender=np.array([_GENDER.get(t.gender, _UNSPECIFIED) for t in therapists], dtype=np.int8),
        methods=np.array([methods_mask(t.therapy_methods) for t in therapists], dtype=np.int16),
        age_min=np.array(
            [NO_AGE_MIN if t.patient_age_min is None else t.patient_age_min for t in therapists],
            dtype=np.int32,
        ),
        age_max=np.array(
            [NO_AGE_MAX if t.patient_age_max is None else t.patient_age_max for t in therapists],
            dtype=np.int32,
        ),
        preferred_patient_gender=np.array(
            [_gender(t.preferred_patient_gender) for t in therapists], dtype=np.int8
        ),
        diagnosis_prefixes=prefixes,
        prefix_sets=prefix_sets,
        prefers_group_therapy=np.array([t.prefers_group_therapy for t in therapists], dtype=bool),
        hours=_weekly_rows([t.working_hours for t in therapists]),
        contactable=np.array([t.contactable for t in therapists], dtype=bool),
        not_contactable_reason=[t.not_contactable_reason for t in therapists],
        openness=_openness(therapists, today, use_history),
    )


def _openness(therapists: Sequence[Therapist], today: date, use_history: bool) -> np.ndarray:
    levels = np.zeros(len(therapists), dtype=np.int64)
    if use_history:
        known = [i for i, t in enumerate(therapists) if t.answer_history or t.potentially_available]
        if known:
            levels[known] = openness_levels([therapists[i] for i in known], today)
    return levels
