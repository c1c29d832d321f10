"""A search's contact log, as JSON and as the CSV a patient sends the insurer (§13(3) SGB V),
against a real PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.app import create_app as create_matching_app
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from shared.runtime import ServiceRuntime
from tests.inquiry_support import update_row
from tests.matching_support import MarketBuilder, insert_inquiry

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]

DAY = datetime(2031, 5, 4, 23, 30, tzinfo=UTC)  # 5 May in Berlin


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


@pytest.fixture
def logged(builder: MarketBuilder, admin_engine: sa.Engine) -> dict[str, Any]:
    """A search in three inquiries: rejected by phone, closed unanswered, withdrawn."""
    search = builder.search()
    other = builder.search()
    rejecting, silent, withdrawn = (builder.therapist() for _ in range(3))
    ids = [
        insert_inquiry(admin_engine, therapist, [search["id"], other["id"]], sent_at=DAY)
        for therapist in (rejecting, silent, withdrawn)
    ]
    for offset, inquiry_id in enumerate(ids):
        update_row(
            admin_engine,
            "inquiries",
            {"id": inquiry_id},
            created_at=DAY + timedelta(minutes=offset),
        )
    answered = DAY + timedelta(days=3)
    update_row(
        admin_engine,
        "inquiries",
        {"id": ids[0]},
        status="answered",
        answered_at=answered,
        channel="phone",
        response_type="full_rejection",
    )
    update_row(
        admin_engine,
        "inquiry_patients",
        {"inquiry_id": ids[0], "search_id": search["id"]},
        status="answered",
        outcome="rejected_capacity",
        outcome_at=answered,
    )
    update_row(
        admin_engine,
        "inquiries",
        {"id": ids[1]},
        status="closed",
        response_type="no_response",
        closed_at=DAY + timedelta(days=21),
    )
    update_row(
        admin_engine,
        "inquiry_patients",
        {"inquiry_id": ids[2], "search_id": search["id"]},
        status="withdrawn",
        withdrawn_at=DAY + timedelta(days=1),
        withdrawn_reason="claimed_elsewhere",
    )
    return {
        "search_id": search["id"],
        "inquiries": ids,
        "therapists": [rejecting, silent, withdrawn],
    }


def test_the_contact_log_lists_every_inquiry_of_the_search_oldest_first(
    client: Any, admin_headers: dict[str, str], logged: dict[str, Any]
) -> None:
    response = client.get(
        f"/api/patient-searches/{logged['search_id']}/contact-log", headers=admin_headers
    )
    assert response.status_code == 200
    rejected, closed, withdrawn = response.json
    assert [entry["inquiry_id"] for entry in response.json] == logged["inquiries"]
    assert rejected["therapist_id"] == logged["therapists"][0]
    assert rejected["sent_via"] == "email" and rejected["answer_channel"] == "phone"
    assert rejected["outcome"] == "rejected_capacity" and rejected["withdrawn"] is False
    assert closed["inquiry_status"] == "closed" and closed["outcome"] is None
    assert closed["closed_at"].startswith("2031-05-25")
    assert withdrawn["withdrawn"] is True and withdrawn["conflict"] is False


def test_the_contact_log_as_csv_has_german_headers_and_local_dates(
    client: Any, admin_headers: dict[str, str], logged: dict[str, Any]
) -> None:
    response = client.get(
        f"/api/patient-searches/{logged['search_id']}/contact-log?format=csv",
        headers=admin_headers,
    )
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig")), delimiter=";"))
    header, rejected, closed, withdrawn = rows
    assert header[:3] == ["Anfrage-Nr.", "Therapeut-ID", "Anfrage erstellt am"]
    assert rejected[:8] == [
        str(logged["inquiries"][0]),
        str(logged["therapists"][0]),
        "05.05.2031",
        "05.05.2031",
        "E-Mail",
        "08.05.2031",
        "Telefon",
        "Absage: keine Kapazität",
    ]
    assert closed[7] == "Keine Antwort"
    assert withdrawn[7] == "Patient zurückgezogen" and withdrawn[8] == "06.05.2031"


def test_the_contact_log_of_an_unknown_search_is_404(
    client: Any, admin_headers: dict[str, str]
) -> None:
    response = client.get("/api/patient-searches/2147483000/contact-log", headers=admin_headers)
    assert response.status_code == 404


def test_the_openapi_document_shows_both_media_types(client: Any) -> None:
    spec = client.get("/openapi.json").json
    content = spec["paths"]["/api/patient-searches/{search_id}/contact-log"]["get"]["responses"][
        "200"
    ]["content"]
    assert set(content) == {"application/json", "text/csv"}
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ContactLogOut"}
