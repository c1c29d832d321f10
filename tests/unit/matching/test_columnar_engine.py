"""The columnar engine against the per-pair reference engine on generated markets.

Both engines apply the same rules in the same order; the columnar one counts eligible
patients per location instead of listing every pair, keeps only the nearest candidates per
patient and runs the parallel rounds as deferred acceptance (equal to the serial order when
every therapist ranks patients by the same priority). So on markets without exact distance
ties the two must agree inquiry for inquiry, and the coverage tolerance against the reference
is zero patients. Ties (colleagues at one address, equally far) may be broken differently;
there the tolerance stays zero for the count of covered patients in these small markets,
checked separately with markets that place colleagues at one address.
"""

from __future__ import annotations

from datetime import date
from random import Random
from unittest.mock import patch

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching_service.bundling import BundleConfig, Strategy, columnar, propose_bundles
from matching_service.bundling.columnar import propose_columns
from matching_service.bundling.columns import (
    SearchColumns,
    TherapistColumns,
    searches_from_objects,
    therapists_from_objects,
)
from matching_service.bundling.engine import bundle_result
from matching_service.bundling.market_io import parse_market, result_document
from matching_service.bundling.reference import propose_bundles_reference

from .market_gen import check_result, markets, waiting_days

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _both(market: dict) -> tuple[dict, dict]:
    parsed = parse_market(market)
    args = (parsed.searches, parsed.therapists, parsed.config, parsed.today)
    new = result_document(propose_bundles(*args, Strategy.GLOBAL))
    old = result_document(propose_bundles_reference(*args, Strategy.GLOBAL))
    return new, old


def _covered(doc: dict) -> set[str]:
    return {sid for inquiry in doc["inquiries"] for sid in inquiry["search_ids"]}


@st.composite
def shared_addresses(draw: st.DrawFn) -> dict:
    """Markets where colleagues of a practice share the practice's address."""
    market = draw(markets(max_searches=40, max_therapists=12))
    where: dict[str, tuple[float, float]] = {}
    for t in market["therapists"]:
        key = t["practice_key"]
        if key is not None:
            t["lat"], t["lon"] = where.setdefault(key, (t["lat"], t["lon"]))
    return market


@SETTINGS
@given(markets(max_searches=40, max_therapists=12))
def test_columnar_engine_agrees_with_the_reference(market: dict) -> None:
    new, old = _both(market)
    check_result(market, new)
    assert new == old


@SETTINGS
@given(markets(max_searches=40, max_therapists=12))
def test_parallel_rounds_by_deferred_acceptance_equal_the_serial_rule(market: dict) -> None:
    # small markets normally take the serial loop: force the array rounds
    with patch.object(columnar, "_SERIAL_BELOW", 0):
        new, old = _both(market)
    assert new == old


@SETTINGS
@given(shared_addresses())
def test_columnar_engine_covers_as_many_as_the_reference_with_shared_addresses(
    market: dict,
) -> None:
    new, old = _both(market)
    check_result(market, new)
    assert len(_covered(new)) >= len(_covered(old))
    searches = {s["search_id"]: s for s in market["searches"]}

    def long_waiting(doc: dict) -> int:
        return sum(1 for sid in _covered(doc) if waiting_days(market, searches[sid]) >= 60)

    assert long_waiting(new) >= long_waiting(old)


@SETTINGS
@given(markets(max_searches=30, max_therapists=12), st.randoms(use_true_random=False))
def test_column_row_order_does_not_change_the_result(market: dict, rnd: Random) -> None:
    parsed = parse_market(market)
    config, today = parsed.config, parsed.today
    searches, therapists = list(parsed.searches), list(parsed.therapists)
    expected = result_document(propose_bundles(searches, therapists, config, today))
    rnd.shuffle(searches)
    rnd.shuffle(therapists)
    s = searches_from_objects(searches)
    t = therapists_from_objects(therapists, today, config.use_answer_history)
    again = bundle_result(propose_columns(s, t, config, today), s, t)
    assert result_document(again) == expected


def test_columns_built_without_objects_give_the_same_bundles() -> None:
    """A caller with arrays (e.g. read straight from the database) skips the objects."""
    n_s, n_t = 12, 4
    rng = np.random.default_rng(7)
    lat = 52.5 + rng.normal(0, 0.01, n_s)
    lon = 13.4 + rng.normal(0, 0.01, n_s)
    words = 6
    searches = SearchColumns(
        search_id=[f"s{i:02d}" for i in range(n_s)],
        lat=lat,
        lon=lon,
        max_travel_km=np.full(n_s, 10.0),
        travel_mode=np.zeros(n_s, dtype=np.int8),
        waiting_day=np.full(n_s, 739_000, dtype=np.int64) - np.arange(n_s),
        waiting_at=np.zeros(n_s),
        contact_budget=np.full(n_s, 2, dtype=np.int64),
        gender=np.full(n_s, 2, dtype=np.int8),
        birth=np.full(n_s, 19900101, dtype=np.int32),
        diagnosis=np.zeros(n_s, dtype=np.int32),
        diagnoses=["F32.1"],
        preferred_method=np.zeros(n_s, dtype=np.int8),
        preferred_therapist_gender=np.zeros(n_s, dtype=np.int8),
        open_to_group_therapy=np.zeros(n_s, dtype=bool),
        availability=np.zeros((n_s, words), dtype=np.uint64),
        excluded_start=np.zeros(n_s + 1, dtype=np.int64),
        excluded_ids=[],
    )
    therapists = TherapistColumns(
        therapist_id=[f"t{j}" for j in range(n_t)],
        lat=np.full(n_t, 52.5) + np.arange(n_t) * 0.001,
        lon=np.full(n_t, 13.4),
        practice_key=[f"therapist:t{j}" for j in range(n_t)],
        gender=np.full(n_t, 2, dtype=np.int8),
        methods=np.full(n_t, 0b11110, dtype=np.int16),
        age_min=np.full(n_t, -(10**6), dtype=np.int32),
        age_max=np.full(n_t, 10**6, dtype=np.int32),
        preferred_patient_gender=np.zeros(n_t, dtype=np.int8),
        diagnosis_prefixes=np.zeros(n_t, dtype=np.int32),
        prefix_sets=[()],
        prefers_group_therapy=np.zeros(n_t, dtype=bool),
        hours=np.zeros((n_t, words), dtype=np.uint64),
        contactable=np.ones(n_t, dtype=bool),
        not_contactable_reason=[None] * n_t,
        openness=np.zeros(n_t, dtype=np.int64),
    )
    config = BundleConfig()
    today = date.fromordinal(739_010)
    result = bundle_result(
        propose_columns(searches, therapists, config, today), searches, therapists
    )
    # 12 patients, budget 2 each, four therapists of size <= 6: every patient covered twice
    assert len(result.covered_search_ids()) == n_s
    assert sum(len(i.patients) for i in result.inquiries) == 2 * n_s
    assert result.left_out == ()
    first = result.inquiries[0].patients
    assert [f.waiting_days for f in first] == sorted((f.waiting_days for f in first), reverse=True)
    assert [f.position for f in first] == list(range(1, len(first) + 1))
