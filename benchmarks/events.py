"""Outbox -> Kafka -> consumer benchmark: throughput, latency, a consumer joining.

Runs the real worker processes (`python -m patient_service.worker` publishes the patient
outbox, `python -m matching_service.worker` consumes into matching's projection) against an
embedded PostgreSQL (or BENCH_DATABASE_URL, else TEST_DATABASE_URL: a superuser URL on which a
database is created and dropped) and a Tansu broker (or BENCH_KAFKA_BOOTSTRAP_SERVERS), with
topics of `--partitions` partitions, `--relays` patient workers (their relays share the outbox
by bucket) and `--consumers` matching workers in one consumer group.

1. throughput: N events are written to the outbox first (`--versions` per patient: created,
   then updated, written round after round so the versions of a patient are far apart), then
   the workers start; the time until the last one is handled (committed in matching) gives
   events/s end to end. Then the topic is read back: every patient's events must sit in one
   partition in outbox order (key = aggregate id), and matching must hold every patient's
   last version.
2. latency: events are written one per transaction at a fixed rate (like API requests);
   latency = handled (matching's transaction) - occurred (the use case's event time).
3. rebalance (with 2+ consumers): the last consumer stops; at the same rate it starts again
   after `--join-after` s; the longest pause in handling and the latency of the events
   written while it joins show what the rebalance costs.

Usage: python benchmarks/events.py [--events 20000] [--rate 200] [--seconds 20]
       [--partitions 6] [--relays 1] [--consumers 2] [--versions 2]
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

import orjson
import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_support import fresh_database, kafka_broker, postgres_admin_url  # noqa: E402

from patient_service.models import INFRA  # noqa: E402
from patient_service.schemas import PATIENT_CREATED, PATIENT_UPDATED  # noqa: E402
from shared.db import Database, driver_url, role_url  # noqa: E402
from shared.outbox import OutboxWriter, PendingEvent  # noqa: E402


def postmaster_pid(datadir: Path) -> int | None:
    """Process id of the embedded server in `datadir` (for the CPU figures); None if none runs."""
    try:
        return int((datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def event(patient_id: int, version: int = 1) -> PendingEvent:
    """A realistic patient.created event (patient.updated for versions after the first)."""
    payload = {
        "patient_id": patient_id,
        "version": version,
        "status": "registered",
        "gender": "female",
        "birth_date": "1988-03-04",
        "postal_code": "10115",
        "diagnosis": "F32.1",
        "symptoms": ["low_mood", "sleep_problems"],
        "availability": {"mon": ["08:00-18:00"], "tue": ["08:00-18:00"]},
        "max_travel_km": 20 + version,
        "travel_mode": "transit",
        "preferred_therapist_gender": "any",
        "preferred_therapy_method": "any",
        "open_to_group_therapy": False,
        "group_therapy_only": False,
        "qualified": True,
        "unmet_criteria": [],
        "two_year_rule_flag": False,
    }
    if version > 1:
        payload["changed_fields"] = ["max_travel_km"]
    kind = PATIENT_CREATED if version == 1 else PATIENT_UPDATED
    envelope = kind.build(producer="patient_service", aggregate_id=patient_id, payload=payload)
    return PendingEvent(kind.topic, envelope)


def worker(
    service: str, database_url: str, bootstrap: str, prefix: str, partitions: int
) -> subprocess.Popen[bytes]:
    """Start one real worker process of `service`."""
    env = {
        **os.environ,
        "DATABASE_URL": role_url(database_url, service),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_PREFIX": prefix,
        "KAFKA_PARTITIONS": str(partitions),
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        # matching requires one; no answer link is made here
        "ANSWER_LINK_SECRET": secrets.token_urlsafe(32),
    }
    return subprocess.Popen([sys.executable, "-m", f"{service}.worker"], env=env, cwd=ROOT)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then wait (each worker finishes its batch and leaves its group)."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


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


def latencies_ms(engine: sa.Engine, since_id: int, until_id: int | None = None) -> list[float]:
    """Handled - occurred of the outbox rows after `since_id` (up to `until_id`), sorted."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT extract(epoch FROM p.processed_at"
                " - (o.envelope->>'occurred_at')::timestamptz) * 1000"
                " FROM patient_service.outbox o JOIN matching_service.processed_events p"
                " ON p.event_id = o.event_id WHERE o.id > :since AND o.id <= :until"
            ),
            {"since": since_id, "until": until_id if until_id is not None else 2**62},
        ).scalars()
        return sorted(float(v) for v in rows)


def longest_pause_ms(engine: sa.Engine, since_id: int, until_id: int) -> float:
    """The longest time between two handling transactions of the events in the id range."""
    with engine.connect() as connection:
        return float(
            connection.execute(
                sa.text(
                    "SELECT coalesce(max(gap), 0) FROM (SELECT extract(epoch FROM at"
                    " - lag(at) OVER (ORDER BY at)) * 1000 AS gap FROM (SELECT DISTINCT"
                    " p.processed_at AS at FROM patient_service.outbox o"
                    " JOIN matching_service.processed_events p ON p.event_id = o.event_id"
                    " WHERE o.id > :since AND o.id <= :until) t) g"
                ),
                {"since": since_id, "until": until_id},
            ).scalar_one()
        )


def last_outbox_id(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.text("SELECT coalesce(max(id), 0) FROM patient_service.outbox")
            ).scalar_one()
        )


def check_order(engine: sa.Engine, bootstrap: str, topic: str, expected: int) -> str:
    """Every aggregate's events in one partition, in outbox order; matching holds the last
    version of each. Raises SystemExit otherwise."""
    with engine.connect() as connection:
        outbox_ids: dict[str, int] = dict(
            connection.execute(
                sa.text("SELECT event_id::text, id FROM patient_service.outbox")
            ).all()
        )
        stale = connection.execute(
            sa.text(
                "SELECT count(*) FROM matching_service.patient_projection m"
                " JOIN (SELECT aggregate_id::int AS patient_id, max((envelope->'payload'"
                "->>'version')::int) AS version FROM patient_service.outbox GROUP BY 1) o"
                " USING (patient_id) WHERE m.version <> o.version"
            )
        ).scalar_one()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        seen: dict[bytes, tuple[int, int]] = {}  # key -> (partition, last outbox id)
        read = disorder = 0
        deadline = time.monotonic() + 120
        while read < expected and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=500, max_records=5000).values():
                for message in messages:
                    read += 1
                    event_id = orjson.loads(message.value)["event_id"]
                    here = (message.partition, outbox_ids[event_id])
                    before = seen.get(message.key)
                    if before is not None and (before[0] != here[0] or before[1] > here[1]):
                        disorder += 1
                    seen[message.key] = here
    finally:
        consumer.close()
    if read < expected or disorder or stale:
        raise SystemExit(
            f"order check failed: {read} of {expected} read, {disorder} out of order or in "
            f"another partition, {stale} patients not at their last version in matching"
        )
    used = len({partition for partition, _ in seen.values()})
    return (
        f"order: {read} events of {len(seen)} patients read back from {used} partitions, each "
        "patient's in one partition in outbox order; matching holds every last version"
    )


def stages(engine: sa.Engine) -> str:
    """Where the throughput run's time went: publishing (relay) and handling (consumers),
    each from its first to its last row."""
    with engine.connect() as connection:
        published = connection.execute(
            sa.text(
                "SELECT count(*), extract(epoch FROM max(published_at) - min(published_at))"
                " FROM patient_service.outbox"
            )
        ).one()
        processed = connection.execute(
            sa.text(
                "SELECT count(*), extract(epoch FROM max(processed_at) - min(processed_at))"
                " FROM matching_service.processed_events"
            )
        ).one()
    return (
        f"stages: relay published {published[0]} in {float(published[1]):.2f} s "
        f"({published[0] / max(float(published[1]), 1e-3):,.0f}/s), consumers handled "
        f"{processed[0]} in {float(processed[1]):.2f} s "
        f"({processed[0] / max(float(processed[1]), 1e-3):,.0f}/s)"
    )


def cpu_seconds(pid: int, with_children: bool = False) -> float:
    """User + system CPU of a process so far (Linux /proc; 0 where unreadable), with
    `with_children` also its live children and the reaped ones it waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    total = ticks / os.sysconf("SC_CLK_TCK")
    if with_children:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                child = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(child[1]) == pid:
                total += (int(child[11]) + int(child[12])) / os.sysconf("SC_CLK_TCK")
    return total


class CpuMeter:
    """CPU seconds of the pipeline's processes (PostgreSQL, broker, workers) between marks."""

    def __init__(self, postgres_pid: int | None, broker_pid: int | None) -> None:
        self._fixed = {"PostgreSQL": postgres_pid, "broker": broker_pid}

    def mark(self, workers: dict[str, list[subprocess.Popen[bytes]]]) -> dict[str, float]:
        """CPU used so far, per part."""
        used = {
            name: cpu_seconds(pid, with_children=True)
            for name, pid in self._fixed.items()
            if pid is not None
        }
        for name, processes in workers.items():
            used[name] = sum(cpu_seconds(process.pid) for process in processes)
        return used

    @staticmethod
    def report(
        start: dict[str, float],
        before: dict[str, float],
        after: dict[str, float],
        wall_s: float,
        events: int,
    ) -> str:
        """CPU between `before` and `after` per part; the relays' from `start` (they publish
        most rows before the first one is handled)."""
        used = {name: after[name] - before[name] for name in after}
        parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in used.items())
        relay = after["relay workers"] - start["relay workers"]
        return (
            f"cpu while flowing ({wall_s:.2f} s, {events} events): {parts} = "
            f"{sum(used.values()) / max(events, 1) * 1000:.3f} ms per event; the pipeline had "
            f"{sum(used.values()) / max(wall_s, 1e-9):.2f} of {os.cpu_count()} cores (load "
            f"average {' '.join(f'{value:.1f}' for value in os.getloadavg())}); relay workers "
            f"{relay:.2f} s from their start (incl. start-up)"
        )


def summary(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 50):.0f} ms, p95 {percentile(values, 95):.0f} ms, "
        f"p99 {percentile(values, 99):.0f} ms, max {values[-1]:.0f} ms"
    )


def write_at_rate(database: Database, first_patient: int, rate: int, seconds: float) -> float:
    """One event per transaction at `rate`/s for `seconds`; returns the rate achieved."""
    total = int(rate * seconds)
    interval = 1.0 / rate
    t0 = time.monotonic()
    for n in range(total):
        with database.unit_of_work() as uow:
            uow.emit(event(first_patient + n))
            uow.commit()
        delay = t0 + (n + 1) * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return total / (time.monotonic() - t0)


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
    parser.add_argument("--partitions", type=int, default=6, help="partitions per topic")
    parser.add_argument("--relays", type=int, default=1, help="patient worker processes")
    parser.add_argument("--consumers", type=int, default=2, help="matching worker processes")
    parser.add_argument("--versions", type=int, default=2, help="events per patient (throughput)")
    parser.add_argument(
        "--join-after", type=float, default=5.0, help="rebalance run: seconds before the join"
    )
    parser.add_argument("--join-seconds", type=float, default=15.0, help="rebalance run: length")
    args = parser.parse_args()
    if min(args.partitions, args.relays, args.consumers, args.versions) < 1:
        parser.error("--partitions, --relays, --consumers and --versions must be at least 1")

    tmp = Path(tempfile.mkdtemp(prefix="bench-events-"))
    with (
        postgres_admin_url(tmp / "pg") as admin_url,
        fresh_database(admin_url) as database_url,
        kafka_broker() as (bootstrap, broker_pid),
    ):
        engine = sa.create_engine(driver_url(database_url))
        database = Database(role_url(database_url, "patient_service"), outbox=OutboxWriter(INFRA))
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        relays: list[subprocess.Popen[bytes]] = []
        consumers: list[subprocess.Popen[bytes]] = []

        meter = CpuMeter(postmaster_pid(tmp / "pg"), broker_pid)

        def start(service: str) -> subprocess.Popen[bytes]:
            return worker(service, database_url, bootstrap, prefix, args.partitions)

        print(
            f"set-up: {args.partitions} partitions per topic, {args.relays} patient worker(s) "
            f"relaying, {args.consumers} matching worker(s) in one consumer group"
        )
        try:
            # 1. throughput: a full outbox drained end to end
            patients = max(1, args.events // args.versions)
            with database.unit_of_work() as uow:
                for version in range(1, args.versions + 1):
                    for patient_id in range(1, patients + 1):
                        uow.emit(event(patient_id, version))
                uow.commit()
            written = patients * args.versions
            started = time.monotonic()
            relays = [start("patient_service") for _ in range(args.relays)]
            consumers = [start("matching_service") for _ in range(args.consumers)]
            parts = {"relay workers": relays, "matching workers": consumers}
            cpu_start = meter.mark(parts)
            first = wait_handled(engine, 1, timeout=120)
            first_count = handled(engine)
            cpu_first = meter.mark(parts)
            finished = wait_handled(engine, written, timeout=600)
            cpu_last = meter.mark(parts)
            sustained = (written - first_count) / (finished - first)
            cold = written / (finished - started)
            print(
                f"throughput: {written} events drained in {finished - started:.2f} s = {cold:,.0f} "
                f"events/s from cold start (incl. worker start-up and consumer group join); "
                f"{sustained:,.0f} events/s sustained once flowing"
            )
            print(stages(engine))
            print(
                meter.report(
                    cpu_start, cpu_first, cpu_last, finished - first, written - first_count
                )
            )
            print(check_order(engine, bootstrap, f"{prefix}{PATIENT_CREATED.topic}", written))

            # 2. latency at a fixed rate, one event per transaction
            since = last_outbox_id(engine)
            achieved = write_at_rate(database, patients + 1, args.rate, args.seconds)
            wait_handled(engine, written + int(args.rate * args.seconds), timeout=120)
            values = latencies_ms(engine, since)
            print(
                f"latency at {achieved:.0f} events/s offered ({len(values)} events, "
                f"{args.consumers} consumer(s)): {summary(values)}"
            )

            # 3. rebalance: the last consumer leaves, then joins again while events flow
            if args.consumers > 1:
                stop([consumers.pop()])
                time.sleep(3)  # the group settles on the remaining consumers
                expected = handled(engine)
                next_patient = patients + 1 + int(args.rate * args.seconds)
                since = last_outbox_id(engine)
                achieved = write_at_rate(database, next_patient, args.rate, args.join_after)
                joined_at = last_outbox_id(engine)
                consumers.append(start("matching_service"))
                rest = args.join_seconds - args.join_after
                write_at_rate(database, next_patient + 10**6, args.rate, rest)
                until = last_outbox_id(engine)
                expected += int(args.rate * args.join_after) + int(args.rate * rest)
                wait_handled(engine, expected, timeout=120)
                before = latencies_ms(engine, since, joined_at)
                during = latencies_ms(engine, joined_at, until)
                print(
                    f"rebalance: consumer {args.consumers} joined after {args.join_after:.0f} s at "
                    f"{achieved:.0f} events/s; longest pause in handling "
                    f"{longest_pause_ms(engine, joined_at, until):.0f} ms after the join "
                    f"({longest_pause_ms(engine, since, joined_at):.0f} ms before); latency of the "
                    f"{len(during)} events written from the join on: {summary(during)} "
                    f"(before: {summary(before)})"
                )
        finally:
            stop(relays + consumers)
            database.dispose()
            engine.dispose()


if __name__ == "__main__":
    main()
