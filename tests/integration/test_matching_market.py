"""What a bundle run reads: searches and therapists from the projections, and who may be
contacted (status, cooling, open inquiry, location), against a real PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.app import create_app as create_matching_app
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.service import market
from matching_service.settings import MatchingSettings
from shared.runtime import ServiceRuntime
from tests.matching_support import MarketBuilder, handle, insert_inquiry, therapist_event

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]

TODAY = date(2026, 11, 30)


@pytest.fixture
def database(make_settings: Any) -> Any:
    database = ServiceRuntime.build(make_settings(MatchingSettings), MATCHING_INFRA).database
    yield database
    database.dispose()


@pytest.fixture
def builder(make_settings: Any, database: Any, admin_headers: dict[str, str]) -> MarketBuilder:
    client = create_matching_app(make_settings(MatchingSettings)).test_client()
    return MarketBuilder(database, client, admin_headers)


def _contactability(database: Any, therapist_id: int, today: date = TODAY) -> Any:
    with database.session() as session:
        return market.contactability(session, today, [therapist_id])[therapist_id]


def test_a_located_active_therapist_without_inquiry_is_contactable(
    builder: MarketBuilder, database: Any
) -> None:
    therapist_id = builder.therapist()
    held = _contactability(database, therapist_id)
    assert held.contactable and held.reasons == () and held.next_contactable_date is None


def test_every_reason_against_a_contact_is_listed(
    builder: MarketBuilder, database: Any, admin_engine: sa.Engine
) -> None:
    therapist_id = builder.therapist()
    search = builder.search()
    insert_inquiry(admin_engine, therapist_id, [search["id"]])
    practice = _contactability(database, therapist_id).practice_key
    with admin_engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO matching_service.cooling_periods (practice_key, therapist_ids, "
                "starts_on, until) VALUES (:p, '[]', :start, :until)"
            ),
            {"p": practice, "start": TODAY - timedelta(days=1), "until": TODAY + timedelta(days=5)},
        )
    handle(database, therapist_event(therapist_id, 2, status="blocked", practice_key=practice))
    held = _contactability(database, therapist_id)
    assert not held.contactable
    assert held.reasons == ("status_blocked", "cooling", "open_inquiry")
    assert held.next_contactable_date == TODAY + timedelta(days=5)
    # the day cooling ends the practice is no longer cooling
    assert "cooling" not in _contactability(database, therapist_id, TODAY + timedelta(5)).reasons


def test_an_unlocated_therapist_is_not_contactable(builder: MarketBuilder, database: Any) -> None:
    therapist_id = builder.therapist()
    handle(database, therapist_event(therapist_id, 2, postal_code="10115"))  # moved
    assert _contactability(database, therapist_id).reasons == ("no_location: not_resolved_yet",)


def test_searches_are_read_with_budget_exclusions_and_location(
    builder: MarketBuilder, database: Any, admin_engine: sa.Engine
) -> None:
    therapist_id = builder.therapist()
    search = builder.search(max_travel_km=30)
    builder.client.post(
        f"/api/patient-searches/{search['id']}/exclusions",
        json={"therapist_id": therapist_id, "reason": "knows the patient"},
        headers=builder.headers,
    )
    insert_inquiry(admin_engine, therapist_id, [search["id"]])
    with database.session() as session:
        (read,) = market.load_searches(session, search_ids=[search["id"]], max_open_inquiries=3)
        (unlimited,) = market.load_searches(session, search_ids=[search["id"]])
        (therapist,) = market.load_therapists(session, TODAY, therapist_ids=[therapist_id])
    assert read.excluded_therapist_ids == frozenset({therapist_id})
    assert read.max_travel_km == 30 and read.lat is not None
    assert read.contact_budget == 2  # 3 open inquiries at most, one held already
    assert unlimited.contact_budget == search["contact_budget"] - 1
    assert therapist.lat is not None
    assert not therapist.contactable and therapist.not_contactable_reason == "open_inquiry"


def test_searches_near_a_point_leave_out_patients_beyond_any_travel_distance(
    builder: MarketBuilder, database: Any
) -> None:
    near = builder.search(lat=51.34, lon=12.37)  # Leipzig
    within = builder.search(lat=52.52, lon=13.40)  # Berlin, ~150 km
    far = builder.search(lat=48.14, lon=11.58)  # Munich, ~360 km
    ids = [near["id"], within["id"], far["id"]]
    with database.session() as session:
        found = market.load_searches(session, search_ids=ids, near=(51.34, 12.37))
    assert {search.search_id for search in found} == {near["id"], within["id"]}
    for search_id in ids:  # other tests' therapists near these places must not meet them
        builder.client.patch(
            f"/api/patient-searches/{search_id}",
            json={"status": "cancelled"},
            headers=builder.headers,
        )
