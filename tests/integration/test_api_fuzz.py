"""Property-based API fuzzing: schemathesis against each service's own `/openapi.json`.

The OpenAPI document is built from the pydantic models that validate requests, so requests
generated from it - valid ones and, in negative mode, ones that break it - probe the whole
path: auth, validation, use case, rendering. Whatever comes in, the answer is never a 5xx,
every 4xx has the platform's error shape, and statuses and bodies match the document.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis import Case, CheckContext, Response

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
from shared.cli import ensure_bootstrap_admin
from shared.db import role_url
from shared.devstack import drop_database, ensure_database, free_port
from shared.errors import Conflict
from shared.migrations import upgrade_all
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings
from tests.conftest import ADMIN_TOKEN, ANSWER_LINK_SECRET, SERVICE_TOKEN
from tests.helpers import location_resolved
from therapist_service.app import create_app as create_therapist_app
from therapist_service.settings import TherapistSettings

pytestmark = pytest.mark.integration

# Reproducible in CI: a fixed seed, derandomized Hypothesis, no example database on disk.
FUZZ_CONFIG: dict[str, Any] = {
    "seed": 20260501,
    "generation": {
        "mode": "all",  # valid requests and requests that break the schema
        "max-examples": 30,
        "deterministic": True,
        "database": "none",
    },
    "auth": {"openapi": {"bearerAuth": {"bearer": ADMIN_TOKEN}}},
    # every built-in check runs (not_a_server_error, status_code_conformance,
    # response_schema_conformance, negative_data_rejection, ignored_auth, ...) but one:
    "checks": {
        # a valid request may still break a rule JSON Schema cannot express (adult birth
        # date, time ranges, ...): its 422 is correct, so acceptance is not asserted
        "positive_data_acceptance": {"enabled": False},
    },
}


def _served_schema(
    create_app: Callable[[Any], Flask], settings_cls: type[ServiceSettings]
) -> schemathesis.BaseSchema:
    """The OpenAPI document the service serves, read at collection time.

    Serving `/openapi.json` touches neither database nor broker, so an app with unused
    connection settings suffices; the requests go to a connected app (`case.call(app=...)`).
    (schemathesis 4.32's lazy `pytest.from_fixture` loader reads `Node._nodeid`, which
    pytest 9.2 no longer has.)
    """
    secrets = {"service_token": SERVICE_TOKEN, "answer_link_secret": ANSWER_LINK_SECRET}
    required = {name: value for name, value in secrets.items() if name in settings_cls.model_fields}
    unused = settings_cls(
        database_url="postgresql://unused@127.0.0.1:1/unused", log_json=False, **required
    )
    return schemathesis.openapi.from_wsgi(
        "/openapi.json", create_app(unused), config=schemathesis.Config.from_dict(FUZZ_CONFIG)
    )


PATIENT_API = _served_schema(create_patient_app, PatientSettings)
MATCHING_API = _served_schema(create_matching_app, MatchingSettings)
THERAPIST_API = _served_schema(create_therapist_app, TherapistSettings)
GEOCODING_API = _served_schema(create_geocoding_app, GeocodingSettings)
COMMUNICATION_API = _served_schema(create_communication_app, CommunicationSettings)


@pytest.fixture(scope="module")
def fuzz_database(pg_admin_url: str) -> Iterator[str]:
    """A database of its own: fuzzed rows never meet the other tests' assertions."""
    name = f"fuzz_{uuid.uuid4().hex[:10]}"
    url = ensure_database(pg_admin_url, name)
    upgrade_all(url)
    ensure_bootstrap_admin(url, ADMIN_TOKEN)  # else every fuzzed request stops at 401
    yield url
    drop_database(pg_admin_url, name)


def _connected(app: Flask, schema: schemathesis.BaseSchema) -> Flask:
    assert app.test_client().get("/openapi.json").json == schema.raw_schema
    return app


@pytest.fixture
def patient_app(make_settings: Any, fuzz_database: str) -> Flask:
    settings = make_settings(
        PatientSettings, database_url=role_url(fuzz_database, "patient_service")
    )
    return _connected(create_patient_app(settings), PATIENT_API)


@pytest.fixture
def therapist_app(make_settings: Any, fuzz_database: str) -> Flask:
    settings = make_settings(
        TherapistSettings, database_url=role_url(fuzz_database, "therapist_service")
    )
    app = _connected(create_therapist_app(settings), THERAPIST_API)
    # therapists to read, patch, block and group, so generated ids 1.. reach real rows too
    client = app.test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for index in range(3):
        body = {"first_name": f"Fuzz{index}", "last_name": "Test", "postal_code": "04109"}
        client.post("/api/therapists", json=body, headers=headers)
    return app


@pytest.fixture
def geocoding_app(make_settings: Any, fuzz_database: str, tmp_path: Path) -> Flask:
    settings = make_settings(
        GeocodingSettings, database_url=role_url(fuzz_database, "geocoding_service")
    )
    app = _connected(create_geocoding_app(settings), GEOCODING_API)
    # postal codes to find, so generated PLZ and pairs reach 200 too, not only 404
    data = tmp_path / "DE.txt"
    data.write_text(
        "".join(
            f"DE\t{code}\tOrt {code}\tSachsen\t13\t\t\t\t\t{51 + n / 10}\t{12 + n / 10}\t4\n"
            for n, code in enumerate(("00000", "04109", "01067", "10115"))
        )
    )
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    imported = app.test_client().post(
        "/api/admin/plz-imports", json={"source": str(data)}, headers=headers
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


@pytest.fixture
def matching_app(make_settings: Any, fuzz_database: str) -> Flask:
    settings = make_settings(
        MatchingSettings, database_url=role_url(fuzz_database, "matching_service")
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
            continue  # started for an earlier operation of this module
        if paused:
            matching_service.change_search_status(
                database.unit_of_work(), search.id, SearchStatusChange(status="paused")
            )
    database.dispose()
    return _connected(create_matching_app(settings), MATCHING_API)


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


def error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx body is `{"error": {"code": str, "message": str, "details": ...}}`."""
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    return True


# one app serves every generated request of an operation (it holds no per-request state)
shared_app = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@PATIENT_API.parametrize()
@shared_app
def test_patient_api_never_fails_with_5xx_and_keeps_the_error_shape(
    case: Case, patient_app: Flask
) -> None:
    response = case.call_and_validate(app=patient_app, additional_checks=[error_shape])
    assert response.status_code < 500


@MATCHING_API.parametrize()
@shared_app
def test_matching_api_never_fails_with_5xx_and_keeps_the_error_shape(
    case: Case, matching_app: Flask
) -> None:
    response = case.call_and_validate(app=matching_app, additional_checks=[error_shape])
    assert response.status_code < 500


@THERAPIST_API.parametrize()
@shared_app
def test_therapist_api_never_fails_with_5xx_and_keeps_the_error_shape(
    case: Case, therapist_app: Flask
) -> None:
    response = case.call_and_validate(app=therapist_app, additional_checks=[error_shape])
    assert response.status_code < 500


@GEOCODING_API.parametrize()
@shared_app
def test_geocoding_api_never_fails_with_5xx_and_keeps_the_error_shape(
    case: Case, geocoding_app: Flask
) -> None:
    response = case.call_and_validate(app=geocoding_app, additional_checks=[error_shape])
    assert response.status_code < 500


@pytest.fixture
def communication_app(make_settings: Any, fuzz_database: str) -> Flask:
    settings = make_settings(
        CommunicationSettings,
        database_url=role_url(fuzz_database, "communication_service"),
        # nobody listens there: the call list shows no names, nothing fails
        therapist_service_url=f"http://127.0.0.1:{free_port()}",
    )
    return _connected(create_communication_app(settings), COMMUNICATION_API)


@COMMUNICATION_API.parametrize()
@shared_app
def test_communication_api_never_fails_with_5xx_and_keeps_the_error_shape(
    case: Case, communication_app: Flask
) -> None:
    response = case.call_and_validate(app=communication_app, additional_checks=[error_shape])
    assert response.status_code < 500
