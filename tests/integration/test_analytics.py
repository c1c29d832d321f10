"""The business figures (business-rules.md §9) on a known data set in a postal-code region of its
own, against a real PostgreSQL: every number asserted exactly."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.app import create_app as create_matching_app
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.service import analytics
from matching_service.settings import MatchingSettings
from shared.runtime import ServiceRuntime
from tests.inquiry_support import insert_cooling, update_row
from tests.matching_support import MarketBuilder, insert_inquiry

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]

NOW = datetime(2032, 2, 1, 12, 0, tzinfo=UTC)


def at(day: int, month: int = 1, year: int = 2032) -> datetime:
    return datetime(year, month, day, 10, 0, tzinfo=UTC)


@pytest.fixture
def database(make_settings: Any) -> Any:
    database = ServiceRuntime.build(make_settings(MatchingSettings), MATCHING_INFRA).database
    yield database
    database.dispose()


@pytest.fixture
def client(make_settings: Any) -> Any:
    return create_matching_app(make_settings(MatchingSettings)).test_client()


@pytest.fixture
def builder(database: Any, client: Any, admin_headers: dict[str, str]) -> MarketBuilder:
    return MarketBuilder(database, client, admin_headers)


def _search(builder: MarketBuilder, engine: sa.Engine, postal_code: str, **columns: Any) -> int:
    search_id = int(builder.search(postal_code=postal_code)["id"])
    update_row(engine, "patient_searches", {"id": search_id}, **columns)
    return search_id


def _answer(engine: sa.Engine, inquiry_id: int, answered_at: datetime, **outcomes: Any) -> None:
    update_row(
        engine,
        "inquiries",
        {"id": inquiry_id},
        status="answered",
        answered_at=answered_at,
        channel="email",
        response_type="partial_acceptance",
    )
    for search_id, (outcome, conflict) in outcomes.items():
        update_row(
            engine,
            "inquiry_patients",
            {"inquiry_id": inquiry_id, "search_id": int(search_id)},
            status="answered",
            outcome=outcome,
            outcome_at=answered_at,
            conflict=conflict,
        )


@pytest.fixture
def region(builder: MarketBuilder, admin_engine: sa.Engine) -> str:
    """A region of its own with four searches and five inquiries in January 2032, and one
    search with an inquiry outside it."""
    postal_code = f"9{random.randrange(10_000):04d}"
    engine = admin_engine
    s1 = _search(
        builder,
        engine,
        postal_code,
        created_at=at(2),
        waiting_since=at(2),
        status="in_trial",
        claimed_at=at(12),
        placed_therapist_id=1,
    )  # 10 days
    s2 = _search(
        builder,
        engine,
        postal_code,
        created_at=at(3),
        waiting_since=at(24, 12, 2031),
        status="successful",
        claimed_at=at(23),
        placed_therapist_id=2,
    )  # 30 days
    s3 = _search(
        builder, engine, postal_code, created_at=at(1, 12, 2031), waiting_since=at(1, 12, 2031)
    )  # active, waiting 62 days
    s4 = _search(builder, engine, postal_code, created_at=at(20), waiting_since=at(20))
    t1, t2, t3, t4 = (builder.therapist() for _ in range(4))

    i1 = insert_inquiry(engine, t1, [s1, s3], sent_at=at(5))
    update_row(engine, "inquiries", {"id": i1}, created_at=at(5))
    _answer(
        engine, i1, at(8), **{str(s1): ("accepted", False), str(s3): ("rejected_capacity", False)}
    )
    i2 = insert_inquiry(engine, t2, [s2, s4], sent_at=at(6))
    update_row(engine, "inquiries", {"id": i2}, created_at=at(6))
    _answer(engine, i2, at(20), **{str(s2): ("accepted", False), str(s4): ("accepted", True)})
    i3 = insert_inquiry(engine, t3, [s3, s4], sent_at=at(10))  # open, unanswered
    update_row(engine, "inquiries", {"id": i3}, created_at=at(10))
    i4 = insert_inquiry(engine, t4, [s4], status="unsent")  # created while t4's practice cooled
    update_row(engine, "inquiries", {"id": i4}, created_at=at(25))
    # a replacement offer to t1 during its practice's cooling: allowed (business-rules.md §8)
    i5 = insert_inquiry(engine, t1, [s1], status="closed", origin="replacement")
    update_row(engine, "inquiries", {"id": i5}, created_at=at(15))
    update_row(engine, "inquiry_patients", {"inquiry_id": i5}, status="withdrawn")

    practice = {t: _practice(engine, t) for t in (t1, t3, t4)}
    insert_cooling(engine, practice[t1], date(2032, 1, 8), date(2032, 2, 5), created_at=at(8))
    insert_cooling(engine, practice[t4], date(2032, 1, 20), date(2032, 2, 17), created_at=at(20))
    # overridden the day before t3's inquiry: no violation
    insert_cooling(
        engine,
        practice[t3],
        date(2032, 1, 1),
        date(2032, 1, 29),
        created_at=at(31, 12, 2031),
        overridden_at=at(9),
    )

    elsewhere = _search(builder, engine, "0" + postal_code[1:], created_at=at(4))
    outside = insert_inquiry(engine, builder.therapist(), [elsewhere], sent_at=at(4))
    update_row(engine, "inquiries", {"id": outside}, created_at=at(4))
    return postal_code


def _practice(engine: sa.Engine, therapist_id: int) -> str:
    with engine.connect() as connection:
        return str(
            connection.execute(
                sa.text(
                    "SELECT practice_key FROM matching_service.therapist_projection "
                    "WHERE therapist_id = :t"
                ),
                {"t": therapist_id},
            ).scalar_one()
        )


def test_the_summary_of_a_known_region_and_window(database: Any, region: str) -> None:
    summary = analytics.summary(
        database.unit_of_work(),
        window_from=date(2032, 1, 1),
        window_to=date(2032, 1, 31),
        postal_code_prefix=region,
        as_of=NOW,
    )
    assert summary.figures == {
        "searches_started": 3,
        "searches_placed": 2,
        "days_to_placement_median": 20.0,
        "days_to_placement_p90": 28.0,
        "inquiries_created": 5,
        "inquiries_answered": 2,
        "acceptances_per_inquiry": 1.5,
        "inquiries_sent": 3,
        "answered_within_7_days_share": pytest.approx(1 / 3),
        "acceptances": 3,
        "conflicting_acceptances": 1,
        "conflict_rate": pytest.approx(1 / 3),
        "cooling_violations": 1,
        "active_searches": 2,
        "concurrent_inquiries_avg": 1.5,
        "concurrent_inquiries_max": 2,
        "searches_waiting_over_30_days": 1,
    }


def test_a_window_without_activity_has_no_ratios(database: Any, region: str) -> None:
    summary = analytics.summary(
        database.unit_of_work(),
        window_from=date(2033, 1, 1),
        window_to=date(2033, 1, 2),
        postal_code_prefix=region,
        as_of=NOW,
    )
    assert summary.searches_placed == 0 and summary.days_to_placement_median is None
    assert summary.acceptances_per_inquiry is None and summary.conflict_rate is None
    assert summary.answered_within_7_days_share is None
    assert summary.active_searches == 2  # "now" figures do not depend on the window


def test_the_summary_over_the_api(client: Any, admin_headers: dict[str, str], region: str) -> None:
    response = client.get(
        f"/api/analytics/summary?from=2032-01-01&to=2032-01-31&postal_code_prefix={region}",
        headers=admin_headers,
    )
    assert response.status_code == 200, response.json
    assert response.json["window_from"] == "2032-01-01"
    assert response.json["inquiries_created"] == 5
    assert response.json["cooling_violations"] == 1


def test_a_window_that_ends_before_it_starts_is_a_422(
    client: Any, admin_headers: dict[str, str]
) -> None:
    response = client.get(
        "/api/analytics/summary?from=2032-02-01&to=2032-01-01", headers=admin_headers
    )
    assert response.status_code == 422
