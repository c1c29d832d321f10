"""Metrics at scale: gunicorn with several worker processes adds up their counters
(`PROMETHEUS_MULTIPROC_DIR`), business gauges from the database, consumer lag of a worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from kafka import KafkaProducer

from matching_service.app import create_app as create_matching_app
from matching_service.handlers import HANDLERS, SUBSCRIPTIONS
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.settings import PatientSettings
from shared.db import UnitOfWork, driver_url, role_url
from shared.devstack import ROOT, free_port
from shared.events import Envelope
from shared.kafka import ensure_topics
from shared.metrics import ConsumerLagCollector
from shared.pgbouncer import PgBouncer
from shared.runtime import ServiceRuntime
from tests.conftest import migrated_database
from tests.helpers import background, wait_until
from tests.integration.test_event_flow import _patient_event, _projected

pytestmark = pytest.mark.integration


def samples(text: str, name: str) -> dict[str, float]:
    """Every sample of metric `name`: its labels as written -> value."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, _, value = line.rpartition(" ")
            found[series[len(name) :]] = float(value)
    return found


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


# ---------------------------------------------------------------- gunicorn, two workers


def test_two_gunicorn_workers_add_up_their_counters(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(PatientSettings)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left over from an earlier run")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "LOG_JSON": "false",
        "PYTHONPATH": str(ROOT),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "WEB_CONCURRENCY": "2",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    server = subprocess.Popen(
        [
            str(gunicorn),
            "-c",
            str(ROOT / "shared" / "gunicorn_conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--no-control-socket",
            "patient_service.app:create_app()",
        ],
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base + "/health", server)
        _wait_for_pids(metrics_dir, 2, base)  # both workers have answered something
        before = _health_count(_get(base + "/metrics"))
        for _ in range(30):
            _get(base + "/health")  # one connection each: the workers take turns
        # whichever process answers the scrape, it reports the requests of both
        counts = [_health_count(_get(base + "/metrics")) for _ in range(6)]
        assert counts == [before + 30] * 6
        assert not (metrics_dir / "counter_1.db").exists()  # emptied at start
        pids = _pids(metrics_dir)
        assert len(pids) == 2, pids
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _health_count(text: str) -> float:
    return sum(
        value
        for series, value in samples(text, "http_requests_total").items()
        if 'endpoint="/health"' in series
    )


def _pids(directory: Path) -> set[str]:
    return {path.stem.rsplit("_", 1)[-1] for path in directory.glob("counter_*.db")}


def _wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "gunicorn exited"
        try:
            _get(url)
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not answer within 60s")


def _wait_for_pids(directory: Path, count: int, base: str) -> None:
    deadline = time.monotonic() + 60
    while len(_pids(directory)) < count:
        assert time.monotonic() < deadline, f"only {_pids(directory)} answered"
        _get(base + "/health")


# ---------------------------------------------------------------- business gauges


@pytest.fixture(scope="module")
def own_database(pg_admin_url: str, pgbouncer: PgBouncer | None) -> Iterator[str]:
    """A database for this module only: the gauges count every row, so no other test's."""
    with migrated_database(pg_admin_url, pgbouncer, "metrics") as url:
        yield url


@pytest.fixture
def own_engine(own_database: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(driver_url(own_database))
    yield engine
    engine.dispose()


def _known_data(engine: sa.Engine) -> None:
    """3 active, 1 paused, 2 cancelled searches; inquiries: 2 unsent, 1 sent, 4 answered;
    patient_service: 2 outbox rows pending (the oldest an hour old), 1 published."""
    with engine.begin() as connection:
        for schema in ("matching_service", "patient_service"):
            connection.execute(sa.text(f"DELETE FROM {schema}.outbox"))
        connection.execute(sa.text("DELETE FROM matching_service.inquiry_patients"))
        connection.execute(sa.text("DELETE FROM matching_service.inquiries"))
        connection.execute(sa.text("DELETE FROM matching_service.search_exclusions"))
        connection.execute(sa.text("DELETE FROM matching_service.patient_searches"))
        statuses = ["active"] * 3 + ["paused"] + ["cancelled"] * 2
        for patient_id, status in enumerate(statuses, start=1):
            connection.execute(
                sa.text(
                    "INSERT INTO matching_service.patient_searches "
                    "(patient_id, status, waiting_since) VALUES (:p, :s, now())"
                ),
                {"p": patient_id, "s": status},
            )
        inquiry_statuses = ["unsent"] * 2 + ["sent"] + ["answered"] * 4
        for number, status in enumerate(inquiry_statuses, start=1):
            connection.execute(
                sa.text(
                    "INSERT INTO matching_service.inquiries (therapist_id, practice_key, origin, "
                    "status, original_size, current_size) VALUES (:t, :k, 'manual', :s, 1, 1)"
                ),
                {"t": number, "k": f"practice-{number}", "s": status},
            )
        for age_minutes, published in ((60, False), (5, False), (90, True)):
            connection.execute(
                sa.text(
                    "INSERT INTO patient_service.outbox (event_id, event_type, topic, "
                    "aggregate_id, bucket, envelope, created_at, published_at) VALUES "
                    "(:id, 'patient.updated', 'patient-events', '1', 0, '{}'::jsonb, "
                    "now() - make_interval(mins => :age), "
                    "CASE WHEN :published THEN now() END)"
                ),
                {"id": uuid.uuid4(), "age": age_minutes, "published": published},
            )


def test_business_gauges_count_the_known_data(
    make_settings: Any, own_database: str, own_engine: sa.Engine
) -> None:
    _known_data(own_engine)
    matching = create_matching_app(
        make_settings(MatchingSettings, database_url=role_url(own_database, "matching_service"))
    )
    patient = create_patient_app(
        make_settings(PatientSettings, database_url=role_url(own_database, "patient_service"))
    )
    text = matching.test_client().get("/metrics").data.decode()
    assert samples(text, "matching_searches") == {
        '{service="matching_service",status="active"}': 3.0,
        '{service="matching_service",status="cancelled"}': 2.0,
        '{service="matching_service",status="in_trial"}': 0.0,
        '{service="matching_service",status="paused"}': 1.0,
        '{service="matching_service",status="successful"}': 0.0,
    }
    assert samples(text, "matching_open_inquiries") == {
        '{service="matching_service",status="sent"}': 1.0,
        '{service="matching_service",status="unsent"}': 2.0,
    }
    assert samples(text, "outbox_pending_events") == {'{service="matching_service"}': 0.0}
    assert samples(text, "outbox_oldest_pending_age_seconds") == {
        '{service="matching_service"}': 0.0
    }

    patient.test_client().get("/health")
    text = patient.test_client().get("/metrics").data.decode()
    assert samples(text, "outbox_pending_events") == {'{service="patient_service"}': 2.0}
    (age,) = samples(text, "outbox_oldest_pending_age_seconds").values()
    assert 3600 <= age < 3700
    assert "matching_searches" not in text  # a service's own gauges stay its own
    assert samples(text, "http_requests_total")  # the counters are still there


def test_business_gauges_are_cached_briefly_and_survive_a_lost_database(
    make_settings: Any, own_database: str, own_engine: sa.Engine
) -> None:
    _known_data(own_engine)
    app = create_matching_app(
        make_settings(MatchingSettings, database_url=role_url(own_database, "matching_service"))
    )
    client = app.test_client()
    first = samples(client.get("/metrics").data.decode(), "matching_searches")
    with own_engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE matching_service.patient_searches SET status = 'cancelled'")
        )
    cached = samples(client.get("/metrics").data.decode(), "matching_searches")
    assert cached == first  # within the cache time: not read again
    gauges = app.extensions["business_gauges"]
    gauges.cache_seconds = 0
    fresh = samples(client.get("/metrics").data.decode(), "matching_searches")
    assert fresh['{service="matching_service",status="cancelled"}'] == 6.0
    assert fresh['{service="matching_service",status="active"}'] == 0.0

    unreachable = sa.create_engine(own_engine.url.set(port=1))
    gauges.database = SimpleNamespace(engine=unreachable)
    response = client.get("/metrics")
    assert response.status_code == 200  # the HTTP counters still answer
    assert "http_requests_total" in response.data.decode()
    assert "matching_searches" not in response.data.decode()


# ---------------------------------------------------------------- consumer lag of a worker


def test_worker_serves_its_consumer_lag_per_partition(
    make_settings: Any, topic_prefix: str
) -> None:
    settings = make_settings(MatchingSettings)
    topics = [topic_prefix + topic for topic in SUBSCRIPTIONS]
    ensure_topics(settings.kafka_bootstrap_servers, topics, 3, {})  # exist before it joins
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": topic_prefix,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "LOG_JSON": "false",
        "PYTHONPATH": str(ROOT),
        "ANSWER_LINK_SECRET": settings.answer_link_secret.get_secret_value(),
        "WORKER_METRICS_PORT": str(port),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "matching_service.worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        lag: dict[str, float] = {}
        while len(lag) < len(topics) * 3:
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, f"lag of {sorted(lag)} only"
            time.sleep(0.5)
            try:
                lag = samples(_get(f"http://127.0.0.1:{port}/metrics"), "consumer_lag")
            except OSError:
                continue
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
    expected = {
        f'{{partition="{partition}",service="matching_service",topic="{topic}"}}'
        for topic in topics
        for partition in range(3)
    }
    assert set(lag) == expected
    assert all(value == 0.0 for value in lag.values())  # nothing published: nothing behind


def test_a_worker_whose_metrics_port_is_taken_still_works(
    make_settings: Any, topic_prefix: str
) -> None:
    settings = make_settings(MatchingSettings)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": topic_prefix,
            "LOG_JSON": "false",
            "PYTHONPATH": str(ROOT),
            "ANSWER_LINK_SECRET": settings.answer_link_secret.get_secret_value(),
            "WORKER_METRICS_PORT": str(port),
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "matching_service.worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert worker.stderr is not None
        try:
            seen = ""
            deadline = time.monotonic() + 30
            while "worker started" not in seen:
                assert time.monotonic() < deadline, seen
                line = worker.stderr.readline()
                assert line, f"the worker exited: {seen}"
                seen += line
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
            worker.stderr.close()
    assert f"metrics not served on WORKER_METRICS_PORT={port}" in seen
    assert worker.returncode == 0


def test_lag_counts_what_waits_while_the_database_is_away_and_falls_to_zero(
    make_settings: Any, kafka_bootstrap: str, topic_prefix: str, admin_engine: sa.Engine
) -> None:
    database_away = {"on": True}

    def handler(uow: UnitOfWork, envelope: Envelope) -> None:
        if database_away["on"]:
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
        HANDLERS[envelope.event_type](uow, envelope)

    consumer = ServiceRuntime.build(make_settings(MatchingSettings), MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, {name: handler for name in HANDLERS}
    )
    consumer._pause_s = 0.2
    consumer.lag_interval_s = 0.0
    collector = ConsumerLagCollector("matching_service", consumer.lag)
    topic = f"{topic_prefix}patient-events"
    base = 7_000_000 + uuid.uuid4().int % 1_000_000
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for n in range(4):  # one key: one partition
        producer.send(topic, key=b"one", value=_patient_event(base + n, 1).to_bytes())
    producer.flush()
    producer.close()

    def lag_of_topic() -> float:
        (family,) = collector.collect()
        return sum(s.value for s in family.samples if s.labels["topic"] == topic)

    with background(consumer.run):
        wait_until(lambda: lag_of_topic() == 4, timeout=60)
        database_away["on"] = False
        wait_until(lambda: all(_projected(admin_engine, base + n) for n in range(4)), timeout=60)
        wait_until(lambda: lag_of_topic() == 0, timeout=30)
