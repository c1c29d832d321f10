"""Contactability of one therapist over the API, and admins ending a practice's cooling
early, against a real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.app import create_app as create_matching_app
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from shared.db import utcnow
from shared.runtime import ServiceRuntime
from tests.inquiry_support import insert_cooling, outbox_payloads, staff_headers
from tests.matching_support import (
    MarketBuilder,
    handle,
    insert_inquiry,
    therapist_event,
    unique_practice,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]


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


def _cooling_rows(engine: sa.Engine, practice_key: str) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT overridden_at, overridden_by, override_reason FROM "
                    "matching_service.cooling_periods WHERE practice_key = :p ORDER BY id"
                ),
                {"p": practice_key},
            )
        )


def test_a_located_active_therapist_is_contactable(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str]
) -> None:
    therapist_id = builder.therapist()
    response = client.get(f"/api/contactability/{therapist_id}", headers=admin_headers)
    assert response.status_code == 200
    assert response.json["therapist_id"] == therapist_id
    assert response.json["contactable"] is True
    assert response.json["reasons"] == []
    assert response.json["next_contactable_date"] is None


def test_a_cooling_practice_is_not_contactable_until_its_cooling_ends(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    practice = unique_practice()
    therapist_id = builder.therapist(practice_key=practice)
    today = utcnow().date()
    insert_cooling(admin_engine, practice, today - timedelta(days=3), today + timedelta(days=25))
    response = client.get(f"/api/contactability/{therapist_id}", headers=admin_headers)
    assert response.json["contactable"] is False
    assert response.json["reasons"] == ["cooling"]
    assert response.json["practice_key"] == practice
    assert response.json["next_contactable_date"] == str(today + timedelta(days=25))
    later = client.get(
        f"/api/contactability/{therapist_id}?as_of={today + timedelta(days=25)}",
        headers=admin_headers,
    )
    assert later.json["contactable"] is True


def test_the_cooling_date_therapist_service_reports_does_not_decide_contactability(
    builder: MarketBuilder, database: Any, client: Any, admin_headers: dict[str, str]
) -> None:
    # therapist_service follows matching's cooling events and reports the date back in
    # therapist.updated; matching's own cooling periods decide, so nothing loops
    practice = unique_practice()
    therapist_id = builder.therapist(practice_key=practice)
    reported = therapist_event(
        therapist_id, 2, practice_key=practice, next_contactable_date="2099-01-01"
    )
    handle(database, reported)
    response = client.get(f"/api/contactability/{therapist_id}", headers=admin_headers)
    assert response.json["contactable"] is True
    assert response.json["next_contactable_date"] is None


def test_an_open_inquiry_of_the_practice_is_a_reason(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    therapist_id = builder.therapist()
    search = builder.search()
    insert_inquiry(admin_engine, therapist_id, [search["id"]])
    response = client.get(f"/api/contactability/{therapist_id}", headers=admin_headers)
    assert response.json["reasons"] == ["open_inquiry"]


def test_contactability_of_an_unknown_therapist_is_404(
    client: Any, admin_headers: dict[str, str]
) -> None:
    assert client.get("/api/contactability/2147483000", headers=admin_headers).status_code == 404


def test_a_bad_as_of_is_a_422_naming_it(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str]
) -> None:
    therapist_id = builder.therapist()
    response = client.get(f"/api/contactability/{therapist_id}?as_of=soon", headers=admin_headers)
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == "as_of"


def test_an_admin_override_ends_the_cooling_and_emits_cooling_overridden_without_reason(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    practice = unique_practice()
    therapist_id = builder.therapist(practice_key=practice)
    colleague = builder.therapist(practice_key=practice)
    today = utcnow().date()
    insert_cooling(admin_engine, practice, today - timedelta(days=2), today + timedelta(days=26))
    # an earlier period that ended already stays as it was
    insert_cooling(admin_engine, practice, today - timedelta(days=60), today - timedelta(days=32))
    response = client.post(
        f"/api/contactability/{therapist_id}/override",
        json={"reason": "practice called: a place is free now"},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.json
    assert response.json["contactable"] is True
    assert response.json["next_contactable_date"] is None
    current, old = _cooling_rows(admin_engine, practice)
    assert old.overridden_at is None
    assert current.overridden_by == "bootstrap-admin"
    assert current.override_reason == "practice called: a place is free now"
    (payload,) = outbox_payloads(admin_engine, "cooling.overridden", practice)
    assert payload["therapist_ids"] == sorted([therapist_id, colleague])
    assert payload["next_contactable_date"] is None
    assert "reason" not in payload and "free now" not in str(payload)


def test_overriding_a_practice_that_is_not_cooling_is_a_409(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    practice = unique_practice()
    therapist_id = builder.therapist(practice_key=practice)
    first = client.post(
        f"/api/contactability/{therapist_id}/override", json={"reason": "x"}, headers=admin_headers
    )
    assert first.status_code == 409
    today = utcnow().date()
    insert_cooling(admin_engine, practice, today - timedelta(days=1), today + timedelta(days=27))
    assert (
        client.post(
            f"/api/contactability/{therapist_id}/override",
            json={"reason": "x"},
            headers=admin_headers,
        ).status_code
        == 200
    )
    again = client.post(
        f"/api/contactability/{therapist_id}/override", json={"reason": "y"}, headers=admin_headers
    )
    assert again.status_code == 409
    assert again.json["error"]["details"]["practice_key"] == practice
    assert len(outbox_payloads(admin_engine, "cooling.overridden", practice)) == 1


def test_only_admins_override_cooling(
    builder: MarketBuilder, client: Any, database_url: str, admin_engine: sa.Engine
) -> None:
    practice = unique_practice()
    therapist_id = builder.therapist(practice_key=practice)
    today = utcnow().date()
    insert_cooling(admin_engine, practice, today, today + timedelta(days=28))
    headers = staff_headers(database_url)
    assert client.get(f"/api/contactability/{therapist_id}", headers=headers).status_code == 200
    response = client.post(
        f"/api/contactability/{therapist_id}/override", json={"reason": "x"}, headers=headers
    )
    assert response.status_code == 403
    assert _cooling_rows(admin_engine, practice)[0].overridden_at is None


def test_an_override_needs_a_reason(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str]
) -> None:
    therapist_id = builder.therapist()
    response = client.post(
        f"/api/contactability/{therapist_id}/override", json={"reason": ""}, headers=admin_headers
    )
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == "reason"
