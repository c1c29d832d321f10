"""Outbox retention benchmark: the daily prune on a large outbox while the API keeps writing,
and a replay of retained rows to a broker.

1. Fills patient_service's outbox (fresh database): `--old` rows published 20 days ago,
   `--pending` rows never published, `--outside` rows published 5 days ago, then `--recent`
   rows published 2 days ago.
2. Prunes (`shared.retention.prune_published`, retention 14 days) while a writer thread
   inserts an outbox row and marks it published, one transaction each, as fast as it can:
   prints the prune's rows/s and the writer's latencies, beside those of the same writer
   just before the prune (a long lock would show as a slowest write near the prune's time).
3. Replays the window of the `--recent` rows (3 to 1 days ago) to a broker
   (`replay_published`): rows/s; the `--outside` rows are retained but not in the window.

Database: BENCH_DATABASE_URL, else TEST_DATABASE_URL (a superuser URL; a database is created
and dropped), else an embedded PostgreSQL. Broker: BENCH_KAFKA_BOOTSTRAP_SERVERS or a Tansu
started here.

Usage: python benchmarks/bench_retention.py [--old 200000] [--recent 20000] [--pending 1000]
       [--outside 100000] [--baseline 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_support import fresh_database, kafka_broker, postgres_admin_url  # noqa: E402

from patient_service.models import INFRA  # noqa: E402
from shared.db import Database, driver_url, role_url, utcnow  # noqa: E402
from shared.kafka import RobustProducer  # noqa: E402
from shared.retention import prune_published, replay_published  # noqa: E402

FILL = """
INSERT INTO patient_service.outbox
    (event_id, event_type, topic, aggregate_id, bucket, envelope, created_at, published_at)
SELECT gen_random_uuid(), 'patient.updated', 'patient-events', (n % 5000)::text, n % 16,
       jsonb_build_object('event_id', gen_random_uuid(), 'event_type', 'patient.updated',
                          'schema_version', 1, 'occurred_at', :at, 'producer', 'patient_service',
                          'aggregate_id', (n % 5000)::text, 'correlation_id', NULL,
                          'payload', jsonb_build_object('patient_id', n % 5000, 'version', n,
                                                        'postal_code', '10115')),
       CAST(:at AS timestamptz), CAST(:published AS timestamptz)
FROM generate_series(1, :count) AS n
"""


def fill(engine: sa.Engine, count: int, published: object, at: object) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text(FILL), {"count": count, "published": published, "at": at})
        connection.execute(sa.text("ANALYZE patient_service.outbox"))


def writer(database: Database, stop: threading.Event, latencies: list[float]) -> None:
    """What the API and the relay do meanwhile: insert a row, then mark it published."""
    outbox = INFRA.outbox
    while not stop.is_set():
        started = time.monotonic()
        with database.session() as session, session.begin():
            row_id = session.execute(
                sa.insert(outbox)
                .values(
                    event_id=uuid.uuid4(),
                    event_type="patient.updated",
                    topic="patient-events",
                    aggregate_id="w",
                    bucket=0,
                    envelope={},
                )
                .returning(outbox.c.id)
            ).scalar_one()
        with database.session() as session, session.begin():
            session.execute(
                sa.update(outbox).where(outbox.c.id == row_id).values(published_at=utcnow())
            )
        latencies.append(time.monotonic() - started)


def _summary(latencies: list[float]) -> str:
    values = sorted(latencies)
    if not values:
        return "none"

    def at(share: float) -> float:
        return values[min(len(values) - 1, int(share * len(values)))] * 1000

    return (
        f"{len(values)} writes, p50 {at(0.5):.0f} ms, p99 {at(0.99):.0f} ms, "
        f"max {values[-1] * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", type=int, default=200_000, help="rows past the retention")
    parser.add_argument("--recent", type=int, default=20_000, help="rows within it (replayed)")
    parser.add_argument("--pending", type=int, default=1_000, help="rows never published")
    parser.add_argument(
        "--outside", type=int, default=100_000, help="retained rows before the replay's window"
    )
    parser.add_argument(
        "--baseline", type=float, default=3.0, help="seconds of writes before the prune"
    )
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-retention-"))
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with (
        postgres_admin_url(tmp / "pg") as admin_url,
        fresh_database(admin_url, name=name) as url,
        kafka_broker() as (bootstrap, _),
    ):
        engine = sa.create_engine(driver_url(url))
        database = Database(role_url(url, "patient_service"), pool_size=4)
        producer = RobustProducer(bootstrap, topics=[f"{name}.patient-events"], partitions=3)
        now = utcnow()
        record: dict[str, object] = {
            "old": args.old,
            "recent": args.recent,
            "pending": args.pending,
            "outside": args.outside,
        }
        try:
            fill(engine, args.old, now - timedelta(days=20), now - timedelta(days=20))
            fill(engine, args.pending, None, now - timedelta(days=30))
            # retained, but published before the replay's window (and ids below it)
            fill(engine, args.outside, now - timedelta(days=5), now - timedelta(days=5))
            fill(engine, args.recent, now - timedelta(days=2), now - timedelta(days=2))

            # 2. the prune, with the API writing meanwhile
            latencies: list[float] = []
            stop = threading.Event()
            thread = threading.Thread(target=writer, args=(database, stop, latencies))
            thread.start()
            time.sleep(0.5)
            start = len(latencies)
            time.sleep(args.baseline)  # the same writes without a prune, to compare with
            before = len(latencies)
            started = time.monotonic()
            pruned = prune_published(database, INFRA, as_of=now, retention_days=14)
            seconds = time.monotonic() - started
            baseline, during = latencies[start:before], latencies[before:]
            stop.set()
            thread.join()
            slowest_ms = max(during, default=0.0) * 1000
            print(
                f"prune: {pruned:,} rows in {seconds:.2f} s = {pruned / seconds:,.0f} rows/s "
                f"(batches of 1000)\n"
                f"writes meanwhile (insert + mark published): {_summary(during)}\n"
                f"writes without a prune, just before:       {_summary(baseline)}"
            )
            with engine.connect() as connection:
                left: dict[bool, int] = dict(
                    connection.execute(
                        sa.text(
                            "SELECT published_at IS NULL, count(*) FROM patient_service.outbox "
                            "WHERE aggregate_id <> 'w' GROUP BY 1"
                        )
                    ).all()
                )
            assert pruned == args.old, (pruned, args.old)
            assert left.get(False, 0) == args.recent + args.outside, left
            assert left.get(True, 0) == args.pending, left
            record.update(prune_rows=pruned, prune_s=round(seconds, 3), writes=len(during))
            record["slowest_write_ms"] = round(slowest_ms, 1)

            # 3. the replay of what is retained
            started = time.monotonic()
            result = replay_published(
                database,
                INFRA,
                producer,
                since=now - timedelta(days=3),
                until=now - timedelta(days=1),
                as_of=now,
                topic_prefix=f"{name}.",
            )
            seconds = time.monotonic() - started
            print(
                f"replay: {result.replayed:,} rows in {seconds:.2f} s = "
                f"{result.replayed / seconds:,.0f} rows/s ({result.failed} refused)"
            )
            assert (result.replayed, result.failed) == (args.recent, 0), result
            record.update(replay_rows=result.replayed, replay_s=round(seconds, 3))
            if args.json:
                args.json.write_text(json.dumps(record, indent=2))
        finally:
            producer.close()
            database.dispose()
            engine.dispose()


if __name__ == "__main__":
    main()
