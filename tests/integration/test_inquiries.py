"""Manual inquiries (staff bundle patients for one therapist by hand) and the inquiry reads,
against a real PostgreSQL."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.app import create_app as create_matching_app
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from shared.runtime import ServiceRuntime
from tests.matching_support import CENTRE, MarketBuilder, insert_inquiry, new_id

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]

_POSTAL_CODES = itertools.count(random.randrange(70_000, 78_000, 100))


def _region() -> str:
    return f"{next(_POSTAL_CODES):05d}"


@pytest.fixture
def settings(make_settings: Any) -> MatchingSettings:
    return make_settings(
        MatchingSettings, default_contact_budget=5, bundle_min_size=3, bundle_max_size=3
    )


@pytest.fixture
def database(settings: MatchingSettings) -> Any:
    database = ServiceRuntime.build(settings, MATCHING_INFRA).database
    yield database
    database.dispose()


@pytest.fixture
def client(settings: MatchingSettings) -> Any:
    return create_matching_app(settings).test_client()


@pytest.fixture
def builder(database: Any, client: Any, admin_headers: dict[str, str]) -> MarketBuilder:
    return MarketBuilder(database, client, admin_headers)


def _create(client: Any, headers: dict[str, str], therapist_id: int, search_ids: list[int]) -> Any:
    return client.post(
        "/api/inquiries",
        json={"therapist_id": therapist_id, "search_ids": search_ids},
        headers=headers,
    )


def _count(engine: sa.Engine, sql: str, **params: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(sql), params).scalar_one())


def _written(engine: sa.Engine) -> tuple[int, int, int]:
    return (
        _count(engine, "SELECT count(*) FROM matching_service.inquiries"),
        _count(engine, "SELECT count(*) FROM matching_service.outbox"),
        _count(engine, "SELECT sum(contacts_used) FROM matching_service.patient_searches"),
    )


def test_a_manual_inquiry_of_one_patient_is_created_with_its_detail_and_event(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    region = _region()
    therapist_id = builder.therapist(postal_code=region)
    search = builder.search(postal_code=region)
    response = _create(client, admin_headers, therapist_id, [search["id"]])
    assert response.status_code == 201, response.json
    inquiry = response.json
    assert (inquiry["therapist_id"], inquiry["origin"], inquiry["bundle_run_id"]) == (
        therapist_id,
        "manual",
        None,
    )
    assert (inquiry["status"], inquiry["original_size"], inquiry["current_size"]) == (
        "unsent",
        1,
        1,
    )
    assert inquiry["patients"] == [
        {
            "search_id": search["id"],
            "patient_id": search["patient_id"],
            "position": 1,
            "status": "open",
            "outcome": None,
            "conflict": False,
            "replacement_offers": None,
        }
    ]
    assert client.get(f"/api/inquiries/{inquiry['id']}", headers=admin_headers).json == inquiry
    detail = client.get(f"/api/patient-searches/{search['id']}", headers=admin_headers).json
    assert detail["contacts_used"] == 1
    assert [(i["inquiry_id"], i["status"], i["patient_status"]) for i in detail["inquiries"]] == [
        (inquiry["id"], "unsent", "open")
    ]
    assert (
        _count(
            admin_engine,
            "SELECT count(*) FROM matching_service.outbox WHERE event_type = 'inquiry.created' "
            "AND aggregate_id = :id AND envelope->'payload'->>'origin' = 'manual'",
            id=str(inquiry["id"]),
        )
        == 1
    )


def test_a_manual_inquiry_keeps_the_order_staff_gave(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str]
) -> None:
    region = _region()
    therapist_id = builder.therapist(postal_code=region)
    ids = [builder.search(postal_code=region)["id"] for _ in range(3)]
    response = _create(client, admin_headers, therapist_id, [ids[2], ids[0], ids[1]])
    assert response.status_code == 201, response.json
    patients = response.json["patients"]
    assert [(p["search_id"], p["position"]) for p in patients] == [
        (ids[2], 1), (ids[0], 2), (ids[1], 3)
    ]  # fmt: skip


def test_a_bad_list_of_searches_is_422_and_changes_nothing(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    region = _region()
    therapist_id = builder.therapist(postal_code=region)
    ids = [builder.search(postal_code=region)["id"] for _ in range(4)]
    before = _written(admin_engine)
    for search_ids, field in (
        ([], "search_ids"),
        (ids, "search_ids"),
        ([ids[0], ids[0]], "search_ids"),
    ):
        response = _create(client, admin_headers, therapist_id, search_ids)
        assert response.status_code == 422, search_ids
        assert field in str(response.json["error"]), response.json
    assert _written(admin_engine) == before


def test_a_therapist_who_may_not_be_contacted_is_409_with_the_reasons(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    region = _region()
    therapist_id = builder.therapist(postal_code=region)
    first, second = (builder.search(postal_code=region)["id"] for _ in range(2))
    insert_inquiry(admin_engine, therapist_id, [first], status="sent", sent_at=datetime.now(UTC))
    with admin_engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO matching_service.cooling_periods (practice_key, therapist_ids, "
                "starts_on, until) SELECT practice_key, '[]', :start, :until "
                "FROM matching_service.therapist_projection WHERE therapist_id = :id"
            ),
            {"id": therapist_id, "start": date.today(), "until": date.today() + timedelta(9)},
        )
    before = _written(admin_engine)
    response = _create(client, admin_headers, therapist_id, [second])
    assert response.status_code == 409
    assert response.json["error"]["details"]["reasons"] == ["cooling", "open_inquiry"]
    assert response.json["error"]["details"]["next_contactable_date"] == str(
        date.today() + timedelta(9)
    )
    assert _written(admin_engine) == before
    assert _create(client, admin_headers, new_id(), [second]).status_code == 404


def test_a_pair_breaking_a_hard_constraint_is_422_naming_search_and_rule(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    region = _region()
    therapist_id = builder.therapist(postal_code=region, preferred_patient_gender="male")
    fits = builder.search(postal_code=region, gender="male")["id"]
    female = builder.search(postal_code=region)["id"]  # female
    far = builder.search(postal_code=region, gender="male", lat=CENTRE[0] + 1.0, max_travel_km=10)[
        "id"
    ]
    before = _written(admin_engine)
    response = _create(client, admin_headers, therapist_id, [fits, female, far])
    assert response.status_code == 422
    assert response.json["error"]["details"]["searches"] == [
        {"search_id": female, "rules": ["therapist_preferred_patient_gender"]},
        {"search_id": far, "rules": ["distance"]},
    ]
    assert _written(admin_engine) == before


def test_a_search_without_budget_or_not_active_is_409_and_an_unknown_one_404(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    region = _region()
    therapist_id = builder.therapist(postal_code=region)
    spent, paused = (builder.search(postal_code=region)["id"] for _ in range(2))
    with admin_engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE matching_service.patient_searches SET contacts_used = contact_budget "
                "WHERE id = :id"
            ),
            {"id": spent},
        )
    client.patch(
        f"/api/patient-searches/{paused}", json={"status": "paused"}, headers=admin_headers
    )
    response = _create(client, admin_headers, therapist_id, [spent])
    assert response.status_code == 409
    assert response.json["error"]["details"] == {"rule": "budget_used_up", "search_ids": [spent]}
    response = _create(client, admin_headers, therapist_id, [paused])
    assert response.status_code == 409
    assert response.json["error"]["details"]["searches"] == [
        {"search_id": paused, "status": "paused"}
    ]
    assert _create(client, admin_headers, therapist_id, [2_147_483_000]).status_code == 404


def test_inquiries_are_listed_by_therapist_status_overdue_and_region(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine,
    settings: MatchingSettings,
) -> None:  # fmt: skip
    region = _region()
    now = datetime.now(UTC)
    old = builder.therapist(postal_code=region)
    recent = builder.therapist(postal_code=region)
    unsent = builder.therapist(postal_code=region)
    search = builder.search(postal_code=region)["id"]
    days = settings.follow_up_after_days
    overdue_id = insert_inquiry(admin_engine, old, [search], sent_at=now - timedelta(days + 1))
    recent_id = insert_inquiry(admin_engine, recent, [search], sent_at=now - timedelta(1))
    unsent_id = insert_inquiry(admin_engine, unsent, [search], status="unsent")

    def ids(query: str) -> list[int]:
        response = client.get(
            f"/api/inquiries?postal_code_prefix={region}&{query}", headers=admin_headers
        )
        assert response.status_code == 200, response.json
        return [item["id"] for item in response.json["items"]]

    assert ids("") == [unsent_id, recent_id, overdue_id]  # newest first
    assert ids("status=sent") == [recent_id, overdue_id]
    assert ids("overdue=true") == [overdue_id]
    later = (now + timedelta(days=days)).isoformat().replace("+00:00", "Z")
    assert ids(f"overdue=true&as_of={later}") == [recent_id, overdue_id]
    assert ids(f"therapist_id={recent}") == [recent_id]
    assert ids("per_page=1&page=2") == [recent_id]
    assert ids("status=answered") == []
    assert (
        client.get(f"/api/inquiries?postal_code_prefix={_region()}", headers=admin_headers).json[
            "total"
        ]
        == 0
    )
    item = client.get(f"/api/inquiries?therapist_id={old}", headers=admin_headers).json["items"][0]
    assert item["patients"][0]["search_id"] == search
    # the list reads the patients as plain rows, the detail as objects: the same answer
    assert item == client.get(f"/api/inquiries/{item['id']}", headers=admin_headers).json
    for query in (
        "status=open",
        "overdue=maybe",
        "postal_code_prefix=x",
        "therapist_id=0",
        "as_of=2026-03-02T09:00:00",
    ):
        assert client.get(f"/api/inquiries?{query}", headers=admin_headers).status_code == 422
    assert client.get("/api/inquiries/2147483647", headers=admin_headers).status_code == 404


def test_a_search_in_trial_shows_its_placed_therapist(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    therapist_id = builder.therapist()
    search = builder.search()["id"]
    with admin_engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE matching_service.patient_searches SET status = 'in_trial', "
                "placed_therapist_id = :t, claimed_at = now() WHERE id = :id"
            ),
            {"t": therapist_id, "id": search},
        )
    detail = client.get(f"/api/patient-searches/{search}", headers=admin_headers).json
    assert detail["placed_therapist_id"] == therapist_id
