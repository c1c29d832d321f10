"""The worker entry point: runs the consumer and relay, stops cleanly on SIGTERM, restarts itself
when its consumer or relay loop is stuck."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.settings import MatchingSettings
from patient_service.schemas import PATIENT_TOPIC
from shared.devstack import ROOT
from tests.helpers import wait_until
from tests.integration.test_consumer_faults import _produce
from tests.integration.test_event_flow import _patient_event, _projected

pytestmark = pytest.mark.integration


@contextmanager
def worker_process(
    module: str, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    """`python -m module` with its log lines (stderr) read into a queue; killed on the way out
    if still running (the test stops it with SIGTERM and checks `returncode` afterwards)."""
    worker = subprocess.Popen(
        [sys.executable, "-m", module], env=env, stderr=subprocess.PIPE, text=True
    )
    assert worker.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(worker.stderr, lines), daemon=True)
    reader.start()
    try:
        yield worker, lines
    finally:
        if worker.poll() is None:
            worker.kill()
        reader.join(timeout=5)
        worker.stderr.close()


def _matching_worker(
    make_settings: Any, topic_prefix: str, **env_overrides: str
) -> AbstractContextManager[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    """matching_service's worker process (`worker_process`) on the test's database and broker."""
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
        **env_overrides,
    }
    return worker_process("matching_service.worker", env)


def test_worker_stops_cleanly_on_sigterm(make_settings: Any, topic_prefix: str) -> None:
    with _matching_worker(make_settings, topic_prefix) as (worker, lines):
        _wait_for_line(lines, "worker started: relay, consumer", timeout=30)
        time.sleep(1)  # let the consumer and relay loops get going
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
        stopped_after = time.monotonic() - started
    rest = "".join(lines.queue)
    assert worker.returncode == 0
    assert "worker stopped" in rest
    assert stopped_after < 15


def test_worker_restarts_itself_when_its_consumer_loop_stalls(
    make_settings: Any, topic_prefix: str, kafka_bootstrap: str, admin_engine: sa.Engine
) -> None:
    """A consumer stuck in a call that never returns (here: a handler waiting on a lock; after a
    broker replacement: kafka-python waiting for its network thread) gets the process replaced
    by a fresh run of itself, which then handles the event."""
    patient_id = 800_000 + uuid.uuid4().int % 100_000
    with _matching_worker(make_settings, topic_prefix, CONSUMER_STALL_SECONDS="5") as (
        worker,
        lines,
    ):
        _wait_for_line(lines, "worker started: relay, consumer", timeout=30)
        with admin_engine.connect() as blocker:
            blocker.execute(
                sa.text("LOCK TABLE matching_service.patient_projection IN ACCESS EXCLUSIVE MODE")
            )
            _produce(
                kafka_bootstrap,
                f"{topic_prefix}{PATIENT_TOPIC}",
                [_patient_event(patient_id, 1).to_bytes()],
            )
            _wait_for_line(lines, "restarting the worker process", timeout=90)
            _wait_for_line(lines, "worker started: relay, consumer", timeout=30)
            assert worker.poll() is None  # the same process, a new image
            blocker.rollback()  # the lock goes: the restarted worker can handle the event
        wait_until(lambda: _projected(admin_engine, patient_id), timeout=90)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    assert worker.returncode == 0


def test_worker_restarts_itself_when_its_relay_loop_stalls(
    make_settings: Any, topic_prefix: str, admin_engine: sa.Engine
) -> None:
    """A relay pass that never ends (here: the outbox locked by another session, which the
    relay's read waits for without a timeout) gets the process replaced as well; the new image
    relays again once the lock is gone."""
    with _matching_worker(make_settings, topic_prefix, CONSUMER_STALL_SECONDS="5") as (
        worker,
        lines,
    ):
        _wait_for_line(lines, "worker started: relay, consumer", timeout=30)
        with admin_engine.connect() as blocker:
            blocker.execute(sa.text("LOCK TABLE matching_service.outbox IN ACCESS EXCLUSIVE MODE"))
            _wait_for_line(lines, "relay loop has not come round", timeout=60)
            _wait_for_line(lines, "worker started: relay, consumer", timeout=30)
            assert worker.poll() is None  # the same process, a new image
            blocker.rollback()
        time.sleep(2)  # passes come round again: no second restart
        assert not any("has not come round" in line for line in list(lines.queue))
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    assert worker.returncode == 0


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
