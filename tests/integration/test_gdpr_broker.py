"""Erasure through the real broker: patient_service's relay publishes patient.erased, and
matching's and geocoding's workers (consumers) apply it."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from geocoding_service.handlers import SUBSCRIPTIONS as GEOCODING_SUBSCRIPTIONS
from geocoding_service.handlers import handlers as geocoding_handlers
from geocoding_service.models import INFRA as GEOCODING_INFRA
from geocoding_service.settings import GeocodingSettings
from matching_service.app import create_app as create_matching_app
from matching_service.handlers import HANDLERS as MATCHING_HANDLERS
from matching_service.handlers import SUBSCRIPTIONS as MATCHING_SUBSCRIPTIONS
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.models import INFRA as PATIENT_INFRA
from patient_service.schemas import PATIENT_TOPIC
from patient_service.settings import PatientSettings
from shared.runtime import ServiceRuntime, relay_forever
from tests.helpers import background, location_resolved, patient_body, wait_until
from tests.matching_support import handle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]


def test_erasure_reaches_matching_and_geocoding_through_the_broker(
    make_settings: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    patient_settings = make_settings(PatientSettings)
    matching_settings = make_settings(MatchingSettings)
    geocoding_settings = make_settings(GeocodingSettings)
    patients = create_patient_app(patient_settings).test_client()
    matching = create_matching_app(matching_settings).test_client()
    matching_runtime = ServiceRuntime.build(matching_settings, MATCHING_INFRA)
    geocoding_runtime = ServiceRuntime.build(geocoding_settings, GEOCODING_INFRA)
    relay = ServiceRuntime.build(patient_settings, PATIENT_INFRA).relay([PATIENT_TOPIC])
    matching_consumer = matching_runtime.consumer(MATCHING_SUBSCRIPTIONS, MATCHING_HANDLERS)
    geocoding_consumer = geocoding_runtime.consumer(
        GEOCODING_SUBSCRIPTIONS, geocoding_handlers(geocoding_settings)
    )

    def one(sql: str, patient_id: int) -> Any:
        with admin_engine.connect() as connection:
            return connection.execute(sa.text(sql), {"p": patient_id}).first()

    patient_id = patients.post("/api/patients", json=patient_body(), headers=admin_headers).json[
        "id"
    ]
    with (
        background(lambda stop: relay_forever(relay, stop, idle_s=0.05)),
        background(matching_consumer.run),
        background(geocoding_consumer.run),
    ):
        projection = "SELECT status FROM matching_service.patient_projection WHERE patient_id = :p"
        location = (
            "SELECT 1 FROM geocoding_service.entity_locations "
            "WHERE entity_type = 'patient' AND entity_id = :p"
        )
        wait_until(lambda: one(projection, patient_id) is not None, timeout=60)
        wait_until(lambda: one(location, patient_id) is not None, timeout=60)
        handle(matching_runtime.database, location_resolved("patient", patient_id))
        search = matching.post(
            "/api/patient-searches", json={"patient_id": patient_id}, headers=admin_headers
        )
        assert search.status_code == 201, search.json
        erased = patients.delete(f"/api/patients/{patient_id}", headers=admin_headers)
        assert erased.status_code == 200
        wait_until(lambda: one(projection, patient_id).status == "erased", timeout=60)
        wait_until(lambda: one(location, patient_id) is None, timeout=60)
    search_status = one(
        "SELECT status FROM matching_service.patient_searches WHERE patient_id = :p", patient_id
    )
    assert search_status.status == "cancelled"
    matching_runtime.database.dispose()
    geocoding_runtime.database.dispose()
