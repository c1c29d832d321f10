"""The whole platform as `make run` starts it: real processes, REST, Kafka, shutdown."""

from __future__ import annotations

import signal
import subprocess
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from shared.db import driver_url
from shared.devstack import ROOT, port_open
from tests.conftest import ADMIN_TOKEN
from tests.helpers import patient_body, wait_until

pytestmark = pytest.mark.e2e


def test_five_services_are_healthy_and_ready(platform: dict[str, Any]) -> None:
    for url in platform["urls"].values():
        assert requests.get(f"{url}/health", timeout=5).json() == {"status": "ok"}
        ready = requests.get(f"{url}/ready", timeout=5).json()
        assert ready["checks"] == {"database": "ok", "broker": "ok"}


def test_patient_registered_over_rest_can_be_searched_for_in_matching(
    platform: dict[str, Any],
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    urls = platform["urls"]
    created = requests.post(f"{urls['patient']}/api/patients", json=patient_body(), headers=headers)
    assert created.status_code == 201
    patient_id = created.json()["id"]

    def start() -> requests.Response | None:
        response = requests.post(
            f"{urls['matching']}/api/patient-searches",
            json={"patient_id": patient_id},
            headers=headers,
        )
        # 404: patient.created is on its way; 422: geocoding's location.resolved still is
        if response.status_code == 422:
            unmet = response.json()["error"]["details"]["unmet_criteria"]
            assert unmet == ["location_unresolved"], response.text
        else:
            assert response.status_code in (201, 404), response.text
        return response if response.status_code == 201 else None

    search = wait_until(start, timeout=60).json()
    assert search["patient_id"] == patient_id
    assert search["status"] == "active"

    def patient_status() -> str:
        response = requests.get(f"{urls['patient']}/api/patients/{patient_id}", headers=headers)
        return str(response.json()["status"])

    # search.started travels back: patient_service moves the patient to `searching`
    wait_until(lambda: patient_status() == "searching", timeout=30)


def test_therapist_added_and_blocked_over_rest_reaches_matching(
    platform: dict[str, Any], database_url: str
) -> None:
    from tests.integration.test_therapist_api import therapist_body

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    therapists = f"{platform['urls']['therapist']}/api/therapists"
    created = requests.post(therapists, json=therapist_body(), headers=headers)
    assert created.status_code == 201, created.text
    therapist_id = created.json()["id"]
    engine = sa.create_engine(driver_url(database_url))

    def projected_status() -> str | None:
        with engine.connect() as connection:
            return connection.execute(
                sa.text(
                    "SELECT status FROM matching_service.therapist_projection "
                    "WHERE therapist_id = :id"
                ),
                {"id": therapist_id},
            ).scalar_one_or_none()

    try:
        wait_until(lambda: projected_status() == "active", timeout=30)
        blocked = requests.post(
            f"{therapists}/{therapist_id}/block", json={"reason": "e2e"}, headers=headers
        )
        assert blocked.status_code == 200, blocked.text
        wait_until(lambda: projected_status() == "blocked", timeout=30)
    finally:
        engine.dispose()


@pytest.mark.skipif(
    not (ROOT.parent / "shared" / "data" / "zipcodes.de.csv").is_file(),
    reason="../shared/data/zipcodes.de.csv not found: make run had no PLZ data to load",
)
def test_first_start_loads_the_plz_data_into_geocoding(platform: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = requests.get(f"{platform['urls']['geocoding']}/api/plz/10115", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "Berlin"
    assert "Berlin" in response.json()["places"]


def test_sigterm_stops_every_process(platform: dict[str, Any]) -> None:
    process = platform["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) is not None
    wait_until(
        lambda: not any(port_open("127.0.0.1", port) for port in platform["ports"]), timeout=10
    )
    leftover = subprocess.run(
        ["pgrep", "-s", str(process.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftover == []
