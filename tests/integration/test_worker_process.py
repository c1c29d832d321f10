"""The worker entry point: runs the consumer and relay, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from matching_service.settings import MatchingSettings
from shared.devstack import ROOT

pytestmark = pytest.mark.integration


def test_worker_stops_cleanly_on_sigterm(make_settings: Any, topic_prefix: str) -> None:
    settings = make_settings(MatchingSettings)
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": topic_prefix,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "LOG_JSON": "false",
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "matching_service.worker"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        deadline = time.monotonic() + 30
        for line in worker.stderr:
            if "worker started: relay, consumer" in line or time.monotonic() > deadline:
                break
        time.sleep(1)  # let the consumer and relay loops get going
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        _, rest = worker.communicate(timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0
    assert "worker stopped" in rest
    assert time.monotonic() - started < 15
