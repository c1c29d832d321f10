"""patient_service REST behaviour: auth, validation, duplicates, status rules, pagination."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from patient_service import service
from patient_service.app import create_app
from patient_service.models import INFRA
from patient_service.settings import PatientSettings
from shared.auth import Role, TokenStore, issue_token
from shared.db import Database, driver_url, schema_metadata
from shared.infrastructure import define_infrastructure
from shared.runtime import ServiceRuntime
from tests.helpers import patient_body

pytestmark = pytest.mark.integration


@pytest.fixture
def client(make_settings: Any) -> Any:
    return create_app(make_settings(PatientSettings)).test_client()


@pytest.fixture
def staff_headers(database_url: str) -> dict[str, str]:
    # stored on the admin connection, as `shared.cli tokens create` does (the role only reads)
    database = Database(database_url, pool_size=1)
    issued = issue_token("staff-test", Role.STAFF)
    TokenStore(database, define_infrastructure(schema_metadata("patient_service"))).store(issued)
    database.dispose()
    return {"Authorization": f"Bearer {issued.token}"}


@pytest.fixture
def search_started(make_settings: Any) -> Iterator[Callable[[int], None]]:
    """What patient_service does on matching's search.started: the patient is `searching`."""
    settings = make_settings(PatientSettings)
    database = ServiceRuntime.build(settings, INFRA).database

    def start(patient_id: int) -> None:
        with database.unit_of_work() as uow:
            policy = settings.qualification_policy()
            assert service.mark_searching(uow, patient_id, 1, policy)
            uow.commit()

    yield start
    database.dispose()


def test_request_without_token_is_401_with_error_shape(client: Any) -> None:
    response = client.get("/api/patients")
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_unknown_token_is_401(client: Any) -> None:
    response = client.get("/api/patients", headers={"Authorization": "Bearer nope-nope-nope"})
    assert response.status_code == 401


def test_staff_token_may_not_call_admin_endpoint(
    client: Any, staff_headers: dict[str, str]
) -> None:
    assert client.get("/api/patients", headers=staff_headers).status_code == 200
    response = client.get("/api/admin/outbox", headers=staff_headers)
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"


def test_revoked_token_is_rejected(
    client: Any, staff_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    with admin_engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE patient_service.api_tokens SET revoked_at = now() WHERE name = 'staff-test'"
            )
        )
    assert client.get("/api/patients", headers=staff_headers).status_code == 401


def test_admin_token_may_call_admin_endpoint(client: Any, admin_headers: dict[str, str]) -> None:
    response = client.get("/api/admin/outbox", headers=admin_headers)
    assert response.status_code == 200
    assert set(response.json) == {"pending", "oldest_pending_age_seconds", "stuck"}


def test_public_endpoints_need_no_token(client: Any) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert b"swagger-ui" in client.get("/docs").data
    assert client.get("/ready").json["checks"]["database"] == "ok"


def test_create_patient_returns_201_and_hides_nothing_staff_needs(
    client: Any, admin_headers: dict[str, str]
) -> None:
    body = patient_body()
    response = client.post("/api/patients", json=body, headers=admin_headers)
    assert response.status_code == 201, response.json
    created = response.json
    assert created["status"] == "registered"
    assert created["first_name"] == body["first_name"]
    assert created["version"] == 1
    fetched = client.get(f"/api/patients/{created['id']}", headers=admin_headers)
    assert fetched.json == created


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"postal_code": "1011"}, "postal_code"),
        ({"postal_code": "\u0661\u0660\u0661\u0661\u0665"}, "postal_code"),  # Arabic-Indic
        ({"diagnosis": "F\uff13\uff12"}, "diagnosis"),  # full-width digits
        ({"birth_date": "2015-01-01"}, "birth_date"),
        ({"diagnosis": "G40"}, "diagnosis"),
        ({"email": "not-an-email"}, "email"),
        ({"max_travel_km": 500}, "max_travel_km"),
        ({"travel_mode": "bike"}, "travel_mode"),
        ({"availability": {"mon": ["18:00-08:00"]}}, "availability.mon"),
        ({"symptoms": ["low_mood", "low_mood"]}, "symptoms"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_invalid_patient_is_422_naming_the_field_and_creates_nothing(
    client: Any, admin_headers: dict[str, str], override: dict[str, Any], field: str
) -> None:
    before = client.get("/api/patients", headers=admin_headers).json["total"]
    response = client.post("/api/patients", json=patient_body(**override), headers=admin_headers)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"
    assert field in [detail["field"] for detail in response.json["error"]["details"]]
    assert client.get("/api/patients", headers=admin_headers).json["total"] == before


def test_missing_body_is_422(client: Any, admin_headers: dict[str, str]) -> None:
    response = client.post("/api/patients", headers=admin_headers)
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == "body"


def test_duplicate_patient_is_409_with_existing_id_unless_forced(
    client: Any, admin_headers: dict[str, str]
) -> None:
    body = patient_body()
    first = client.post("/api/patients", json=body, headers=admin_headers).json
    again = dict(body, email=None)
    duplicate = client.post("/api/patients", json=again, headers=admin_headers)
    assert duplicate.status_code == 409
    assert duplicate.json["error"]["details"]["existing_id"] == first["id"]
    forced = client.post("/api/patients?force=true", json=again, headers=admin_headers)
    assert forced.status_code == 201


def test_patch_changes_only_given_fields_and_bumps_version(
    client: Any, admin_headers: dict[str, str]
) -> None:
    created = client.post("/api/patients", json=patient_body(), headers=admin_headers).json
    response = client.patch(
        f"/api/patients/{created['id']}", json={"city": "Berlin"}, headers=admin_headers
    )
    assert response.status_code == 200
    assert response.json["city"] == "Berlin"
    assert response.json["first_name"] == created["first_name"]
    assert response.json["version"] == 2


def test_wrong_status_transition_is_409_with_reason(
    client: Any, admin_headers: dict[str, str]
) -> None:
    created = client.post("/api/patients", json=patient_body(), headers=admin_headers).json
    response = client.patch(
        f"/api/patients/{created['id']}",
        json={"status": "therapy_completed"},
        headers=admin_headers,
    )
    assert response.status_code == 409
    assert "cannot move to 'therapy_completed'" in response.json["error"]["message"]
    assert response.json["error"]["details"]["allowed"] == ["search_cancelled"]
    ok = client.patch(
        f"/api/patients/{created['id']}", json={"status": "search_cancelled"}, headers=admin_headers
    )
    assert ok.json["status"] == "search_cancelled"


@pytest.mark.parametrize("target", ["searching", "in_therapy"])
def test_staff_cannot_patch_a_status_the_search_sets(
    client: Any, admin_headers: dict[str, str], target: str
) -> None:
    created = client.post("/api/patients", json=patient_body(), headers=admin_headers).json
    response = client.patch(
        f"/api/patients/{created['id']}", json={"status": target}, headers=admin_headers
    )
    assert response.status_code == 422
    [detail] = response.json["error"]["details"]
    assert detail["field"] == "status"
    assert detail["allowed"] == ["search_cancelled"]
    assert "staff may set: search_cancelled" in detail["message"]
    unchanged = client.get(f"/api/patients/{created['id']}", headers=admin_headers).json
    assert (unchanged["status"], unchanged["version"]) == ("registered", 1)


def test_status_set_by_the_search_lists_what_staff_may_set_from_there(
    client: Any, admin_headers: dict[str, str], search_started: Callable[[int], None]
) -> None:
    created = client.post("/api/patients", json=patient_body(), headers=admin_headers).json
    url = f"/api/patients/{created['id']}"
    search_started(created["id"])
    into_therapy = client.patch(url, json={"status": "in_therapy"}, headers=admin_headers)
    assert into_therapy.status_code == 422
    assert into_therapy.json["error"]["details"][0]["allowed"] == ["search_cancelled"]
    same = client.patch(url, json={"status": "searching", "city": "Berlin"}, headers=admin_headers)
    assert same.status_code == 200  # sending the current status back changes nothing
    cancelled = client.patch(url, json={"status": "search_cancelled"}, headers=admin_headers)
    assert cancelled.json["status"] == "search_cancelled"
    again = client.patch(url, json={"status": "searching"}, headers=admin_headers)
    assert again.status_code == 422  # a new search starts it again, in matching
    assert again.json["error"]["details"][0]["allowed"] == []


@pytest.mark.parametrize("field", ["last_name", "max_travel_km", "availability", "status"])
def test_patch_null_on_required_field_is_422(
    client: Any, admin_headers: dict[str, str], field: str
) -> None:
    created = client.post("/api/patients", json=patient_body(), headers=admin_headers).json
    response = client.patch(
        f"/api/patients/{created['id']}", json={field: None}, headers=admin_headers
    )
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == field


def test_patch_null_clears_an_optional_field(client: Any, admin_headers: dict[str, str]) -> None:
    created = client.post("/api/patients", json=patient_body(), headers=admin_headers).json
    response = client.patch(
        f"/api/patients/{created['id']}", json={"email": None}, headers=admin_headers
    )
    assert response.status_code == 200
    assert response.json["email"] is None


@pytest.mark.parametrize("patient_id", ["999999999", "99999999999999", "0", "abc"])
def test_unknown_or_impossible_patient_id_is_404(
    client: Any, admin_headers: dict[str, str], patient_id: str
) -> None:
    response = client.get(f"/api/patients/{patient_id}", headers=admin_headers)
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_list_is_paginated_and_filtered_by_status_and_postal_prefix(
    client: Any, admin_headers: dict[str, str], search_started: Callable[[int], None]
) -> None:
    prefix = "987"
    ids = [
        client.post(
            "/api/patients",
            json=patient_body(postal_code=f"{prefix}{n:02d}"),
            headers=admin_headers,
        ).json["id"]
        for n in range(5)
    ]
    search_started(ids[0])
    page1 = client.get(
        f"/api/patients?postal_code_prefix={prefix}&per_page=2&page=1", headers=admin_headers
    ).json
    page3 = client.get(
        f"/api/patients?postal_code_prefix={prefix}&per_page=2&page=3", headers=admin_headers
    ).json
    assert page1["total"] == 5
    assert [item["id"] for item in page1["items"]] == [ids[4], ids[3]]
    assert [item["id"] for item in page3["items"]] == [ids[0]]
    searching = client.get(
        f"/api/patients?postal_code_prefix={prefix}&status=searching", headers=admin_headers
    ).json
    assert [item["id"] for item in searching["items"]] == [ids[0]]


def test_bad_pagination_is_422(client: Any, admin_headers: dict[str, str]) -> None:
    response = client.get("/api/patients?per_page=1000", headers=admin_headers)
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == "per_page"


def test_qualification_lists_every_unmet_criterion(
    client: Any, admin_headers: dict[str, str]
) -> None:
    body = patient_body(
        contract_signed=False, diagnosis=None, availability={"mon": ["09:00-10:00"]}
    )
    created = client.post("/api/patients", json=body, headers=admin_headers).json
    result = client.get(f"/api/patients/{created['id']}/qualification", headers=admin_headers).json
    assert result["qualified"] is False
    assert result["unmet_criteria"] == [
        "contract_not_signed",
        "no_current_f_diagnosis",
        "availability_below_20_hours_per_week",
    ]


def test_openapi_documents_the_validating_schemas(client: Any) -> None:
    spec = client.get("/openapi.json").json
    post = spec["paths"]["/api/patients"]["post"]
    schema_name = post["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[
        -1
    ]
    assert "postal_code" in spec["components"]["schemas"][schema_name]["required"]
    assert "201" in post["responses"] and "422" in post["responses"]
    assert "/api/patients/{patient_id}" in spec["paths"]


def test_request_id_is_echoed_or_assigned(client: Any) -> None:
    echoed = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    assigned = client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert len(assigned.headers["X-Request-ID"]) == 32


def test_json_body_is_accepted_without_content_type(
    client: Any, admin_headers: dict[str, str]
) -> None:
    import json

    response = client.post(
        "/api/patients",
        data=json.dumps(patient_body()),
        headers={**admin_headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201


def test_non_ascii_token_is_401_not_500(client: Any) -> None:
    response = client.get("/api/patients", headers={"Authorization": "Bearer t\u00e9st-token"})
    assert response.status_code == 401


def test_too_long_text_is_422_not_500(client: Any, admin_headers: dict[str, str]) -> None:
    response = client.post(
        "/api/patients", json=patient_body(consent_version="v" * 60), headers=admin_headers
    )
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == "consent_version"


# ---------------------------------------------------------------- found by test_api_fuzz.py


def test_wrong_method_is_405_with_allow_header_and_error_shape(
    client: Any, admin_headers: dict[str, str]
) -> None:
    response = client.delete("/api/patients", headers=admin_headers)
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"birth_date": 0}, "birth_date"),  # was read as a Unix timestamp: 1970-01-01
        ({"consent_at": 1_700_000_000}, "consent_at"),
        ({"max_travel_km": "25"}, "max_travel_km"),
        ({"contract_signed": 1}, "contract_signed"),
        ({"payment_received": "true"}, "payment_received"),
    ],
)
def test_json_value_of_another_type_than_documented_is_422(
    client: Any, admin_headers: dict[str, str], override: dict[str, Any], field: str
) -> None:
    response = client.post("/api/patients", json=patient_body(**override), headers=admin_headers)
    assert response.status_code == 422
    assert [detail["field"] for detail in response.json["error"]["details"]] == [field]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"first_name": "An\u0000na"}, "first_name"),
        ({"city": "Berlin\u0000"}, "city"),
    ],
)
def test_nul_character_is_422_not_500(
    client: Any, admin_headers: dict[str, str], override: dict[str, Any], field: str
) -> None:
    response = client.post("/api/patients", json=patient_body(**override), headers=admin_headers)
    assert response.status_code == 422
    assert response.json["error"]["details"] == [
        {"field": field, "message": "must not contain control characters (found U+0000)"}
    ]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"first_name": "Anna\r\nBcc: x@example.org"}, "first_name"),
        ({"last_name": "Bei\nspiel"}, "last_name"),
        ({"street": "Hauptstr.\t1"}, "street"),
        ({"city": "Ber\x1blin"}, "city"),
        ({"gp_name": "Dr.\x7f Weiss"}, "gp_name"),
        ({"health_insurer": "AOK\x85Nordost"}, "health_insurer"),
        ({"consent_version": "v1\rv2"}, "consent_version"),
    ],
)
def test_control_characters_in_text_are_422_naming_the_field_and_create_nothing(
    client: Any, admin_headers: dict[str, str], override: dict[str, Any], field: str
) -> None:
    before = client.get("/api/patients", headers=admin_headers).json["total"]
    response = client.post("/api/patients", json=patient_body(**override), headers=admin_headers)
    assert response.status_code == 422
    assert [detail["field"] for detail in response.json["error"]["details"]] == [field]
    assert field in response.json["error"]["message"]
    assert client.get("/api/patients", headers=admin_headers).json["total"] == before


def test_control_characters_are_refused_on_patch_too(
    client: Any, admin_headers: dict[str, str]
) -> None:
    created = client.post("/api/patients", json=patient_body(), headers=admin_headers).json
    response = client.patch(
        f"/api/patients/{created['id']}",
        json={"first_name": "Anna\r\nBcc: x@example.org"},
        headers=admin_headers,
    )
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == "first_name"
    fetched = client.get(f"/api/patients/{created['id']}", headers=admin_headers).json
    assert fetched["first_name"] == created["first_name"]


def test_consent_in_the_future_is_422_within_a_few_minutes_of_clock_skew(
    client: Any, admin_headers: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    tomorrow = patient_body(consent_at=(now + timedelta(days=1)).isoformat())
    response = client.post("/api/patients", json=tomorrow, headers=admin_headers)
    assert response.status_code == 422
    assert [detail["field"] for detail in response.json["error"]["details"]] == ["consent_at"]
    skewed = patient_body(consent_at=(now + timedelta(minutes=1)).isoformat())
    created = client.post("/api/patients", json=skewed, headers=admin_headers)
    assert created.status_code == 201
    later = client.patch(
        f"/api/patients/{created.json['id']}",
        json={"consent_at": (now + timedelta(hours=2)).isoformat()},
        headers=admin_headers,
    )
    assert later.status_code == 422
    assert later.json["error"]["details"][0]["field"] == "consent_at"


def test_deeply_nested_json_is_422_not_500(client: Any, admin_headers: dict[str, str]) -> None:
    response = client.post(
        "/api/patients",
        data=b"[" * 100_000 + b"]" * 100_000,
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == "body"


def test_json_body_with_utf8_bom_is_accepted(client: Any, admin_headers: dict[str, str]) -> None:
    import json

    response = client.post(
        "/api/patients",
        data=b"\xef\xbb\xbf" + json.dumps(patient_body()).encode(),
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 201


def test_consent_time_is_stored_in_utc_whatever_its_offset(
    client: Any, admin_headers: dict[str, str]
) -> None:
    # PostgreSQL refuses offsets beyond +-15:59 (this was a 500)
    body = patient_body(consent_at="2026-01-01T10:00:00+23:59")
    response = client.post("/api/patients", json=body, headers=admin_headers)
    assert response.status_code == 201
    assert response.json["consent_at"] == "2025-12-31T10:01:00Z"
    too_early = patient_body(consent_at="0001-01-01T00:00:00+01:00")
    response = client.post("/api/patients", json=too_early, headers=admin_headers)
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == "consent_at"


def test_a_read_records_one_audit_entry_with_its_request_and_a_missing_patient_none(
    client: Any, staff_headers: dict[str, str], database_url: str
) -> None:
    created = client.post("/api/patients", json=patient_body(), headers=staff_headers).json
    found_id, missing_id = uuid.uuid4().hex, uuid.uuid4().hex
    read = client.get(
        f"/api/patients/{created['id']}", headers={**staff_headers, "X-Request-ID": found_id}
    )
    assert read.status_code == 200 and read.json == created
    missing = client.get(
        "/api/patients/2147483000", headers={**staff_headers, "X-Request-ID": missing_id}
    )
    assert missing.status_code == 404
    engine = sa.create_engine(driver_url(database_url))
    try:
        with engine.connect() as connection:
            entries = connection.execute(
                sa.text(
                    "SELECT request_id, actor, actor_role, action, entity_type, entity_id, fields "
                    "FROM patient_service.audit_events WHERE request_id IN (:found, :missing)"
                ),
                {"found": found_id, "missing": missing_id},
            ).all()
    finally:
        engine.dispose()
    assert [tuple(entry) for entry in entries] == [
        (found_id, "staff-test", "staff", "read", "patient", str(created["id"]), [])
    ]


def test_a_reading_unit_of_work_refuses_events(database_url: str) -> None:
    database = Database(database_url, pool_size=1)
    try:
        with database.reading() as uow, pytest.raises(RuntimeError, match="no events"):
            uow.emit(object())
    finally:
        database.dispose()
