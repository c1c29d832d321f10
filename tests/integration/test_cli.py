"""Admin CLI: tokens are created in every service schema and can be revoked."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from matching_service.app import create_app as create_matching_app
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.settings import PatientSettings
from shared.cli import main
from shared.db import role_url
from shared.devstack import ROOT, free_port

pytestmark = pytest.mark.integration


def test_created_token_works_everywhere_until_revoked(
    database_url: str,
    make_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["tokens", "create", "--name", "cli-test-user", "--role", "staff"]) == 0
    token = capsys.readouterr().out.strip()
    headers = {"Authorization": f"Bearer {token}"}
    apps = [
        create_patient_app(make_settings(PatientSettings)).test_client(),
        create_matching_app(make_settings(MatchingSettings)).test_client(),
    ]
    assert apps[0].get("/api/patients", headers=headers).status_code == 200
    assert apps[1].get("/api/patient-searches/1", headers=headers).status_code in (200, 404)
    assert apps[0].get("/api/admin/outbox", headers=headers).status_code == 403

    assert main(["tokens", "revoke", "cli-test-user"]) == 0
    assert apps[0].get("/api/patients", headers=headers).status_code == 401
    assert apps[1].get("/api/patient-searches/1", headers=headers).status_code == 401
    assert main(["tokens", "revoke", "cli-test-user"]) == 1  # nothing left to revoke


def test_outbox_command_reports_every_service(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["outbox"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {
        "patient_service",
        "therapist_service",
        "matching_service",
        "communication_service",
        "geocoding_service",
    }


@pytest.mark.parametrize(
    ("password", "url", "secrets"),
    [
        # built by the project: URL-encoded
        ("p:a@s/s%w#rd x'y", None, ["s%w#rd", "p%3Aa%40s", "rd x"]),
        # typed by hand with a bare '@': the driver would take the rest for the host
        (
            "S3cret@Pw0rd",
            "postgresql://patient_service:S3cret@Pw0rd@127.0.0.1:{port}/placement",
            ["S3cret", "Pw0rd"],
        ),
    ],
)
def test_database_errors_never_show_the_password(
    password: str, url: str | None, secrets: list[str]
) -> None:
    port = free_port()  # nothing listens there
    if url is None:
        url = role_url(f"postgresql://127.0.0.1:{port}/placement", "patient_service", password)
    env = {**os.environ, "DATABASE_URL": url.format(port=port), "PYTHONPATH": str(ROOT)}
    env.pop("PATIENT_SERVICE_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "outbox"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "cannot reach the database" in output or "invalid database URL" in output
    for secret in secrets:
        assert secret not in output
