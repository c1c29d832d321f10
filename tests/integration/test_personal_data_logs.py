"""No personal data in logs: drive the patient API and the other services' handlers through
a patient's whole life (register, change, search, exclude, export, erase) with every logger
at DEBUG, and look for the patient's name, email, phone, birth date and diagnosis."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.app import create_app as create_matching_app
from patient_service.app import create_app as create_patient_app
from tests.gdpr_support import outbox_events, serving
from tests.helpers import location_resolved, patient_body
from tests.matching_support import new_id

pytestmark = pytest.mark.integration

OTHERS = ("matching_service", "geocoding_service", "communication_service")


def test_a_patients_life_leaves_no_personal_data_in_the_logs(
    database_url: str,
    admin_engine: sa.Engine,
    admin_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = patient_body(
        last_name=f"Logscan{new_id()}", phone="0171 9876543", birth_date="1987-06-05"
    )
    body["diagnosis"] = "F41.1"
    secrets = [body["first_name"], body["last_name"], body["email"], "9876543", "1987-06-05"]
    with serving(database_url) as services:
        patients = create_patient_app(services.patient_settings).test_client()
        matching = create_matching_app(services.matching_settings).test_client()
        caplog.set_level(logging.DEBUG)
        root = logging.getLogger()
        if caplog.handler not in root.handlers:  # the apps' logging set-up replaced it
            root.addHandler(caplog.handler)

        created = patients.post("/api/patients", json=body, headers=admin_headers)
        assert created.status_code == 201
        patient_id = created.json["id"]
        duplicate = patients.post("/api/patients", json=body, headers=admin_headers)
        assert duplicate.status_code == 409
        url = f"/api/patients/{patient_id}"
        patients.patch(url, json={"city": "Halle"}, headers=admin_headers)
        patients.patch(url, json={"email": "x"}, headers=admin_headers)
        patients.get(url, headers=admin_headers)
        patients.get(f"/api/patients?search={body['last_name']}", headers=admin_headers)
        patients.post(
            f"{url}/exclusions",
            json={"therapist_id": new_id(), "reason": "r"},
            headers=admin_headers,
        )
        for envelope in outbox_events(admin_engine, "patient_service", patient_id):
            for service in OTHERS:
                services.apply(service, envelope)
        services.apply("matching_service", location_resolved("patient", patient_id))
        search = matching.post(
            "/api/patient-searches", json={"patient_id": patient_id}, headers=admin_headers
        )
        assert search.status_code == 201, search.json
        for envelope in outbox_events(
            admin_engine, "matching_service", search.json["id"], "search."
        ):
            services.apply("communication_service", envelope)
        patients.get(f"{url}/export", headers=admin_headers)
        patients.delete(url, headers=admin_headers)
        for envelope in outbox_events(admin_engine, "patient_service", patient_id)[-1:]:
            for service in OTHERS:
                services.apply(service, envelope)

    captured: Any = capsys.readouterr()
    logged = "\n".join([caplog.text, captured.out, captured.err])
    assert len(caplog.records) > 5, "too little was logged: the scan would prove nothing"
    assert [secret for secret in secrets if secret.lower() in logged.lower()] == []
    assert "F41.1" not in logged
