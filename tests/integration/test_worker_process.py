"""The worker entry point: runs the consumer and relay, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
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
        "ANSWER_LINK_SECRET": settings.answer_link_secret.get_secret_value(),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "matching_service.worker"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert worker.stderr is not None
    reader = threading.Thread(target=_pump, args=(worker.stderr, lines), daemon=True)
    reader.start()
    try:
        _wait_for_line(lines, "worker started: relay, consumer", timeout=30)
        time.sleep(1)  # let the consumer and relay loops get going
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
        stopped_after = time.monotonic() - started
    finally:
        if worker.poll() is None:
            worker.kill()
    reader.join(timeout=5)
    worker.stderr.close()
    rest = "".join(lines.queue)
    assert worker.returncode == 0
    assert "worker stopped" in rest
    assert stopped_after < 15


def _pump(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _wait_for_line(lines: queue.Queue[str], text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            if text in lines.get(timeout=max(remaining, 0.01)):
                return
        except queue.Empty:
            raise AssertionError(f"worker did not log {text!r} within {timeout}s") from None
