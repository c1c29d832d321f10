"""therapist_service REST behaviour: validation, filters, practices, blocking, events."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.handlers import HANDLERS, SUBSCRIPTIONS
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from shared.runtime import ServiceRuntime, relay_forever
from tests.helpers import background, wait_until
from therapist_service.app import create_app
from therapist_service.models import INFRA
from therapist_service.schemas import TOPIC
from therapist_service.settings import TherapistSettings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]


@pytest.fixture
def client(make_settings: Any) -> Any:
    return create_app(make_settings(TherapistSettings)).test_client()


def therapist_body(**overrides: Any) -> dict[str, Any]:
    """A valid therapist with a unique name and email."""
    unique = uuid.uuid4().hex[:10]
    body: dict[str, Any] = {
        "salutation": "Frau",
        "title": "Dr.",
        "first_name": f"Maria{unique}",
        "last_name": "Beispiel",
        "street": "Hauptstr. 1",
        "postal_code": "04109",
        "city": "Leipzig",
        "phone": "0341 1234567",
        "email": f"praxis.{unique}@example.org",
        "website": "https://praxis-beispiel.example.org",
        "phone_hours": {"mon": ["08:00-09:00"], "thu": ["12:00-12:50"]},
        "languages": ["Deutsch", "Englisch"],
        "therapy_methods": ["behavioural", "psychodynamic"],
        "preferred_diagnoses": ["F3", "F40", "f43.1"],
        "patient_age_min": 18,
        "patient_age_max": 65,
    }
    body.update(overrides)
    return body


def _create(client: Any, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/therapists", json=therapist_body(**overrides), headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def _outbox(engine: sa.Engine, therapist_id: int) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [
            row
            for (row,) in connection.execute(
                sa.text(
                    "SELECT envelope FROM therapist_service.outbox WHERE aggregate_id = :id "
                    "ORDER BY id"
                ),
                {"id": str(therapist_id)},
            )
        ]


def test_created_therapist_has_defaults_a_practice_and_one_created_event(
    client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    created = _create(client, admin_headers)
    assert created["status"] == "active" and created["version"] == 1
    assert created["gender"] == "female"  # from the salutation
    assert created["preferred_diagnoses"] == ["F3", "F40", "F43.1"]
    assert created["practice_key"].startswith("p") and len(created["practice_key"]) == 17
    [event] = _outbox(admin_engine, created["id"])
    assert event["event_type"] == "therapist.created"
    payload = event["payload"]
    assert payload["has_email"] is True and payload["practice_key"] == created["practice_key"]
    wire = json.dumps(event)
    for private in (created["email"], created["phone"], created["first_name"]):
        assert private not in wire  # contact data is fetched over REST, never in events


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("postal_code", "0410"),
        ("postal_code", "\uff11\uff12\uff13\uff14\uff15"),  # full-width digits are not a PLZ
        ("phone_hours", {"mon": ["9-10"]}),
        ("phone_hours", {"monday": ["08:00-09:00"]}),
        ("working_hours", {"tue": ["18:00-08:00"]}),
        ("therapy_methods", ["hypnosis"]),
        ("therapy_methods", ["behavioural", "behavioural"]),
        ("preferred_diagnoses", ["G40"]),
        ("patient_age_min", 12),
        ("email", "not-an-address"),
        ("phone", "call me"),
        ("website", "javascript:alert(1)"),
        ("first_name", ""),
        ("last_name", "Anna\r\nBcc: x@example.org"),
    ],
)
def test_invalid_field_is_422_naming_it_and_nothing_is_created(
    client: Any, admin_headers: dict[str, str], field: str, value: Any
) -> None:
    before = client.get("/api/therapists", headers=admin_headers).json["total"]
    response = client.post(
        "/api/therapists", json=therapist_body(**{field: value}), headers=admin_headers
    )
    assert response.status_code == 422, response.json
    fields = {detail["field"].split(".")[0] for detail in response.json["error"]["details"]}
    assert field in fields
    assert client.get("/api/therapists", headers=admin_headers).json["total"] == before


def test_age_range_must_not_be_empty_on_create_and_on_patch(
    client: Any, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/therapists",
        json=therapist_body(patient_age_min=60, patient_age_max=30),
        headers=admin_headers,
    )
    assert response.status_code == 422
    assert "patient_age_min" in response.json["error"]["details"][0]["message"]
    created = _create(client, admin_headers, patient_age_min=30, patient_age_max=40)
    patched = client.patch(
        f"/api/therapists/{created['id']}", json={"patient_age_min": 50}, headers=admin_headers
    )
    assert patched.status_code == 422
    assert patched.json["error"]["details"][0]["field"] == "patient_age_min"


def test_patch_changes_fields_bumps_the_version_and_emits_the_changed_names(
    client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    created = _create(client, admin_headers)
    url = f"/api/therapists/{created['id']}"
    response = client.patch(
        url,
        json={"potentially_available": True, "availability_notes": "ab Januar"},
        headers=admin_headers,
    )
    assert response.status_code == 200
    assert response.json["version"] == 2 and response.json["potentially_available"] is True
    same = client.patch(url, json={"potentially_available": True}, headers=admin_headers)
    assert same.json["version"] == 2  # nothing changed, nothing emitted
    events = _outbox(admin_engine, created["id"])
    assert [e["event_type"] for e in events] == ["therapist.created", "therapist.updated"]
    assert events[1]["payload"]["changed_fields"] == [
        "availability_notes",
        "potentially_available",
    ]
    assert client.patch(url, json={"status": "blocked"}, headers=admin_headers).status_code == 422
    assert client.patch(url, json={"first_name": None}, headers=admin_headers).status_code == 422


def test_therapists_sharing_an_email_in_any_case_form_one_practice(
    client: Any, admin_headers: dict[str, str]
) -> None:
    email = f"Gemeinschaftspraxis.{uuid.uuid4().hex[:8]}@Example.org"
    first = _create(client, admin_headers, email=email)
    second = _create(client, admin_headers, email=email.upper())
    alone = _create(client, admin_headers, email=None)
    assert first["practice_key"] == second["practice_key"]
    assert alone["practice_key"] == f"t{alone['id']}"
    practice = client.get(f"/api/practices/{first['practice_key']}", headers=admin_headers)
    assert practice.status_code == 200
    assert [m["id"] for m in practice.json["members"]] == [first["id"], second["id"]]
    listed = client.get(
        f"/api/therapists?practice_key={first['practice_key']}", headers=admin_headers
    )
    assert listed.json["total"] == 2
    # moving one therapist to another email moves it to another practice
    moved = client.patch(
        f"/api/therapists/{second['id']}",
        json={"email": f"neu.{uuid.uuid4().hex[:8]}@example.org"},
        headers=admin_headers,
    )
    assert moved.json["practice_key"] != first["practice_key"]
    assert client.get("/api/practices/p0000000000000000", headers=admin_headers).status_code == 404
    assert client.get("/api/practices/'%20OR%201=1", headers=admin_headers).status_code == 404


def test_list_filters_and_paginates(client: Any, admin_headers: dict[str, str]) -> None:
    plz = f"9{uuid.uuid4().int % 10000:04d}"
    marker = uuid.uuid4().hex[:8]
    systemic = _create(
        client,
        admin_headers,
        postal_code=plz,
        therapy_methods=["systemic"],
        last_name=f"Zander{marker}",
    )
    _create(
        client,
        admin_headers,
        postal_code=plz,
        therapy_methods=["behavioural"],
        potentially_available=True,
        informed_about_platform=True,
    )
    _create(client, admin_headers, postal_code=plz, therapy_methods=["analytic"])

    def ids(query: str) -> list[int]:
        response = client.get(
            f"/api/therapists?postal_code_prefix={plz}&{query}", headers=admin_headers
        )
        assert response.status_code == 200, response.json
        return [item["id"] for item in response.json["items"]]

    assert len(ids("")) == 3
    assert ids("therapy_method=systemic") == [systemic["id"]]
    assert len(ids("potentially_available=true")) == 1
    assert len(ids("informed_about_platform=false")) == 2
    assert ids(f"q=zander{marker}") == [systemic["id"]]
    assert ids("q=%25%25") == []  # LIKE wildcards are matched literally
    everyone = ids("")
    assert sorted(ids(f"id={everyone[0]}&id={everyone[2]}")) == sorted([everyone[0], everyone[2]])
    too_many = "&".join(f"id={n}" for n in range(1, 102))
    refused = client.get(f"/api/therapists?{too_many}", headers=admin_headers)
    assert refused.status_code == 422 and "id" in str(refused.json)
    page = client.get(
        f"/api/therapists?postal_code_prefix={plz}&per_page=2&page=2", headers=admin_headers
    ).json
    assert (page["total"], page["page"], page["per_page"], len(page["items"])) == (3, 2, 2, 1)
    assert (
        client.get("/api/therapists?therapy_method=hypnosis", headers=admin_headers).status_code
        == 422
    )


def test_block_and_unblock_reach_matching_s_projection(
    client: Any, admin_headers: dict[str, str], make_settings: Any, admin_engine: sa.Engine
) -> None:
    created = _create(client, admin_headers)
    url = f"/api/therapists/{created['id']}"
    blocked = client.post(
        f"{url}/block", json={"reason": "asked not to be contacted"}, headers=admin_headers
    )
    assert blocked.status_code == 200
    assert blocked.json["status"] == "blocked" and blocked.json["blocked_at"]
    again = client.post(f"{url}/block", json={"reason": "twice"}, headers=admin_headers)
    assert again.status_code == 409
    assert client.patch(url, json={"status": "active"}, headers=admin_headers).status_code == 422
    assert client.post(f"{url}/block", json={}, headers=admin_headers).status_code == 422

    relay = ServiceRuntime.build(make_settings(TherapistSettings), INFRA).relay([TOPIC])
    consumer = ServiceRuntime.build(make_settings(MatchingSettings), MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, HANDLERS
    )

    def projected_status() -> str | None:
        with admin_engine.connect() as connection:
            return connection.execute(
                sa.text(
                    "SELECT status FROM matching_service.therapist_projection "
                    "WHERE therapist_id = :id"
                ),
                {"id": created["id"]},
            ).scalar_one_or_none()

    with (
        background(lambda stop: relay_forever(relay, stop, idle_s=0.05)),
        background(consumer.run),
    ):
        wait_until(lambda: projected_status() == "blocked", timeout=60)
        unblocked = client.post(f"{url}/unblock", headers=admin_headers)
        assert unblocked.status_code == 200 and unblocked.json["block_reason"] is None
        wait_until(lambda: projected_status() == "active", timeout=60)
    assert client.post(f"{url}/unblock", headers=admin_headers).status_code == 409
    events = [e["event_type"] for e in _outbox(admin_engine, created["id"])]
    assert events == ["therapist.created", "therapist.blocked", "therapist.unblocked"]


def test_directory_id_is_unique(client: Any, admin_headers: dict[str, str]) -> None:
    directory_id = f"dir-{uuid.uuid4().hex}"
    _create(client, admin_headers, directory_id=directory_id)
    again = client.post(
        "/api/therapists", json=therapist_body(directory_id=directory_id), headers=admin_headers
    )
    assert again.status_code == 409 and again.json["error"]["details"]["existing_id"]


def test_therapist_endpoints_need_a_token(client: Any) -> None:
    assert client.get("/api/therapists").status_code == 401
    assert client.post("/api/therapists", json=therapist_body()).status_code == 401
    assert client.get("/api/practices/t1").status_code == 401
