"""Outbox -> Kafka -> consumer benchmark (issue 2): throughput and end-to-end latency.

Runs the real worker processes (`python -m patient_service.worker` publishes the patient
outbox, `python -m matching_service.worker` consumes into matching's projection) against an
embedded PostgreSQL and Tansu broker (or BENCH_DATABASE_URL / BENCH_KAFKA_BOOTSTRAP_SERVERS).

1. throughput: N events are written to the outbox first, then the workers start; the time
   until the last one is handled (committed in matching) gives events/s end to end.
2. latency: events are written one per transaction at a fixed rate (like API requests);
   latency = handled (matching's commit) - occurred (the use case's event time).

Usage: python benchmarks/events.py [--events 20000] [--rate 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from patient_service.models import INFRA  # noqa: E402
from patient_service.schemas import PATIENT_CREATED  # noqa: E402
from shared.db import Database, driver_url, role_url  # noqa: E402
from shared.devstack import (  # noqa: E402
    EmbeddedPostgres,
    TansuBroker,
    drop_database,
    ensure_database,
)
from shared.migrations import upgrade_all  # noqa: E402
from shared.outbox import OutboxWriter, PendingEvent  # noqa: E402


def event(patient_id: int) -> PendingEvent:
    """A realistic patient.created event."""
    payload = {
        "patient_id": patient_id,
        "version": 1,
        "status": "registered",
        "gender": "female",
        "birth_date": "1988-03-04",
        "postal_code": "10115",
        "diagnosis": "F32.1",
        "symptoms": ["low_mood", "sleep_problems"],
        "availability": {"mon": ["08:00-18:00"], "tue": ["08:00-18:00"]},
        "max_travel_km": 20,
        "travel_mode": "transit",
        "preferred_therapist_gender": "any",
        "preferred_therapy_method": "any",
        "open_to_group_therapy": False,
        "group_therapy_only": False,
        "qualified": True,
        "unmet_criteria": [],
        "two_year_rule_flag": False,
    }
    envelope = PATIENT_CREATED.build(
        producer="patient_service", aggregate_id=patient_id, payload=payload
    )
    return PendingEvent(PATIENT_CREATED.topic, envelope)


def workers(database_url: str, bootstrap: str, prefix: str) -> list[subprocess.Popen[bytes]]:
    """Start the two real worker processes."""
    processes = []
    for service in ("patient_service", "matching_service"):
        env = {
            **os.environ,
            "DATABASE_URL": role_url(database_url, service),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_TOPIC_PREFIX": prefix,
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            # matching requires one; no answer link is made here
            "ANSWER_LINK_SECRET": secrets.token_urlsafe(32),
        }
        processes.append(
            subprocess.Popen([sys.executable, "-m", f"{service}.worker"], env=env, cwd=ROOT)
        )
    return processes


def handled(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT count(*) FROM matching_service.processed_events")
        ).scalar_one()


def wait_handled(engine: sa.Engine, expected: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while (count := handled(engine)) < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {count} of {expected} events handled after {timeout}s")
        time.sleep(0.05)
    return time.monotonic()


def latencies_ms(engine: sa.Engine, since_id: int) -> list[float]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT extract(epoch FROM p.processed_at"
                " - (o.envelope->>'occurred_at')::timestamptz) * 1000"
                " FROM patient_service.outbox o JOIN matching_service.processed_events p"
                " ON p.event_id = o.event_id WHERE o.id > :since"
            ),
            {"since": since_id},
        ).scalars()
        return sorted(float(v) for v in rows)


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1..99) of sorted values."""
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="events for the throughput run")
    parser.add_argument("--rate", type=int, default=200, help="events/s for the latency run")
    parser.add_argument("--seconds", type=int, default=20, help="length of the latency run")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-events-"))
    postgres = broker = None
    admin_url = os.environ.get("BENCH_DATABASE_URL")
    if not admin_url:
        postgres = EmbeddedPostgres(tmp / "pg")
        admin_url = postgres.start()
    bootstrap = os.environ.get("BENCH_KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = TansuBroker()
        bootstrap = broker.start()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    database_url = ensure_database(admin_url, name)
    upgrade_all(database_url)
    engine = sa.create_engine(driver_url(database_url))
    database = Database(role_url(database_url, "patient_service"), outbox=OutboxWriter(INFRA))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # 1. throughput: a full outbox drained end to end
        with database.unit_of_work() as uow:
            for patient_id in range(1, args.events + 1):
                uow.emit(event(patient_id))
            uow.commit()
        started = time.monotonic()
        processes = workers(database_url, bootstrap, f"bench{uuid.uuid4().hex[:6]}.")
        first = wait_handled(engine, 1, timeout=120)
        first_count = handled(engine)
        finished = wait_handled(engine, args.events, timeout=600)
        sustained = (args.events - first_count) / (finished - first)
        cold = args.events / (finished - started)
        print(
            f"throughput: {args.events} events drained in {finished - started:.2f} s = {cold:,.0f} "
            f"events/s from cold start (incl. worker start-up and consumer group join); "
            f"{sustained:,.0f} events/s sustained once flowing"
        )

        # 2. latency at a fixed rate, one event per transaction
        with engine.connect() as connection:
            since = connection.execute(
                sa.text("SELECT max(id) FROM patient_service.outbox")
            ).scalar_one()
        total = args.rate * args.seconds
        interval = 1.0 / args.rate
        t0 = time.monotonic()
        for n in range(total):
            with database.unit_of_work() as uow:
                uow.emit(event(args.events + 1 + n))
                uow.commit()
            delay = t0 + (n + 1) * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        achieved = total / (time.monotonic() - t0)
        wait_handled(engine, args.events + total, timeout=120)
        values = latencies_ms(engine, since)
        print(
            f"latency at {achieved:.0f} events/s offered ({len(values)} events): "
            f"p50 {percentile(values, 50):.0f} ms, p95 {percentile(values, 95):.0f} ms, "
            f"p99 {percentile(values, 99):.0f} ms, max {values[-1]:.0f} ms"
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        database.dispose()
        engine.dispose()
        drop_database(admin_url, name)
        if broker:
            broker.stop()
        if postgres:
            postgres.stop()


if __name__ == "__main__":
    main()
