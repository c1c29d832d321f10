"""Hypothesis strategies for small markets and an independent checker of bundle results."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

TODAY = "2026-03-01"
GENDERS = ["male", "female", "diverse", "unspecified"]
METHODS = ["behavioural", "psychodynamic", "analytic", "systemic"]

# A small area (about 30 x 30 km) so that many pairs are in range.
_lat = st.floats(52.40, 52.65)
_lon = st.floats(13.20, 13.60)


@st.composite
def searches(draw: st.DrawFn, index: int) -> dict[str, Any]:
    located = draw(st.integers(0, 9)) > 0
    return {
        "search_id": f"s{index:03d}",
        "patient_id": f"p{index:03d}",
        "lat": draw(_lat) if located else None,
        "lon": draw(_lon) if located else None,
        "max_travel_km": draw(st.sampled_from([3, 8, 15, 25, 40])),
        "travel_mode": draw(st.sampled_from(["car", "transit"])),
        "gender": draw(st.sampled_from(GENDERS)),
        "birth_date": f"{draw(st.integers(1950, 2007))}-{draw(st.integers(1, 12)):02d}-15",
        "diagnosis": draw(st.sampled_from(["F32.1", "F33.0", "F41.0", "F40.1", "F43.1"])),
        "preferred_therapy_method": draw(st.sampled_from([None, "any", None, *METHODS])),
        "preferred_therapist_gender": draw(st.sampled_from([None, "any", "female", "male"])),
        "open_to_group_therapy": draw(st.booleans()),
        "availability": {"mon": ["09:00-12:00"], "wed": ["14:00-18:00"]},
        "waiting_since": f"2026-0{draw(st.integers(1, 2))}-{draw(st.integers(1, 28)):02d}T08:00Z",
        "excluded_therapist_ids": draw(
            st.lists(st.sampled_from([f"t{i:03d}" for i in range(12)]), max_size=3, unique=True)
        ),
        "contact_budget": draw(st.integers(0, 4)),
    }


@st.composite
def therapists(draw: st.DrawFn, index: int) -> dict[str, Any]:
    lo = draw(st.sampled_from([None, None, 18, 25, 40]))
    return {
        "therapist_id": f"t{index:03d}",
        "practice_key": draw(st.sampled_from([None, None, None, "pA", "pB"])),
        "lat": draw(_lat),
        "lon": draw(_lon),
        "gender": draw(st.sampled_from(GENDERS)),
        "therapy_methods": draw(st.lists(st.sampled_from(METHODS), min_size=1, unique=True)),
        "patient_age_min": lo,
        "patient_age_max": None if lo is None else lo + draw(st.sampled_from([10, 30, 60])),
        "preferred_patient_gender": draw(st.sampled_from([None, None, "female", "male"])),
        "preferred_diagnoses": draw(st.sampled_from([[], [], ["F3"], ["F4", "F32"]])),
        "prefers_group_therapy": draw(st.integers(0, 3)) == 0,
        "working_hours": draw(st.sampled_from([None, {"mon": ["08:00-10:00"]}])),
        "contactable": draw(st.sampled_from([True, True, True, False])),
        # answer history and flag only rank therapists: every property must still hold
        "potentially_available": draw(st.integers(0, 3)) == 0,
        "answer_history": draw(st.lists(_history_entry(), max_size=3)),
    }


@st.composite
def _history_entry(draw: st.DrawFn) -> dict[str, Any]:
    sent = date.fromisoformat(TODAY) - timedelta(days=draw(st.integers(0, 200)))
    answered = draw(st.sampled_from([None, 0, 3]))
    patients = draw(st.integers(1, 6))
    accepted = draw(st.integers(0, 1))
    capacity = draw(st.integers(0, patients - accepted))
    return {
        "sent_on": sent.isoformat(),
        "answered_on": None if answered is None else (sent + timedelta(answered)).isoformat(),
        "patients": patients,
        "accepted": accepted,
        "rejected_capacity": capacity,
        "rejected_other": patients - accepted - capacity,
    }


@st.composite
def markets(draw: st.DrawFn, max_searches: int = 30, max_therapists: int = 12) -> dict:
    n_s = draw(st.integers(0, max_searches))
    n_t = draw(st.integers(0, max_therapists))
    lo = draw(st.integers(1, 3))
    return {
        "today": TODAY,
        "config": {
            "bundle_min_size": lo,
            "bundle_max_size": lo + draw(st.integers(0, 3)),
            "max_inquiries_per_patient": draw(st.integers(1, 3)),
            "detour_factor": {"car": 1.3, "transit": 1.5},
        },
        "searches": [draw(searches(i)) for i in range(n_s)],
        "therapists": [draw(therapists(i)) for i in range(n_t)],
    }


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine with the mean Earth radius, written independently of production code."""
    r = 6371.0088
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * r * math.asin(math.sqrt(a))


def pair_violations(market: dict, s: dict, t: dict) -> list[str]:
    """Names of the hard constraints (business-rules.md §6) a search/therapist pair breaks."""
    bad = []
    if None in (s.get("lat"), s.get("lon"), t.get("lat"), t.get("lon")):
        return ["location"]
    detour = market["config"]["detour_factor"][s.get("travel_mode") or "car"]
    if great_circle_km(s["lat"], s["lon"], t["lat"], t["lon"]) * detour > s["max_travel_km"]:
        bad.append("distance")
    if t["therapist_id"] in (s.get("excluded_therapist_ids") or []):
        bad.append("excluded")
    if s.get("preferred_therapist_gender") not in (None, "any") and (
        s["preferred_therapist_gender"] != t.get("gender")
    ):
        bad.append("therapist_gender")
    if s.get("preferred_therapy_method") not in (None, "any") and (
        s["preferred_therapy_method"] not in (t.get("therapy_methods") or [])
        and "any" not in (t.get("therapy_methods") or [])
    ):
        bad.append("method")
    today = date.fromisoformat(market["today"])
    born = date.fromisoformat(s["birth_date"])
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if t.get("patient_age_min") is not None and age < t["patient_age_min"]:
        bad.append("age_min")
    if t.get("patient_age_max") is not None and age > t["patient_age_max"]:
        bad.append("age_max")
    if t.get("preferred_patient_gender") not in (None, "any") and (
        t["preferred_patient_gender"] != s.get("gender")
    ):
        bad.append("patient_gender")
    prefixes = t.get("preferred_diagnoses") or []
    if prefixes and not any((s.get("diagnosis") or "").startswith(p) for p in prefixes):
        bad.append("diagnosis")
    if t.get("prefers_group_therapy") and not s.get("open_to_group_therapy"):
        bad.append("group")
    if t.get("contactable") is False:
        bad.append("not_contactable")
    return bad


def check_result(market: dict, doc: dict) -> None:
    """Assert every rule of the CLI contract on a result document."""
    cfg = market["config"]
    searches = {s["search_id"]: s for s in market["searches"]}
    therapists = {t["therapist_id"]: t for t in market["therapists"]}
    uses: dict[str, int] = {}
    practices: set[str] = set()
    for inquiry in doc["inquiries"]:
        t = therapists[inquiry["therapist_id"]]
        ids = inquiry["search_ids"]
        assert cfg["bundle_min_size"] <= len(ids) <= cfg["bundle_max_size"], inquiry
        assert len(set(ids)) == len(ids)
        practice = t.get("practice_key") or f"own:{t['therapist_id']}"
        assert practice not in practices, f"second inquiry for practice {practice}"
        practices.add(practice)
        for sid in ids:
            assert pair_violations(market, searches[sid], t) == [], (sid, t["therapist_id"])
            uses[sid] = uses.get(sid, 0) + 1
    for sid, n in uses.items():
        s = searches[sid]
        assert n <= min(s.get("contact_budget", 99), cfg["max_inquiries_per_patient"])
    left = [x["search_id"] for x in doc["left_out"]]
    assert len(left) == len(set(left))
    assert set(left).isdisjoint(uses)
    assert set(left) | set(uses) == set(searches)


def waiting_days(market: dict, s: dict) -> int:
    """Days a search has waited on the market's day."""
    since = datetime.fromisoformat(s["waiting_since"]).date()
    return (date.fromisoformat(market["today"]) - since).days
