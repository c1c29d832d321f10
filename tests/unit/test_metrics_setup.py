"""How the HTTP processes are started for metrics: worker count, the shared metrics directory."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from shared.devstack import ROOT, web_command, worker_metrics_ports


def _gunicorn_conf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conf", ROOT / "shared" / "gunicorn_conf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_run_starts_web_concurrency_workers_with_the_shared_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    command = web_command("gunicorn", "patient_service", 8001)
    assert "--workers 2 " in command
    assert f"-c {ROOT / 'shared' / 'gunicorn_conf.py'}" in command
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    assert "--workers 1 " in web_command("gunicorn", "patient_service", 8001)
    assert worker_metrics_ports({"patient_service": 8001}) == {"patient_service": 8101}


def test_gunicorn_empties_the_metrics_directory_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    directory = tmp_path / "prometheus"
    (directory / "old").mkdir(parents=True)
    (directory / "counter_123.db").write_bytes(b"x")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    conf = _gunicorn_conf()
    assert conf.workers == 3
    conf.on_starting(None)
    assert directory.is_dir() and not list(directory.iterdir())
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "new"))
    conf.on_starting(None)
    assert (tmp_path / "new").is_dir()


def test_compose_runs_gunicorn_with_shared_metrics_and_workers_serve_lag() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("patient", "therapist", "matching", "communication", "geocoding"):
        command = services[name]["command"]
        assert command[:3] == ["gunicorn", "-c", "shared/gunicorn_conf.py"], name
        assert "--workers" not in command  # WEB_CONCURRENCY decides
        environment = services[name]["environment"]
        assert environment["PROMETHEUS_MULTIPROC_DIR"]
        assert environment["WEB_CONCURRENCY"] == "${WEB_CONCURRENCY:-2}"
        assert services[f"{name}-worker"]["environment"]["WORKER_METRICS_PORT"]
