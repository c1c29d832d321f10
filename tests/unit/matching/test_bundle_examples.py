"""Worked examples of the bundle algorithm: fairness, pruning, reasons, tolerant input."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np

from matching_service.bundling import (
    BundleConfig,
    Search,
    SearchReason,
    Strategy,
    Therapist,
    TherapistReason,
    propose_bundles,
)
from matching_service.bundling.geo import GridIndex, haversine_km

TODAY = date(2026, 3, 1)
CONFIG = BundleConfig(bundle_min_size=2, bundle_max_size=2, max_inquiries_per_patient=1)


def _search(sid: str, lat: float | None, lon: float | None, waited: int, **kw: object) -> Search:
    since = datetime(2026, 3, 1, 9, tzinfo=UTC) - timedelta(days=waited)
    fields: dict = {"contact_budget": 3, **kw}
    return Search(sid, f"p-{sid}", lat, lon, 15.0, "car", since, **fields)


def _covered(result) -> set[str]:  # type: ignore[no-untyped-def]
    return result.covered_search_ids()


def test_early_therapists_do_not_take_every_long_waiting_patient() -> None:
    # The long waiters reach both therapists; the newer patients (north) reach only t1.
    searches = [
        _search("old1", 52.50, 13.40, 90),
        _search("old2", 52.50, 13.41, 80),
        _search("new1", 52.66, 13.40, 5),
        _search("new2", 52.66, 13.41, 4),
    ]
    therapists = [Therapist("t1", 52.58, 13.40), Therapist("t2", 52.50, 13.40)]
    baseline = propose_bundles(searches, therapists, CONFIG, TODAY, Strategy.BASELINE)
    best = propose_bundles(searches, therapists, CONFIG, TODAY, Strategy.GLOBAL)
    assert _covered(best) == {"old1", "old2", "new1", "new2"}
    assert _covered(baseline) == {"old1", "old2"}


def test_missing_location_never_passes_a_distance_check() -> None:
    searches = [_search(f"s{i}", 52.5, 13.4, 10) for i in range(3)]
    searches.append(_search("lost", None, None, 99))
    therapists = [Therapist("t1", 52.5, 13.4), Therapist("t2", None, None)]
    result = propose_bundles(searches, therapists, BundleConfig(), TODAY)
    reasons = {x.search_id: x.reason for x in result.left_out}
    assert reasons == {"lost": SearchReason.NO_LOCATION}
    idle = {x.therapist_id: x.reason for x in result.therapists_without_inquiry}
    assert idle == {"t2": TherapistReason.NO_LOCATION}


def test_left_out_reasons_explain_each_search() -> None:
    therapists = [Therapist("t1", 52.5, 13.4, gender="male"), Therapist("t9", 48.1, 11.6)]
    searches = [
        _search("far", 53.5, 10.0, 30),
        _search("wants-female", 52.5, 13.4, 30, preferred_therapist_gender="female"),
        _search("excluded", 52.5, 13.4, 30, excluded_therapist_ids=frozenset({"t1"})),
        _search("broke", 52.5, 13.4, 30, contact_budget=0),
        _search("alone", 52.5, 13.4, 30),
    ]
    result = propose_bundles(searches, therapists, BundleConfig(), TODAY)
    reasons = {x.search_id: x.reason for x in result.left_out}
    assert reasons == {
        "far": SearchReason.NO_THERAPIST_IN_RANGE,
        "wants-female": SearchReason.NO_THERAPIST_MATCHES_PREFERENCES,
        "excluded": SearchReason.EXCLUDED_EVERYWHERE,
        "broke": SearchReason.BUDGET_USED_UP,
        "alone": SearchReason.THERAPISTS_BELOW_MINIMUM,
    }
    idle = {x.therapist_id: x.reason for x in result.therapists_without_inquiry}
    assert idle["t1"] == TherapistReason.FEWER_THAN_MINIMUM_ELIGIBLE


def test_practice_gets_one_inquiry_through_its_best_placed_therapist() -> None:
    searches = [_search(f"s{i}", 52.5, 13.4 + i * 0.01, 10 + i) for i in range(4)]
    therapists = [
        Therapist("a", 52.5, 13.4, practice_key="x", therapy_methods=("behavioural",)),
        Therapist("b", 52.5, 13.4, practice_key="x", preferred_diagnoses=("F9",)),
    ]
    searches = [*searches[:3], _search("s3", 52.5, 13.4, 5, diagnosis="F90.0")]
    result = propose_bundles(searches, therapists, BundleConfig(), TODAY)
    assert [i.therapist_id for i in result.inquiries] == ["a"]
    idle = {x.therapist_id: x.reason for x in result.therapists_without_inquiry}
    assert idle == {"b": TherapistReason.PRACTICE_HAS_INQUIRY}


def test_age_limits_are_inclusive_in_whole_years() -> None:
    turns_30_today = _search("30", 52.5, 13.4, 10, birth_date=date(1996, 3, 1))
    turns_30_tomorrow = _search("29", 52.5, 13.4, 10, birth_date=date(1996, 3, 2))
    turns_41_today = _search("41", 52.5, 13.4, 10, birth_date=date(1985, 3, 1))
    therapist = Therapist("t", 52.5, 13.4, patient_age_min=30, patient_age_max=40)
    config = BundleConfig(bundle_min_size=1)
    result = propose_bundles(
        [turns_30_today, turns_30_tomorrow, turns_41_today], [therapist], config, TODAY
    )
    assert result.covered_search_ids() == {"30"}


def test_grid_returns_every_point_within_the_radius() -> None:
    rng = np.random.default_rng(7)
    t_lat, t_lon = rng.uniform(47, 55, 3000), rng.uniform(6, 15, 3000)
    q_lat, q_lon = rng.uniform(47, 55, 200), rng.uniform(6, 15, 200)
    radius = rng.uniform(1, 80, 200)
    grid = GridIndex(t_lat, t_lon, cell_km=7.0)
    found = set()
    for q, t in grid.candidate_chunks(q_lat, q_lon, radius, max_pairs=5000):
        near = haversine_km(q_lat[q], q_lon[q], t_lat[t], t_lon[t]) <= radius[q]
        found |= set(zip(q[near].tolist(), t[near].tolist(), strict=True))
    d = haversine_km(q_lat[:, None], q_lon[:, None], t_lat[None, :], t_lon[None, :])
    expected = set(zip(*np.nonzero(d <= radius[:, None]), strict=True))
    assert found == {(int(a), int(b)) for a, b in expected}


def test_haversine_matches_a_known_distance() -> None:
    # Berlin Brandenburg Gate to Munich Marienplatz: about 503.4 km great-circle.
    d = haversine_km(
        np.array([52.5163]), np.array([13.3777]), np.array([48.1374]), np.array([11.5755])
    )
    assert abs(float(d[0]) - 503.4) < 0.5


def test_scarce_capacity_goes_to_the_longest_waiting_patients() -> None:
    searches = [_search(f"w{days:03d}", 52.5, 13.4, days) for days in (5, 50, 20, 80, 35)]
    config = BundleConfig(bundle_min_size=2, bundle_max_size=3, max_inquiries_per_patient=1)
    result = propose_bundles(searches, [Therapist("t", 52.5, 13.4)], config, TODAY)
    assert result.inquiries[0].search_ids == ["w080", "w050", "w035"]
    assert {x.reason for x in result.left_out} == {SearchReason.NO_CAPACITY}
