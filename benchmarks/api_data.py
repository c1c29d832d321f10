"""A realistic platform in bulk: the rows the services and their projections would hold.

40,000 therapists, 100,000 patients, 20,000 active searches (and the ended searches of the
patients already placed or cancelled), inquiries to distinct practices with their patients,
a plausible share of them answered (the practices cooling), the emails and phone calls of
communication. The simulation's generators (matching_service/simulation) give the
attributes; the postal codes come from a zipcodes CSV, else a synthetic map.

Loaded with COPY straight into each service's schema (no events: the projections are
written as the consumers would have left them). `load_platform` returns what a load
generator needs to pick realistic requests (ids, postal-code prefixes, sent inquiries).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from matching_service.simulation.geography import PostalAreas, load_postal_areas, synthetic_areas
from matching_service.simulation.population import make_searches, make_therapists
from shared.db import driver_url
from therapist_service.directory.generator import (
    FEMALE_NAMES,
    LAST_NAMES,
    MAIL_DOMAINS,
    MALE_NAMES,
    PHONE_SLOTS,
    STREETS,
)

# what happened to the patients who have no active search (assumed mix)
ENDED_STATUSES = (
    ["registered", "in_therapy", "therapy_completed", "search_cancelled", "therapy_aborted"],
    [0.35, 0.25, 0.15, 0.15, 0.10],
)
SEARCH_OF_STATUS = {
    "in_therapy": "successful",
    "therapy_completed": "successful",
    "therapy_aborted": "successful",
    "search_cancelled": "cancelled",
}
INQUIRY_SIZES = ([3, 4, 5, 6], [0.25, 0.35, 0.25, 0.15])
REJECTIONS = ["rejected_capacity", "rejected_unsuitable", "rejected_other"]
FOLLOW_UP_AFTER_DAYS = 7  # matching's default FOLLOW_UP_AFTER_DAYS


@dataclass(frozen=True)
class Sizes:
    """How much of everything to load."""

    patients: int = 100_000
    therapists: int = 40_000
    active_searches: int = 20_000
    # practices with an open (sent) inquiry, and answered / closed ones in the past
    sent_inquiries: int = 8_000
    # a year of answers: most searches have been in several inquiries
    answered_inquiries: int = 30_000
    closed_inquiries: int = 5_000
    unsent_inquiries: int = 500
    calls_per_day: int = 60
    call_days: int = 10

    @classmethod
    def scaled(cls, factor: float) -> Sizes:
        """Every size times `factor` (at least a handful of each)."""
        return cls(
            **{
                name: max(int(value * factor), 5 if name != "call_days" else 2)
                for name, value in cls().__dict__.items()
            }
        )


@dataclass
class Platform:
    """What was loaded, as a load generator needs it."""

    patient_ids: list[int]
    therapist_ids: list[int]
    active_search_ids: list[int]
    search_ids: list[int]
    # sent, unanswered inquiries (id -> search ids): each may be answered once
    sent_inquiries: dict[int, list[int]]
    inquiry_ids: list[int]
    email_ids: list[int]
    call_days: list[date]
    prefixes: list[str]
    postal_codes: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# ---------------------------------------------------------------- COPY


def _cell(value: Any) -> Any:
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def copy_rows(
    connection: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """COPY `rows` into `schema.table` (a raw psycopg2 connection); returns the row count."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    count = 0
    for row in rows:
        writer.writerow([_cell(value) for value in row])
        count += 1
    buffer.seek(0)
    with connection.cursor() as cursor:
        cursor.copy_expert(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')",
            buffer,
        )
    return count


def practice_key(email: str | None, therapist_id: int) -> str:
    """therapist_service's computed practice key (PRACTICE_KEY_SQL), in Python."""
    if email is None or not email.strip():
        return f"t{therapist_id}"
    return "p" + hashlib.md5(email.strip().lower().encode()).hexdigest()[:16]


def _nearest_codes(areas: PostalAreas, lat: np.ndarray, lon: np.ndarray) -> list[str]:
    out: list[int] = []
    for start in range(0, len(lat), 500):
        la, lo = lat[start : start + 500], lon[start : start + 500]
        d = (areas.lat[None, :] - la[:, None]) ** 2 + (
            (areas.lon[None, :] - lo[:, None]) * np.cos(np.radians(la[:, None]))
        ) ** 2
        out.extend(np.argmin(d, axis=1).tolist())
    return [areas.codes[i] for i in out]


# ---------------------------------------------------------------- the platform


def load_platform(
    database_url: str,
    *,
    sizes: Sizes,
    seed: int = 20260302,
    zipcodes: Path | None = None,
    as_of: datetime | None = None,
) -> Platform:
    """Generate and COPY everything into the (migrated) database at `database_url` (a login
    that may write every schema, e.g. the superuser)."""
    started = time.perf_counter()
    now = as_of or datetime.now(UTC)
    rng = np.random.default_rng(seed)
    areas = load_postal_areas(zipcodes) or synthetic_areas(rng)
    people = make_searches(rng, areas, sizes.patients, now.date(), first_id=1)
    centroid_code = {
        (float(la), float(lo)): code
        for code, la, lo in zip(areas.codes, areas.lat, areas.lon, strict=True)
    }
    practitioners = make_therapists(rng, areas, sizes.therapists, first_id=1)
    t_codes = _nearest_codes(
        areas,
        np.array([t.lat for t in practitioners], dtype=float),
        np.array([t.lon for t in practitioners], dtype=float),
    )
    engine = sa.create_engine(driver_url(database_url))
    raw: Any = engine.raw_connection()
    try:
        counts: dict[str, int] = {}
        therapists = _therapists(rng, practitioners, t_codes, now)
        counts["therapists"] = copy_rows(raw, "therapist_service.therapists", *therapists.rows())
        counts["therapist_projection"] = copy_rows(
            raw, "matching_service.therapist_projection", *therapists.projection()
        )
        patients = _patients(rng, people, centroid_code, sizes, now)
        counts["patients"] = copy_rows(raw, "patient_service.patients", *patients.rows())
        counts["patient_projection"] = copy_rows(
            raw, "matching_service.patient_projection", *patients.projection()
        )
        counts["locations"] = copy_rows(
            raw,
            "matching_service.locations",
            *_locations(patients, therapists, practitioners),
        )
        counts["patient_searches"] = copy_rows(
            raw, "matching_service.patient_searches", *patients.searches()
        )
        inquiries = _inquiries(rng, sizes, patients, therapists, now)
        for table, (columns, rows) in inquiries.tables().items():
            counts[table] = copy_rows(raw, f"matching_service.{table}", columns, rows)
        # contacts used by the inclusions (never more than the budget)
        with raw.cursor() as cursor:
            cursor.execute(
                "UPDATE matching_service.patient_searches s SET contacts_used = n.used, "
                "contact_budget = greatest(s.contact_budget, n.used) FROM (SELECT search_id, "
                "count(*) AS used FROM matching_service.inquiry_patients GROUP BY search_id) n "
                "WHERE n.search_id = s.id"
            )
        emails, email_ids = _emails(patients, therapists, inquiries, now)
        counts["emails"] = copy_rows(raw, "communication_service.emails", *emails)
        calls, call_days = _calls(rng, sizes, therapists, inquiries, now)
        counts["phone_calls"] = copy_rows(raw, "communication_service.phone_calls", *calls)
        with raw.cursor() as cursor:
            for table, column in _SERIALS:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                    f"(SELECT coalesce(max({column}), 0) + 1 FROM {table}), false)"
                )
        raw.commit()
        raw.driver_connection.autocommit = True
        with raw.cursor() as cursor:
            for table in counts:
                schema = _SCHEMA_OF[table]
                cursor.execute(f"VACUUM ANALYZE {schema}.{table}")
    finally:
        raw.close()
        engine.dispose()
    prefixes = sorted({code[:2] for code in patients.codes} | {code[:3] for code in t_codes})
    return Platform(
        patient_ids=list(range(1, sizes.patients + 1)),
        therapist_ids=list(range(1, sizes.therapists + 1)),
        active_search_ids=patients.active_search_ids,
        search_ids=list(range(1, len(patients.search_rows) + 1)),
        sent_inquiries={
            inquiry_id: search_ids
            for inquiry_id, search_ids in inquiries.patients_of.items()
            if inquiries.status_of[inquiry_id] == "sent"
        },
        inquiry_ids=sorted(inquiries.status_of),
        email_ids=email_ids,
        call_days=call_days,
        prefixes=prefixes,
        postal_codes=sorted(set(patients.codes)),
        counts=counts,
        seconds=time.perf_counter() - started,
    )


_SCHEMA_OF = {
    "therapists": "therapist_service",
    "patients": "patient_service",
    "therapist_projection": "matching_service",
    "patient_projection": "matching_service",
    "locations": "matching_service",
    "patient_searches": "matching_service",
    "inquiries": "matching_service",
    "inquiry_patients": "matching_service",
    "cooling_periods": "matching_service",
    "emails": "communication_service",
    "phone_calls": "communication_service",
}
_SERIALS = (
    ("therapist_service.therapists", "id"),
    ("patient_service.patients", "id"),
    ("matching_service.patient_searches", "id"),
    ("matching_service.inquiries", "id"),
    ("matching_service.cooling_periods", "id"),
    ("communication_service.emails", "id"),
    ("communication_service.phone_calls", "id"),
)


def _name(rng: np.random.Generator, gender: str) -> tuple[str, str]:
    if gender == "female" or (gender not in ("female", "male") and rng.random() < 0.5):
        first = FEMALE_NAMES[int(rng.integers(len(FEMALE_NAMES)))]
    else:
        first = MALE_NAMES[int(rng.integers(len(MALE_NAMES)))]
    return first, LAST_NAMES[int(rng.integers(len(LAST_NAMES)))]


def _ascii(text: str) -> str:
    for umlaut, plain in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        text = text.replace(umlaut, plain).replace(umlaut.upper(), plain.capitalize())
    return text.lower()


@dataclass
class _Therapists:
    ids: list[int]
    keys: list[str]
    codes: list[str]
    genders: list[str]
    statuses: list[str]
    rows_: list[list[Any]]
    projection_: list[list[Any]]

    def rows(self) -> tuple[list[str], list[list[Any]]]:
        return _THERAPIST_COLUMNS, self.rows_

    def projection(self) -> tuple[list[str], list[list[Any]]]:
        return _THERAPIST_PROJECTION_COLUMNS, self.projection_


_THERAPIST_COLUMNS = [
    "id", "directory_id", "status", "salutation", "title", "gender", "first_name", "last_name",
    "street", "postal_code", "phone", "email", "statutory_seat", "phone_hours",
    "working_hours", "languages", "therapy_methods", "potentially_available",
    "informed_about_platform", "preferred_diagnoses", "patient_age_min", "patient_age_max",
    "preferred_patient_gender", "prefers_group_therapy", "created_at", "updated_at",
]  # fmt: skip
_THERAPIST_PROJECTION_COLUMNS = [
    "therapist_id", "version", "status", "gender", "postal_code", "street", "practice_key",
    "has_email", "statutory_seat", "therapy_methods", "languages", "phone_hours",
    "working_hours", "potentially_available", "informed_about_platform",
    "preferred_diagnoses", "patient_age_min", "patient_age_max", "preferred_patient_gender",
    "prefers_group_therapy",
]  # fmt: skip


def _therapists(
    rng: np.random.Generator, generated: list[Any], codes: list[str], now: datetime
) -> _Therapists:
    rows, projection, keys, genders, statuses = [], [], [], [], []
    email_of_practice: dict[str, str | None] = {}
    for index, (therapist, code) in enumerate(zip(generated, codes, strict=True)):
        therapist_id = index + 1
        first, last = _name(rng, therapist.gender)
        if therapist.practice_key not in email_of_practice:
            email_of_practice[therapist.practice_key] = (
                None
                if rng.random() < 0.12
                else f"praxis.{_ascii(last)}.{therapist_id}@{MAIL_DOMAINS[therapist_id % 3]}"
            )
        email = email_of_practice[therapist.practice_key]
        key = practice_key(email, therapist_id)
        status = (
            "active" if rng.random() < 0.95 else ("inactive" if rng.random() < 0.7 else "blocked")
        )
        street = f"{STREETS[int(rng.integers(len(STREETS)))]} {int(rng.integers(1, 120))}"
        phone_hours = {"mon": [PHONE_SLOTS[int(rng.integers(len(PHONE_SLOTS)))]]}
        available = bool(rng.random() < 0.2)
        informed = bool(rng.random() < 0.3)
        created = now - timedelta(days=int(rng.integers(0, 1000)))
        methods = list(therapist.therapy_methods)
        gender_pref = therapist.preferred_patient_gender or "any"
        rows.append([
            therapist_id, f"D{therapist_id:07d}", status,
            "Frau" if therapist.gender == "female" else "Herr", None, therapist.gender, first,
            last, street, code, f"030 {1000000 + therapist_id}", email, True, phone_hours,
            therapist.working_hours, ["de"], methods, available, informed,
            list(therapist.preferred_diagnoses), therapist.patient_age_min,
            therapist.patient_age_max, gender_pref, therapist.prefers_group_therapy, created,
            created,
        ])  # fmt: skip
        projection.append([
            therapist_id, 1, status, therapist.gender, code, street, key, email is not None,
            True, methods, ["de"], phone_hours, therapist.working_hours, available, informed,
            list(therapist.preferred_diagnoses), therapist.patient_age_min,
            therapist.patient_age_max, gender_pref, therapist.prefers_group_therapy,
        ])  # fmt: skip
        keys.append(key)
        genders.append(therapist.gender)
        statuses.append(status)
    return _Therapists(
        list(range(1, len(generated) + 1)), keys, codes, genders, statuses, rows, projection
    )


@dataclass
class _Patients:
    codes: list[str]
    statuses: list[str]
    rows_: list[list[Any]]
    projection_: list[list[Any]]
    search_rows: list[list[Any]]
    active_search_ids: list[int]
    patient_of_search: dict[int, int]
    points: list[tuple[float, float]]

    def rows(self) -> tuple[list[str], list[list[Any]]]:
        return _PATIENT_COLUMNS, self.rows_

    def projection(self) -> tuple[list[str], list[list[Any]]]:
        return _PATIENT_PROJECTION_COLUMNS, self.projection_

    def searches(self) -> tuple[list[str], list[list[Any]]]:
        return _SEARCH_COLUMNS, self.search_rows


_PATIENT_COLUMNS = [
    "id", "version", "status", "gender", "first_name", "last_name", "street", "postal_code",
    "email", "phone", "birth_date", "health_insurer", "diagnosis", "symptoms", "availability",
    "max_travel_km", "travel_mode", "preferred_therapist_gender", "preferred_therapy_method",
    "open_to_group_therapy", "contract_signed", "payment_received", "consent_at",
    "consent_version", "search_id", "created_at", "updated_at",
]  # fmt: skip
_PATIENT_PROJECTION_COLUMNS = [
    "patient_id", "version", "status", "gender", "birth_date", "postal_code", "diagnosis",
    "symptoms", "availability", "max_travel_km", "travel_mode", "preferred_therapist_gender",
    "preferred_therapy_method", "open_to_group_therapy", "group_therapy_only", "qualified",
    "unmet_criteria", "two_year_rule_flag",
]  # fmt: skip
_SEARCH_COLUMNS = [
    "id", "patient_id", "status", "waiting_since", "contact_budget", "contacts_used",
    "placed_therapist_id", "claimed_at", "ended_at", "created_at", "updated_at",
]  # fmt: skip
INSURERS = ("AOK", "TK", "Barmer", "DAK-Gesundheit", "IKK classic", "KKH", "hkk")


def _patients(
    rng: np.random.Generator,
    generated: list[Any],
    centroid_code: dict[tuple[float, float], str],
    sizes: Sizes,
    now: datetime,
) -> _Patients:
    rows: list[list[Any]] = []
    projection: list[list[Any]] = []
    searches: list[list[Any]] = []
    codes: list[str] = []
    statuses: list[str] = []
    active_ids: list[int] = []
    patient_of_search: dict[int, int] = {}
    ended = rng.choice(ENDED_STATUSES[0], size=len(generated), p=ENDED_STATUSES[1])
    # the newest registrations are the ones still searching
    active_from = len(generated) - sizes.active_searches
    for index, person in enumerate(generated):
        patient_id = index + 1
        status = "searching" if index >= active_from else str(ended[index])
        code = centroid_code[(person.lat, person.lon)]
        first, last = _name(rng, person.gender)
        created = now - timedelta(days=(len(generated) - index) * 730 / len(generated) + 1)
        search_status = "active" if status == "searching" else SEARCH_OF_STATUS.get(status)
        search_id = None
        if search_status is not None:
            search_id = len(searches) + 1
            waiting = person.waiting_since if search_status == "active" else created
            placed = search_status == "successful"
            searches.append([
                search_id, patient_id, search_status, waiting, person.contact_budget + 5, 0,
                int(rng.integers(1, sizes.therapists + 1)) if placed else None,
                created + timedelta(days=40) if placed else None,
                None if search_status == "active" else created + timedelta(days=60),
                waiting, waiting,
            ])  # fmt: skip
            patient_of_search[search_id] = patient_id
            if search_status == "active":
                active_ids.append(search_id)
        symptoms = ["low_mood", "sleep_problems"] if rng.random() < 0.5 else ["anxiety"]
        method = person.preferred_therapy_method or "any"
        gender_pref = person.preferred_therapist_gender or "any"
        rows.append([
            patient_id, 1, status, person.gender, first, last,
            f"{STREETS[int(rng.integers(len(STREETS)))]} {int(rng.integers(1, 200))}", code,
            f"{_ascii(first)}.{_ascii(last)}.{patient_id}@{MAIL_DOMAINS[patient_id % 3]}",
            f"0151 {2000000 + patient_id}", person.birth_date,
            INSURERS[patient_id % len(INSURERS)], person.diagnosis, symptoms,
            person.availability, int(person.max_travel_km), person.travel_mode, gender_pref,
            method, person.open_to_group_therapy, True, True, created, "2025-01",
            search_id, created, created,
        ])  # fmt: skip
        projection.append([
            patient_id, 1, status, person.gender, person.birth_date, code, person.diagnosis,
            symptoms, person.availability, int(person.max_travel_km), person.travel_mode,
            gender_pref, method, person.open_to_group_therapy, False, True, [], False,
        ])  # fmt: skip
        codes.append(code)
        statuses.append(status)
    points = [(person.lat, person.lon) for person in generated]
    return _Patients(
        codes, statuses, rows, projection, searches, active_ids, patient_of_search, points
    )


def _locations(
    patients: _Patients, therapists: _Therapists, generated: list[Any]
) -> tuple[list[str], list[list[Any]]]:
    columns = [
        "entity_type", "entity_id", "version", "resolved", "lat", "lon", "precision",
        "source", "postal_code",
    ]  # fmt: skip
    rows: list[list[Any]] = []
    for row, (lat, lon) in zip(patients.projection_, patients.points, strict=True):
        rows.append(["patient", row[0], 1, True, lat, lon, "plz", "plz_centroid", row[5]])
    for therapist, code, therapist_id in zip(
        generated, therapists.codes, therapists.ids, strict=True
    ):
        rows.append(
            ["therapist", therapist_id, 1, True, therapist.lat, therapist.lon, "address",
             "nominatim", code]
        )  # fmt: skip
    return columns, rows


@dataclass
class _Inquiries:
    rows: list[list[Any]]
    patient_rows: list[list[Any]]
    cooling_rows: list[list[Any]]
    status_of: dict[int, str]
    patients_of: dict[int, list[int]]
    therapist_of: dict[int, int]
    key_of: dict[int, str]
    sent_at_of: dict[int, datetime]

    def tables(self) -> dict[str, tuple[list[str], list[list[Any]]]]:
        return {
            "inquiries": (
                [
                    "id", "therapist_id", "practice_key", "origin", "status", "original_size",
                    "current_size", "created_at", "sent_at", "sent_via", "answered_at",
                    "response_type", "channel", "closed_at", "updated_at",
                ],
                self.rows,
            ),
            "inquiry_patients": (
                [
                    "inquiry_id", "search_id", "patient_id", "position", "status",
                    "distance_km", "outcome", "outcome_at",
                ],
                self.patient_rows,
            ),
            "cooling_periods": (
                ["id", "practice_key", "therapist_ids", "inquiry_id", "starts_on", "until"],
                self.cooling_rows,
            ),
        }  # fmt: skip


def _inquiries(
    rng: np.random.Generator,
    sizes: Sizes,
    patients: _Patients,
    therapists: _Therapists,
    now: datetime,
) -> _Inquiries:
    """Open inquiries (sent, unsent) to distinct practices, each active search in at most
    three of them; answered and closed ones in the past, their practices cooling."""
    first_of_practice: dict[str, int] = {}
    for therapist_id, key, status in zip(
        therapists.ids, therapists.keys, therapists.statuses, strict=True
    ):
        if status == "active":
            first_of_practice.setdefault(key, therapist_id)
    practices = list(first_of_practice.items())
    order = rng.permutation(len(practices))
    open_count = min(sizes.sent_inquiries + sizes.unsent_inquiries, len(practices))
    open_practices = [practices[i] for i in order[:open_count]]
    past_practices = [practices[i] for i in order[open_count:]] or practices
    active = patients.active_search_ids
    searches = len(patients.search_rows)
    open_slots = {search_id: 3 for search_id in active}
    inquiries = _Inquiries([], [], [], {}, {}, {}, {}, {})

    def add(key: str, therapist_id: int, status: str, created: datetime) -> None:
        inquiry_id = len(inquiries.rows) + 1
        size = int(rng.choice(INQUIRY_SIZES[0], p=INQUIRY_SIZES[1]))
        if status in ("sent", "unsent"):
            picks = [s for s in rng.choice(active, size=size * 2).tolist() if open_slots[s] > 0]
            chosen = list(dict.fromkeys(picks))[:size]
            for search_id in chosen:
                open_slots[search_id] -= 1
        else:
            chosen = list(dict.fromkeys(rng.integers(1, searches + 1, size=size).tolist()))
        if not chosen:
            return
        sent_at = None if status == "unsent" else created + timedelta(hours=2)
        answered = status == "answered"
        answered_at: datetime | None = None
        closed_at: datetime | None = None
        if answered:
            answered_at = created + timedelta(days=int(rng.integers(1, 10)))
        elif status == "closed":
            closed_at = created + timedelta(days=21)
        inquiries.rows.append([
            inquiry_id, therapist_id, key, "bundle_run", status, len(chosen), len(chosen),
            created, sent_at, "email" if sent_at else None, answered_at,
            "full_rejection" if answered else ("no_response" if closed_at else None),
            "email" if answered else None, closed_at, answered_at or closed_at or created,
        ])  # fmt: skip
        for position, search_id in enumerate(chosen, start=1):
            outcome = REJECTIONS[int(rng.integers(3))] if answered else None
            inquiries.patient_rows.append([
                inquiry_id, search_id, patients.patient_of_search[search_id], position,
                "answered" if answered else "open", round(float(rng.uniform(0.5, 25)), 2),
                outcome, answered_at if answered else None,
            ])  # fmt: skip
        ended = answered_at or closed_at
        if ended is not None:
            start = ended.date()
            inquiries.cooling_rows.append(
                [len(inquiries.cooling_rows) + 1, key, [therapist_id], inquiry_id, start,
                 start + timedelta(days=28)]
            )  # fmt: skip
        inquiries.status_of[inquiry_id] = status
        inquiries.patients_of[inquiry_id] = chosen
        inquiries.therapist_of[inquiry_id] = therapist_id
        inquiries.key_of[inquiry_id] = key
        if sent_at:
            inquiries.sent_at_of[inquiry_id] = sent_at

    for index, (key, therapist_id) in enumerate(open_practices):
        status = "sent" if index < sizes.sent_inquiries else "unsent"
        # sent over the last three weeks: some are overdue for a follow-up
        created = now - timedelta(hours=float(rng.uniform(3, 21 * 24)))
        add(key, therapist_id, status, created)
    for index in range(sizes.answered_inquiries + sizes.closed_inquiries):
        key, therapist_id = past_practices[index % len(past_practices)]
        status = "answered" if index < sizes.answered_inquiries else "closed"
        created = now - timedelta(days=float(rng.uniform(22, 365)))
        add(key, therapist_id, status, created)
    return inquiries


def _emails(
    patients: _Patients, therapists: _Therapists, inquiries: _Inquiries, now: datetime
) -> tuple[tuple[list[str], list[list[Any]]], list[int]]:
    columns = [
        "id", "kind", "send_key", "therapist_id", "patient_id", "inquiry_id", "practice_key",
        "status", "context", "subject", "body_text", "to_address", "attempts",
        "next_attempt_at", "created_at", "sent_at",
    ]  # fmt: skip
    rows: list[list[Any]] = []
    for inquiry_id, sent_at in inquiries.sent_at_of.items():
        therapist_id = inquiries.therapist_of[inquiry_id]
        size = len(inquiries.patients_of[inquiry_id])
        rows.append([
            len(rows) + 1, "inquiry", f"inquiry:{inquiry_id}", therapist_id, None, inquiry_id,
            inquiries.key_of[inquiry_id], "sent", {"inquiry_id": inquiry_id, "size": size},
            f"Anfrage: {size} Patientinnen und Patienten suchen einen Therapieplatz",
            "Sehr geehrte Damen und Herren, ...", f"praxis{therapist_id}@example.org", 1,
            sent_at, sent_at, sent_at,
        ])  # fmt: skip
    for search in patients.search_rows:
        search_id, patient_id, created = search[0], search[1], search[9]
        rows.append([
            len(rows) + 1, "search_started", f"search_started:{search_id}", None, patient_id,
            None, None, "sent", {"search_id": search_id}, "Ihre Suche hat begonnen",
            "Guten Tag, ...", f"patient{patient_id}@example.org", 1, created, created, created,
        ])  # fmt: skip
    rows.sort(key=lambda row: row[14])
    for number, row in enumerate(rows, start=1):
        row[0] = number
    return (columns, rows), [row[0] for row in rows]


def _calls(
    rng: np.random.Generator,
    sizes: Sizes,
    therapists: _Therapists,
    inquiries: _Inquiries,
    now: datetime,
) -> tuple[tuple[list[str], list[list[Any]]], list[date]]:
    """Follow-up calls of sent inquiries, one slot each, over the coming days (08-17 UTC),
    and the calls of the past half year (done, reached or not)."""
    columns = [
        "id", "therapist_id", "inquiry_id", "purpose", "status", "attempt", "scheduled_at",
        "patient_references", "completed_at",
    ]  # fmt: skip
    sent = [i for i, status in inquiries.status_of.items() if status == "sent"]
    rows: list[list[Any]] = []
    days = [now.date() + timedelta(days=offset) for offset in range(sizes.call_days)]
    taken: set[tuple[int, datetime]] = set()
    for day_index, day in enumerate(days):
        for slot in range(sizes.calls_per_day):
            index = day_index * sizes.calls_per_day + slot
            if index >= len(sent):
                break
            inquiry_id = sent[index]
            therapist_id = inquiries.therapist_of[inquiry_id]
            at = datetime(day.year, day.month, day.day, 8, tzinfo=UTC) + timedelta(
                minutes=10 * (slot % 54)
            )
            if (therapist_id, at) in taken:
                continue
            taken.add((therapist_id, at))
            references = [f"PS-{s}" for s in inquiries.patients_of[inquiry_id]]
            rows.append(
                [len(rows) + 1, therapist_id, inquiry_id, "follow_up", "scheduled", 1, at,
                 references, None]
            )  # fmt: skip
    done = [i for i, status in inquiries.status_of.items() if status in ("answered", "closed")]
    for offset in range(1, 181):
        day = now.date() - timedelta(days=offset)
        for slot in range(sizes.calls_per_day):
            inquiry_id = done[(offset * sizes.calls_per_day + slot) % len(done)]
            at = datetime(day.year, day.month, day.day, 8, tzinfo=UTC) + timedelta(
                minutes=10 * (slot % 54)
            )
            references = [f"PS-{s}" for s in inquiries.patients_of[inquiry_id]]
            status = "reached" if rng.random() < 0.7 else "not_reached"
            rows.append(
                [len(rows) + 1, inquiries.therapist_of[inquiry_id], inquiry_id, "follow_up",
                 status, 1, at, references, at + timedelta(minutes=5)]
            )  # fmt: skip
    return (columns, rows), days
