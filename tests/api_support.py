"""The five service apps against one database of their own, as the API fuzzing and the access
matrix use them: migrated, the admin and service tokens stored, a few rows to reach
(therapists, postal codes, patients matching knows, an active and a paused search), each app
connected as its service's own database role (through PgBouncer when the session runs one)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import flask_restful
import pytest
from flask import Flask
from werkzeug.routing import Rule

from communication_service.app import create_app as create_communication_app
from communication_service.settings import CommunicationSettings
from geocoding_service.app import create_app as create_geocoding_app
from geocoding_service.settings import GeocodingSettings
from matching_service import service as matching_service
from matching_service.app import create_app as create_matching_app
from matching_service.handlers import HANDLERS
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.schemas import PatientSnapshot, SearchStatusChange, TherapistSnapshot
from matching_service.service import apply_patient_snapshot
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.settings import PatientSettings
from shared.cli import ensure_service_token
from shared.db import role_url
from shared.devstack import free_port
from shared.errors import Conflict
from shared.pgbouncer import PgBouncer
from shared.runtime import ServiceRuntime
from shared.web import Operation
from tests.conftest import ADMIN_TOKEN, SERVICE_TOKEN, migrated_database
from tests.helpers import location_resolved
from therapist_service.app import create_app as create_therapist_app
from therapist_service.settings import TherapistSettings

__all__ = [
    "api_database",
    "communication_app",
    "geocoding_app",
    "matching_app",
    "patient_app",
    "service_apps",
    "therapist_app",
]


@pytest.fixture(scope="module")
def api_database(pg_admin_url: str, pgbouncer: PgBouncer | None) -> Iterator[str]:
    """A database per test module: requests made up by the tests never meet other tests' rows."""
    with migrated_database(pg_admin_url, pgbouncer, "api") as url:
        ensure_service_token(url, SERVICE_TOKEN)
        yield url


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def patient_app(make_settings: Any, api_database: str) -> Flask:
    settings = make_settings(
        PatientSettings, database_url=role_url(api_database, "patient_service")
    )
    return create_patient_app(settings)


@pytest.fixture
def therapist_app(make_settings: Any, api_database: str) -> Flask:
    settings = make_settings(
        TherapistSettings, database_url=role_url(api_database, "therapist_service")
    )
    app = create_therapist_app(settings)
    # therapists to read, patch, block and group, so generated ids 1.. reach real rows too
    client = app.test_client()
    for index in range(3):
        body = {"first_name": f"Fuzz{index}", "last_name": "Test", "postal_code": "04109"}
        client.post("/api/therapists", json=body, headers=_admin())
    return app


@pytest.fixture
def geocoding_app(make_settings: Any, api_database: str, tmp_path: Path) -> Flask:
    settings = make_settings(
        GeocodingSettings, database_url=role_url(api_database, "geocoding_service")
    )
    app = create_geocoding_app(settings)
    # postal codes to find, so generated PLZ and pairs reach 200 too, not only 404
    data = tmp_path / "DE.txt"
    data.write_text(
        "".join(
            f"DE\t{code}\tOrt {code}\tSachsen\t13\t\t\t\t\t{51 + n / 10}\t{12 + n / 10}\t4\n"
            for n, code in enumerate(("00000", "04109", "01067", "10115"))
        )
    )
    imported = app.test_client().post(
        "/api/admin/plz-imports", json={"source": str(data)}, headers=_admin()
    )
    assert imported.status_code == 200, imported.json
    return app


def _snapshot(patient_id: int, *, status: str, qualified: bool) -> PatientSnapshot:
    return PatientSnapshot(
        patient_id=patient_id,
        version=1,
        status=status,
        gender="female",
        birth_date=date(1990, 4, 1),
        postal_code="10115",
        diagnosis="F32.1",
        availability={"mon": ["08:00-18:00"], "tue": ["08:00-18:00"]},
        max_travel_km=25,
        travel_mode="transit",
        preferred_therapist_gender="any",
        preferred_therapy_method="any",
        open_to_group_therapy=False,
        qualified=qualified,
        unmet_criteria=[] if qualified else ["contract_not_signed"],
        two_year_rule_flag=False,
    )


def _therapist_snapshot(therapist_id: int) -> TherapistSnapshot:
    return TherapistSnapshot(
        therapist_id=therapist_id,
        version=1,
        status="active",
        gender="female",
        postal_code="04109",
        practice_key=f"p{therapist_id}",
        has_email=True,
        therapy_methods=["behavioural"],
    )


@pytest.fixture
def matching_app(make_settings: Any, api_database: str) -> Flask:
    settings = make_settings(
        MatchingSettings, database_url=role_url(api_database, "matching_service")
    )
    # patients matching knows, so valid searches reach every branch (201, 409, 422), not only 404
    database = ServiceRuntime.build(settings, MATCHING_INFRA).database
    with database.unit_of_work() as uow:
        apply_patient_snapshot(uow, _snapshot(1, status="registered", qualified=True))
        apply_patient_snapshot(uow, _snapshot(2, status="registered", qualified=False))
        apply_patient_snapshot(uow, _snapshot(3, status="in_therapy", qualified=True))
        for patient_id in (4, 5):
            apply_patient_snapshot(uow, _snapshot(patient_id, status="registered", qualified=True))
        for patient_id in (1, 2, 3, 4, 5):
            location = location_resolved("patient", patient_id)
            HANDLERS[location.event_type](uow, location)
        # a therapist to exclude
        matching_service.apply_therapist_snapshot(uow, _therapist_snapshot(1))
        uow.commit()
    # an active and a paused search (ids 1 and 2), so the search routes reach past their 404
    for patient_id, paused in ((4, False), (5, True)):
        try:
            search = matching_service.start_search(
                database.unit_of_work(), patient_id, default_budget=5
            )
        except Conflict:
            continue  # started for an earlier test of this module
        if paused:
            matching_service.change_search_status(
                database.unit_of_work(), search.id, SearchStatusChange(status="paused")
            )
    database.dispose()
    return create_matching_app(settings)


@pytest.fixture
def communication_app(make_settings: Any, api_database: str) -> Flask:
    settings = make_settings(
        CommunicationSettings,
        database_url=role_url(api_database, "communication_service"),
        # nobody listens there: the call list shows no names, nothing fails
        therapist_service_url=f"http://127.0.0.1:{free_port()}",
    )
    return create_communication_app(settings)


@pytest.fixture
def service_apps(
    patient_app: Flask,
    therapist_app: Flask,
    matching_app: Flask,
    communication_app: Flask,
    geocoding_app: Flask,
) -> dict[str, Flask]:
    """All five apps by service name."""
    return {
        "patient_service": patient_app,
        "therapist_service": therapist_app,
        "matching_service": matching_app,
        "communication_service": communication_app,
        "geocoding_service": geocoding_app,
    }


def assert_error_shape(body: Any) -> None:
    """`{"error": {"code": str, "message": str, "details": ...}}`: every error of every service."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body


MADE_UP = {"id": "2147480000", "int": "2147480000"}  # else a word
CONVERTER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def made_up_path(rule: str) -> str:
    """A route rule with made-up values: ids that may exist in no table, words."""
    return CONVERTER.sub(lambda m: MADE_UP.get(m.group(1) or "", "zz"), rule)


def route_table(app: Flask) -> list[tuple[Rule, str, Operation | None]]:
    """Every route and method of an app (HEAD and OPTIONS aside, which werkzeug adds), with
    its `@operation`, or None for a route that is no operation."""
    table = []
    for rule in app.url_map.iter_rules():
        resource = getattr(app.view_functions[rule.endpoint], "view_class", None)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op = None
            if resource is not None and issubclass(resource, flask_restful.Resource):
                op = getattr(getattr(resource, method.lower(), None), "operation", None)
            table.append((rule, method, op))
    return table
