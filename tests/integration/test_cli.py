"""Admin CLI: tokens are created in every service schema and can be revoked."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from matching_service.app import create_app as create_matching_app
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.settings import PatientSettings
from shared.cli import main
from shared.db import role_url
from shared.devstack import ROOT, drop_database, ensure_database, free_port
from shared.migrations import upgrade_all
from shared.settings import SERVICES

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

    capsys.readouterr()
    assert main(["tokens", "revoke", "cli-test-user"]) == 0
    assert f"token revoked: name=cli-test-user schemas={','.join(SERVICES)}" in (
        capsys.readouterr().err
    )
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


def test_token_commands_connect_as_admin_not_as_a_service_role(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a service role may only read api_tokens; the CLI must use the migrations login
    monkeypatch.setenv("DATABASE_URL", role_url(database_url, "patient_service"))
    monkeypatch.setenv("MIGRATIONS_DATABASE_URL", database_url)
    assert main(["tokens", "create", "--name", f"admin-conn-{uuid.uuid4().hex[:6]}"]) == 0
    assert capsys.readouterr().out.startswith("pp_")


@pytest.fixture(scope="module")
def own_database(pg_admin_url: str) -> Iterator[str]:
    """A database of this module alone: its bootstrap token may be revoked and replaced."""
    name = f"cli_{uuid.uuid4().hex[:10]}"
    url = ensure_database(pg_admin_url, name)
    upgrade_all(url)
    yield url
    drop_database(pg_admin_url, name)


def test_bootstrap_admin_token_is_a_revocable_stored_token(
    own_database: str,
    make_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = "first-bootstrap-token-" + "a" * 20, "second-bootstrap-token-" + "b" * 20
    monkeypatch.setenv("MIGRATIONS_DATABASE_URL", own_database)
    client = create_patient_app(
        make_settings(PatientSettings, database_url=role_url(own_database, "patient_service"))
    ).test_client()

    def status(token: str) -> int:
        return int(
            client.get(
                "/api/admin/outbox", headers={"Authorization": f"Bearer {token}"}
            ).status_code
        )

    assert status(first) == 401  # configured nowhere yet: no master key in code
    monkeypatch.setenv("BOOTSTRAP_ADMIN_TOKEN", first)
    assert main(["tokens", "ensure-bootstrap"]) == 0
    assert status(first) == 200
    capsys.readouterr()
    assert main(["tokens", "revoke", "bootstrap-admin"]) == 0
    assert "token revoked: name=bootstrap-admin schemas=" in capsys.readouterr().err
    assert status(first) == 401
    assert main(["migrate"]) == 0  # a restart stores it again only if it was never known
    assert status(first) == 401

    monkeypatch.setenv("BOOTSTRAP_ADMIN_TOKEN", second)  # a new value replaces the old one
    assert main(["tokens", "ensure-bootstrap"]) == 0
    assert status(second) == 200
    assert main(["tokens", "ensure-bootstrap"]) == 0  # idempotent
    assert status(second) == 200


def test_service_token_reads_what_staff_reads_and_changes_nothing(
    own_database: str, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "service-token-" + "s" * 30
    monkeypatch.setenv("MIGRATIONS_DATABASE_URL", own_database)
    monkeypatch.setenv("SERVICE_TOKEN", token)
    monkeypatch.delenv("BOOTSTRAP_ADMIN_TOKEN", raising=False)
    assert main(["migrate"]) == 0
    client = create_patient_app(
        make_settings(PatientSettings, database_url=role_url(own_database, "patient_service"))
    ).test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/patients", headers=headers).status_code == 200
    created = client.post("/api/patients", json={}, headers=headers)
    assert created.status_code == 403
    assert "may only read" in created.json["error"]["message"]
    assert client.get("/api/admin/outbox", headers=headers).status_code == 403  # admin only
    assert client.get("/api/patients").status_code == 401
    assert main(["tokens", "revoke", "service"]) == 0
    assert client.get("/api/patients", headers=headers).status_code == 401


def test_short_bootstrap_admin_token_is_refused_before_anything_runs(
    own_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIGRATIONS_DATABASE_URL", own_database)
    monkeypatch.setenv("BOOTSTRAP_ADMIN_TOKEN", "twenty-chars-token-x")
    for command in (["migrate"], ["tokens", "ensure-bootstrap"]):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "BOOTSTRAP_ADMIN_TOKEN: Value error, must be at least 32 characters" in err
        assert "twenty-chars-token-x" not in err


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
        # a bare '@' and then ':': the rest would be read as a (non-numeric) port
        (
            "my@pass:wOrd99",
            "postgresql://patient_service:my@pass:wOrd99@127.0.0.1:{port}/placement",
            ["wOrd99", "pass:"],
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
