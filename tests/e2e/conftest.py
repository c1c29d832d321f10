"""The whole platform as `make run` starts it, for the end-to-end tests of this folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.devstack import ROOT, free_ports, process_env
from tests.conftest import ADMIN_TOKEN
from tests.helpers import wait_until

SERVICES = ("patient", "therapist", "matching", "communication", "geocoding")


@pytest.fixture(scope="module")
def platform(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """`python -m shared.devstack` on the test database, its own broker, SMTP sink and ports.

    Yields `urls` (per short service name), `process`, `ports`, `data_dir` (DEV_DATA_DIR:
    mail/, service-token, answer-link-secret), `bootstrap`, `smtp_port`, `database_url`."""
    *service_ports, kafka_port, smtp_port = free_ports(7)
    base = service_ports[0]
    data_dir = tmp_path_factory.mktemp("devstack")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEV_DATA_DIR": str(data_dir),
        "DEV_PORT_BASE": str(base),
        "DEV_KAFKA_PORT": str(kafka_port),
        "DEV_SMTP_PORT": str(smtp_port),
        "BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN,
        "PYTHONPATH": str(ROOT),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("SMTP_HOST", None)
    log = data_dir / "devstack.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.devstack"],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        urls = {name: f"http://127.0.0.1:{base + i}" for i, name in enumerate(SERVICES)}
        try:
            wait_until(lambda: all(_ready(url) for url in urls.values()), timeout=90)
            yield {
                "urls": urls,
                "process": process,
                "ports": [base + i for i in range(5)],
                "data_dir": data_dir,
                "bootstrap": f"127.0.0.1:{kafka_port}",
                "smtp_port": smtp_port,
                "database_url": database_url,
            }
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    raise


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def run_command(platform: dict[str, Any], service: str, *args: str) -> str:
    """Run `python -m <service>.cli ARGS` beside the stack with the environment the stack
    gives that service (its database role, broker, secrets, SMTP sink, peer URLs)."""
    data_dir: Path = platform["data_dir"]
    env = process_env(service, platform["database_url"], platform["bootstrap"])
    env["SERVICE_TOKEN"] = (data_dir / "service-token").read_text().strip()
    if service == "matching_service":
        env["ANSWER_LINK_SECRET"] = (data_dir / "answer-link-secret").read_text().strip()
        env["ANSWER_LINK_BASE_URL"] = platform["urls"]["matching"]
    if service == "communication_service":
        env.update(
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(platform["smtp_port"]),
            SMTP_STARTTLS="false",
            THERAPIST_SERVICE_URL=platform["urls"]["therapist"],
            PATIENT_SERVICE_URL=platform["urls"]["patient"],
        )
    result = subprocess.run(
        [sys.executable, "-m", f"{service}.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
