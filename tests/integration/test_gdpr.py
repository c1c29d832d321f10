"""Health data done right: the audit log, the data export across services, erasure reaching
every service, and the patient's therapist exclusions reaching matching.

Events are applied through each service's own handlers (as their workers would); the other
services' parts of the export are read over real HTTP with the service token."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.app import create_app as create_matching_app
from matching_service.service.market import load_searches
from patient_service.app import create_app as create_patient_app
from shared.auth import Role, TokenStore, issue_token
from shared.db import Database, role_url
from shared.settings import SERVICES
from tests.conftest import SERVICE_TOKEN
from tests.gdpr_support import Services, outbox_events, serving
from tests.helpers import location_resolved, patient_body
from tests.matching_support import insert_inquiry, new_id, therapist_event

pytestmark = pytest.mark.integration

TEXT_TYPES = ("text", "character varying", "json", "jsonb")


@pytest.fixture(scope="module")
def services(database_url: str) -> Iterator[Services]:
    with serving(database_url) as services:
        yield services


@pytest.fixture
def patients(services: Services) -> Any:
    return create_patient_app(services.patient_settings).test_client()


@pytest.fixture
def matching(services: Services) -> Any:
    return create_matching_app(services.matching_settings).test_client()


def _token(database_url: str, role: Role, name: str) -> dict[str, str]:
    database = Database(database_url, pool_size=1)
    issued = issue_token(name, role)
    for schema in SERVICES:
        from shared.db import schema_metadata
        from shared.infrastructure import define_infrastructure

        TokenStore(database, define_infrastructure(schema_metadata(schema))).store(issued)
    database.dispose()
    return {"Authorization": f"Bearer {issued.token}"}


@pytest.fixture(scope="module")
def staff_headers(database_url: str) -> dict[str, str]:
    return _token(database_url, Role.STAFF, "staff-gdpr")


SERVICE_HEADERS = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


def _found(engine: sa.Engine, needles: list[str]) -> list[str]:
    """Every `schema.table.column` (text and JSON columns of every service) holding a needle."""
    hits = []
    with engine.connect() as connection:
        columns = connection.execute(
            sa.text(
                "SELECT table_schema, table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = ANY(:schemas) AND data_type = ANY(:types)"
            ),
            {"schemas": list(SERVICES), "types": list(TEXT_TYPES)},
        ).all()
        for schema, table, column in columns:
            for needle in needles:
                found = connection.execute(
                    sa.text(
                        f'SELECT count(*) FROM {schema}."{table}" '
                        f'WHERE "{column}"::text ILIKE :needle'
                    ),
                    {"needle": f"%{needle}%"},
                ).scalar_one()
                if found:
                    hits.append(f"{schema}.{table}.{column}")
    return sorted(set(hits))


def test_register_change_read_export_erase_and_the_audit_log_tells_who(
    services: Services,
    patients: Any,
    matching: Any,
    admin_engine: sa.Engine,
    admin_headers: dict[str, str],
    staff_headers: dict[str, str],
) -> None:
    # a birth date no other test's patient has (they use 1990-04-01), in 1990 as asserted below
    born = date(1990, 1, 1) + timedelta(days=100 + new_id() % 250)
    body = patient_body(
        last_name=f"Gdpr{new_id()}", phone="030 5550123", birth_date=born.isoformat()
    )
    name, email = body["first_name"], body["email"]
    created = patients.post("/api/patients", json=body, headers=staff_headers)
    assert created.status_code == 201, created.json
    patient_id = created.json["id"]
    assert (
        patients.patch(
            f"/api/patients/{patient_id}", json={"city": "Berlin"}, headers=staff_headers
        ).status_code
        == 200
    )
    assert patients.get(f"/api/patients/{patient_id}", headers=admin_headers).status_code == 200

    # the other services learn of the patient (through their own handlers)
    for envelope in outbox_events(admin_engine, "patient_service", patient_id):
        services.apply("matching_service", envelope)
        services.apply("geocoding_service", envelope)
    services.apply("matching_service", location_resolved("patient", patient_id))
    therapist_id, other_therapist = new_id(), new_id()
    services.apply("matching_service", therapist_event(therapist_id))
    services.apply("matching_service", therapist_event(other_therapist))
    search = matching.post(
        "/api/patient-searches", json={"patient_id": patient_id}, headers=admin_headers
    )
    assert search.status_code == 201, search.json
    search_id = search.json["id"]
    excluded = matching.post(
        f"/api/patient-searches/{search_id}/exclusions",
        json={"therapist_id": other_therapist, "reason": f"{name} knows the therapist"},
        headers=staff_headers,
    )
    assert excluded.status_code in (200, 201), excluded.json
    inquiry_id = insert_inquiry(admin_engine, therapist_id, [search_id], status="unsent")
    with admin_engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE matching_service.inquiries SET notes = :n WHERE id = :i"),
            {"n": f"therapist asked about {name}", "i": inquiry_id},
        )
    for envelope in outbox_events(admin_engine, "matching_service", search_id, "search."):
        services.apply("communication_service", envelope)
    with admin_engine.begin() as connection:  # the message as sending renders it
        rendered = connection.execute(
            sa.text(
                "UPDATE communication_service.emails SET to_address = :e, body_text = :b, "
                "subject = 'Ihre Suche' WHERE patient_id = :p RETURNING id"
            ),
            {"e": email, "b": f"Hallo {name}, ...", "p": patient_id},
        ).all()
    assert rendered, "communication queued no message to the patient"

    # the patient's exclusion reaches matching's projection and every search it plans
    excluded_therapist = new_id()
    exclusion = patients.post(
        f"/api/patients/{patient_id}/exclusions",
        json={"therapist_id": excluded_therapist, "reason": "former colleague"},
        headers=staff_headers,
    )
    assert exclusion.status_code == 201, exclusion.json
    assert [e["therapist_id"] for e in exclusion.json["excluded_therapists"]] == [
        excluded_therapist
    ]
    for envelope in outbox_events(admin_engine, "patient_service", patient_id)[-1:]:
        assert envelope.payload["excluded_therapist_ids"] == [excluded_therapist]
        services.apply("matching_service", envelope)
    with services.matching_db.session() as session:
        (planned,) = load_searches(session, search_ids=[search_id])
    assert excluded_therapist in planned.excluded_therapist_ids

    assert _found(admin_engine, [name]) != []

    # export: admin only; every service's part
    assert (
        patients.get(f"/api/patients/{patient_id}/export", headers=staff_headers).status_code == 403
    )
    export = patients.get(f"/api/patients/{patient_id}/export", headers=admin_headers)
    assert export.status_code == 200, export.json
    assert export.json["missing"] == []
    parts = export.json["services"]
    assert set(parts) == {"matching_service", "communication_service", "geocoding_service"}
    assert [s["id"] for s in parts["matching_service"]["searches"]] == [search_id]
    assert parts["matching_service"]["inquiries"][0]["inquiry"]["id"] == inquiry_id
    assert any(e["patient_id"] == patient_id for e in parts["communication_service"]["emails"])
    assert parts["geocoding_service"]["location"]["entity_id"] == patient_id
    assert export.json["patient"]["email"] == email

    # erasure: admin only; idempotent
    assert patients.delete(f"/api/patients/{patient_id}", headers=staff_headers).status_code == 403
    erased = patients.delete(f"/api/patients/{patient_id}", headers=admin_headers)
    assert erased.status_code == 200, erased.json
    assert erased.json["status"] == "erased"
    assert erased.json["birth_date"] == "1990-01-01"
    again = patients.delete(f"/api/patients/{patient_id}", headers=admin_headers)
    assert again.status_code == 200 and again.json == erased.json
    events = [e for e in outbox_events(admin_engine, "patient_service", patient_id)]
    erasures = [e for e in events if e.event_type == "patient.erased"]
    assert len(erasures) == 1 and erasures[0].payload == {"patient_id": patient_id}
    for service in ("matching_service", "communication_service", "geocoding_service"):
        services.apply(service, erasures[0])
        services.apply(service, erasures[0])  # a redelivery changes nothing

    assert _found(admin_engine, [name, email, "030 5550123", body["birth_date"]]) == []
    export = patients.get(f"/api/patients/{patient_id}/export", headers=admin_headers)
    assert export.status_code == 200 and export.json["missing"] == []
    text = json.dumps(export.json)
    assert name not in text and email not in text

    # statistics still count the patient: the search and the inquiry's sizes stay
    with admin_engine.connect() as connection:
        search_row = connection.execute(
            sa.text("SELECT status FROM matching_service.patient_searches WHERE id = :s"),
            {"s": search_id},
        ).one()
        inquiry = connection.execute(
            sa.text(
                "SELECT original_size, current_size FROM matching_service.inquiries WHERE id = :i"
            ),
            {"i": inquiry_id},
        ).one()
        projection = connection.execute(
            sa.text(
                "SELECT status, birth_date FROM matching_service.patient_projection "
                "WHERE patient_id = :p"
            ),
            {"p": patient_id},
        ).one()
    assert search_row.status == "cancelled"
    assert (inquiry.original_size, inquiry.current_size) == (1, 0)
    assert projection.status == "erased" and projection.birth_date.isoformat() == "1990-01-01"
    cancelled = outbox_events(admin_engine, "matching_service", search_id, "search.")
    assert cancelled[-1].event_type == "search.cancelled"

    # the audit log tells who did each step, and never a value
    log = patients.get(
        f"/api/audit-events?entity_type=patient&entity_id={patient_id}&per_page=100",
        headers=admin_headers,
    )
    assert log.status_code == 200, log.json
    steps = [(e["action"], e["actor"]) for e in reversed(log.json["items"])]
    assert steps[0] == ("create", "staff-gdpr")
    assert ("update", "staff-gdpr") in steps
    assert ("read", "bootstrap-admin") in steps
    assert ("export", "bootstrap-admin") in steps
    assert ("erase", "bootstrap-admin") in steps
    assert next(e for e in log.json["items"] if e["action"] == "erase")["fields"]
    update = [e for e in log.json["items"] if e["action"] == "update"][-1]  # the first
    assert update["fields"] == ["city"] and update["actor_role"] == "staff"
    assert update["request_id"]
    everything = json.dumps(log.json)
    assert name not in everything and email not in everything and "Berlin" not in everything
    for service in ("matching_service", "communication_service", "geocoding_service"):
        with admin_engine.connect() as connection:
            actions = connection.execute(
                sa.text(
                    f"SELECT action FROM {service}.audit_events "
                    "WHERE entity_type = 'patient' AND entity_id = :p"
                ),
                {"p": str(patient_id)},
            ).scalars()
            assert "erase" in list(actions), service
    with admin_engine.connect() as connection:
        search_steps = connection.execute(
            sa.text(
                "SELECT action, actor FROM matching_service.audit_events "
                "WHERE entity_type = 'patient_search' AND entity_id = :s ORDER BY id"
            ),
            {"s": str(search_id)},
        ).all()
    assert [tuple(row) for row in search_steps] == [("create", "bootstrap-admin")]


def test_export_names_a_part_it_could_not_fetch(
    services: Services, database_url: str, admin_headers: dict[str, str]
) -> None:
    settings = services.patient_settings.model_copy(
        update={"geocoding_service_url": "http://127.0.0.1:9"}
    )
    client = create_patient_app(settings).test_client()
    created = client.post("/api/patients", json=patient_body(), headers=admin_headers)
    export = client.get(f"/api/patients/{created.json['id']}/export", headers=admin_headers)
    assert export.status_code == 200, export.json
    assert export.json["missing"] == ["geocoding_service"]
    assert set(export.json["services"]) == {"matching_service", "communication_service"}
    assert client.get("/api/patients/2147483647/export", headers=admin_headers).status_code == 404
    archive = client.get(
        f"/api/patients/{created.json['id']}/export?format=zip", headers=admin_headers
    )
    assert archive.status_code == 200 and archive.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.data)) as opened:
        (name,) = opened.namelist()
        document = json.loads(opened.read(name))
    assert document["patient_id"] == created.json["id"]
    assert document["missing"] == ["geocoding_service"]
    bad = client.get(f"/api/patients/{created.json['id']}/export?format=pdf", headers=admin_headers)
    assert bad.status_code == 422
    assert client.delete("/api/patients/2147483647", headers=admin_headers).status_code == 404


@pytest.mark.parametrize("url", ["matching_service", "communication_service", "geocoding_service"])
def test_data_parts_are_for_admins_and_the_service_token_only(
    services: Services, url: str, staff_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    import requests

    base = getattr(services.patient_settings, f"{url}_url")
    path = f"{base}/api/patients/{new_id()}/data"
    assert requests.get(path, headers=SERVICE_HEADERS, timeout=10).status_code == 200
    assert requests.get(path, headers=admin_headers, timeout=10).status_code == 200
    assert requests.get(path, headers=staff_headers, timeout=10).status_code == 403
    audit = f"{base}/api/audit-events"
    assert requests.get(audit, headers=admin_headers, timeout=10).status_code == 200
    assert requests.get(audit, headers=staff_headers, timeout=10).status_code == 403
    assert requests.get(audit, headers=SERVICE_HEADERS, timeout=10).status_code == 403


def test_exclusions_are_permanent_per_patient_and_refused_after_erasure(
    patients: Any, staff_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    patient_id = patients.post("/api/patients", json=patient_body(), headers=staff_headers).json[
        "id"
    ]
    url = f"/api/patients/{patient_id}/exclusions"
    first = patients.post(url, json={"therapist_id": 7, "reason": "r"}, headers=staff_headers)
    assert first.status_code == 201
    assert first.json["excluded_therapists"][0]["reason"] == "r"
    duplicate = patients.post(url, json={"therapist_id": 7, "reason": "r"}, headers=staff_headers)
    assert duplicate.status_code == 409
    assert duplicate.json["error"]["code"] == "already_excluded"
    bad = patients.post(url, json={"therapist_id": "x"}, headers=staff_headers)
    assert bad.status_code == 422
    assert {d["field"] for d in bad.json["error"]["details"]} == {"therapist_id", "reason"}
    assert patients.delete(f"{url}/7", headers=staff_headers).status_code == 204
    assert patients.delete(f"{url}/7", headers=staff_headers).status_code == 404
    assert (
        patients.post(
            "/api/patients/2147483647/exclusions",
            json={"therapist_id": 7, "reason": "r"},
            headers=staff_headers,
        ).status_code
        == 404
    )
    assert patients.delete(f"/api/patients/{patient_id}", headers=admin_headers).status_code == 200
    assert (
        patients.post(url, json={"therapist_id": 8, "reason": "r"}, headers=staff_headers).json[
            "error"
        ]["code"]
        == "patient_erased"
    )
    changed = patients.patch(
        f"/api/patients/{patient_id}", json={"city": "Köln"}, headers=staff_headers
    )
    assert changed.status_code == 409
    erase = patients.patch(
        f"/api/patients/{patient_id}", json={"status": "erased"}, headers=staff_headers
    )
    assert erase.status_code in (409, 422)


def test_patient_search_finds_a_part_of_either_name_across_the_space_and_of_the_email(
    patients: Any, staff_headers: dict[str, str]
) -> None:
    marker = f"xq{new_id()}"
    body = patient_body(
        first_name=f"Jorg{marker}", last_name=f"Olmann{marker}", email=f"j.{marker}@example.org"
    )
    patient_id = patients.post("/api/patients", json=body, headers=staff_headers).json["id"]

    def found(text: str) -> list[int]:
        response = patients.get(
            "/api/patients", query_string={"search": text}, headers=staff_headers
        )
        assert response.status_code == 200, response.json
        return [p["id"] for p in response.json["items"]]

    assert found(f"jorg{marker}") == [patient_id]  # the first name, in any case
    assert found(f"OLMANN{marker}") == [patient_id]  # the last name
    assert found(f"{marker} olm") == [patient_id]  # across the space between them
    assert found(f"j.{marker}@") == [patient_id]  # the email
    assert found(f"{marker}olmann") == []  # no space: not the full name
    assert found(f"{marker}%") == []  # % and _ are the characters themselves
    assert found(f"{marker}_") == []


def test_patient_list_search_sort_and_range_and_the_search_is_audited(
    patients: Any, admin_engine: sa.Engine, staff_headers: dict[str, str]
) -> None:
    marker = f"zq{new_id()}"
    ids = []
    for last in ("Zeta", "Alpha"):
        body = patient_body(last_name=f"{last}{marker}")
        ids.append(patients.post("/api/patients", json=body, headers=staff_headers).json["id"])
    found = patients.get(
        f"/api/patients?search={marker.upper()}&sort=last_name", headers=staff_headers
    )
    assert found.status_code == 200, found.json
    assert [p["id"] for p in found.json["items"]] == [ids[1], ids[0]]
    newest = patients.get(f"/api/patients?search={marker}", headers=staff_headers)
    assert [p["id"] for p in newest.json["items"]] == [ids[1], ids[0]]
    oldest = patients.get(f"/api/patients?search={marker}&sort=created_at", headers=staff_headers)
    assert [p["id"] for p in oldest.json["items"]] == ids
    email = patients.get(f"/api/patients/{ids[0]}", headers=staff_headers).json["email"]
    by_email = patients.get(f"/api/patients?search={email}", headers=staff_headers)
    assert [p["id"] for p in by_email.json["items"]] == [ids[0]]
    created = found.json["items"][0]["created_at"]
    later = patients.get(
        "/api/patients",
        query_string={"search": marker, "created_from": created},
        headers=staff_headers,
    )
    assert [p["id"] for p in later.json["items"]] == [ids[1]]
    naive = patients.get("/api/patients?created_from=2026-01-01T00:00:00", headers=staff_headers)
    assert naive.status_code == 422
    assert (
        patients.get(f"/api/patients?search={marker}", headers=SERVICE_HEADERS).status_code == 403
    )
    with admin_engine.connect() as connection:
        reads = connection.execute(
            sa.text(
                "SELECT count(*) FROM patient_service.audit_events WHERE action = 'read' "
                "AND entity_id = :p AND fields = '[\"search\"]'::jsonb"
            ),
            {"p": str(ids[0])},
        ).scalar_one()
    assert reads >= 4
    symptoms = patients.get("/api/symptoms", headers=staff_headers)
    assert symptoms.status_code == 200 and "low_mood" in symptoms.json["symptoms"]


def test_audit_log_filters_and_pages(patients: Any, admin_headers: dict[str, str]) -> None:
    patient_id = patients.post("/api/patients", json=patient_body(), headers=admin_headers).json[
        "id"
    ]
    for _ in range(3):
        patients.get(f"/api/patients/{patient_id}", headers=admin_headers)
    page = patients.get(
        "/api/audit-events",
        query_string={
            "entity_type": "patient",
            "entity_id": str(patient_id),
            "action": "read",
            "actor": "bootstrap-admin",
            "per_page": 2,
            "occurred_from": "2020-01-01T00:00:00Z",
        },
        headers=admin_headers,
    )
    assert page.status_code == 200, page.json
    assert page.json["total"] == 3 and len(page.json["items"]) == 2
    assert patients.get("/api/audit-events?action=delete", headers=admin_headers).status_code == 422
    future = patients.get(
        "/api/audit-events",
        query_string={"entity_id": str(patient_id), "occurred_from": "2999-01-01T00:00:00Z"},
        headers=admin_headers,
    )
    assert future.json["total"] == 0


def test_the_service_role_may_only_insert_and_read_the_audit_log(database_url: str) -> None:
    for service in SERVICES:
        engine = sa.create_engine(
            role_url(database_url, service).replace("postgresql://", "postgresql+psycopg2://", 1)
        )
        with engine.connect() as connection:
            connection.execute(
                sa.text(
                    f"INSERT INTO {service}.audit_events (actor, actor_role, action, entity_type,"
                    " entity_id) VALUES ('t', 'system', 'read', 'test', '1')"
                )
            )
            connection.execute(sa.text(f"SELECT count(*) FROM {service}.audit_events"))
            connection.rollback()
            for statement in (
                f"UPDATE {service}.audit_events SET actor = 'x'",
                f"DELETE FROM {service}.audit_events",
                f"TRUNCATE {service}.audit_events",
            ):
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    connection.execute(sa.text(statement))
                connection.rollback()
        engine.dispose()


def test_token_commands_are_audited_in_every_schema(
    database_url: str, admin_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.cli import main

    name = f"audited-{new_id()}"
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["tokens", "create", "--name", name, "--role", "staff"]) == 0
    assert main(["tokens", "revoke", name]) == 0
    for schema in SERVICES:
        with admin_engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    f"SELECT action, actor FROM {schema}.audit_events "
                    "WHERE entity_type = 'api_token' AND entity_id = :n ORDER BY id"
                ),
                {"n": name},
            ).all()
        assert [tuple(row) for row in rows] == [("token_create", "cli"), ("token_revoke", "cli")]


def test_a_therapist_the_patient_excluded_is_never_planned_nor_placed(
    services: Services, matching: Any, admin_headers: dict[str, str]
) -> None:
    from tests.matching_support import location_event, patient_event

    excluded, other = new_id(), new_id()
    for therapist in (excluded, other):
        services.apply("matching_service", therapist_event(therapist))
        services.apply("matching_service", location_event("therapist", therapist))
    patient_id = new_id()
    services.apply("matching_service", patient_event(patient_id))
    services.apply("matching_service", location_event("patient", patient_id))
    search = matching.post(
        "/api/patient-searches", json={"patient_id": patient_id}, headers=admin_headers
    )
    assert search.status_code == 201, search.json
    search_id = search.json["id"]
    # the exclusion arrives after the search started: it holds for that search too
    services.apply(
        "matching_service", patient_event(patient_id, 2, excluded_therapist_ids=[excluded])
    )
    with services.matching_db.session() as session:
        (planned,) = load_searches(session, search_ids=[search_id])
    assert planned.excluded_therapist_ids == frozenset({excluded})
    url = f"/api/patient-searches/{search_id}/placements"
    refused = matching.post(url, json={"therapist_id": excluded}, headers=admin_headers)
    assert refused.status_code == 409, refused.json
    assert refused.json["error"]["details"]["rule"] == "excluded_therapist"
    placed = matching.post(url, json={"therapist_id": other}, headers=admin_headers)
    assert placed.status_code in (200, 201), placed.json


def test_communication_forgets_the_patient_in_notices_offers_and_calls(
    services: Services, admin_engine: sa.Engine
) -> None:
    from patient_service.schemas import PATIENT_ERASED

    patient_id, other_patient = new_id(), new_id()
    search_id, other_search, therapist_id, inquiry_id = new_id(), new_id(), new_id(), new_id()
    ref, other_ref = f"PS-{search_id}", f"PS-{other_search}"
    emails = {
        "inquiry": {
            "patients": [
                {"patient_id": patient_id, "search_id": search_id, "reference": ref},
                {"patient_id": other_patient, "search_id": other_search, "reference": other_ref},
            ]
        },
        "withdrawal": {"inquiry_id": inquiry_id, "reference": ref},
        "conflict": {"patients": [{"reference": other_ref, "offers": [ref, "PS-1"]}]},
    }
    with admin_engine.begin() as connection:
        for kind, context in emails.items():
            connection.execute(
                sa.text(
                    "INSERT INTO communication_service.emails (kind, send_key, therapist_id, "
                    "inquiry_id, status, context, body_text) VALUES (:k, :s, :t, :i, 'sent', "
                    "CAST(:c AS jsonb), :b)"
                ),
                {
                    "k": kind,
                    "s": f"{kind}:{inquiry_id}:test",
                    "t": therapist_id,
                    "i": inquiry_id,
                    "c": json.dumps(context),
                    "b": f"about {ref}",
                },
            )
        connection.execute(
            sa.text(
                "INSERT INTO communication_service.phone_calls (therapist_id, inquiry_id, "
                "purpose, scheduled_at, patient_references, notes) VALUES (:t, :i, 'inquiry', "
                "now() + interval '400 days' + make_interval(secs => :t % 100000), "
                "CAST(:r AS jsonb), 'she said the patient ...')"
            ),
            {"t": therapist_id, "i": inquiry_id, "r": json.dumps([ref, other_ref])},
        )
    erased = PATIENT_ERASED.build(
        producer="patient_service", aggregate_id=patient_id, payload={"patient_id": patient_id}
    )
    services.apply("communication_service", erased)
    services.apply("communication_service", erased)
    with admin_engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT kind, context, body_text FROM communication_service.emails "
                "WHERE inquiry_id = :i ORDER BY kind"
            ),
            {"i": inquiry_id},
        ).all()
        call = connection.execute(
            sa.text(
                "SELECT patient_references, notes FROM communication_service.phone_calls "
                "WHERE inquiry_id = :i"
            ),
            {"i": inquiry_id},
        ).one()
    assert all(row.body_text is None for row in rows)
    assert ref not in json.dumps([row.context for row in rows])
    by_kind = {row.kind: row.context for row in rows}
    assert by_kind["inquiry"]["patients"][0]["patient_id"] == other_patient
    assert by_kind["conflict"]["patients"][0]["offers"] == ["PS-1"]
    assert call.patient_references == [other_ref] and call.notes is None
