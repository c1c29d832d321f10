"""docker-compose.yml publishes only the HTTP services, on BIND_ADDRESS, and holds no secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

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
