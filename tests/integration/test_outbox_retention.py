"""Outbox retention and replay: prune keeps unpublished and recent rows and works in batches;
replay publishes retained rows again in order per aggregate, with their event ids, for the
chosen services only, and refuses to reach back past the retention."""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from patient_service.models import INFRA as PATIENT_INFRA
from shared.cli import main
from shared.db import Database, role_url, utcnow
from shared.kafka import RobustProducer
from shared.outbox import bucket_of
from shared.retention import RetentionExceeded, prune_published, replay_published
from tests.helpers import read_topic

pytestmark = pytest.mark.integration


def _insert(
    engine: sa.Engine,
    schema: str,
    topic: str,
    aggregate_id: str,
    *,
    published_at: datetime | None,
    producer: str = "patient_service",
) -> str:
    """One outbox row (an envelope a consumer would accept); returns its event id."""
    event_id = str(uuid.uuid4())
    envelope = {
        "event_id": event_id,
        "event_type": "test.replayed",
        "schema_version": 1,
        "occurred_at": utcnow().isoformat(),
        "producer": producer,
        "aggregate_id": aggregate_id,
        "correlation_id": None,
        "payload": {},
    }
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                f"INSERT INTO {schema}.outbox (event_id, event_type, topic, aggregate_id, bucket, "
                "envelope, published_at) VALUES (:event_id, 'test.replayed', :topic, :aggregate, "
                ":bucket, CAST(:envelope AS jsonb), :published_at)"
            ),
            {
                "event_id": event_id,
                "topic": topic,
                "aggregate": aggregate_id,
                "bucket": bucket_of(aggregate_id),
                "envelope": json.dumps(envelope),
                "published_at": published_at,
            },
        )
    return event_id


def _present(engine: sa.Engine, event_ids: list[str]) -> set[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT event_id::text FROM patient_service.outbox WHERE event_id::text = ANY(:ids)"
            ),
            {"ids": event_ids},
        ).scalars()
        return set(rows)


@pytest.fixture
def patient_db(database_url: str) -> Any:
    database = Database(role_url(database_url, "patient_service"), pool_size=2)
    yield database
    database.dispose()


def test_prune_deletes_old_published_rows_only_in_batches(
    admin_engine: sa.Engine, patient_db: Database
) -> None:
    # the rows of other tests are all younger than the retention (published at most days ago)
    as_of = utcnow()
    old = as_of - timedelta(days=15)
    old_published = [
        _insert(admin_engine, "patient_service", "patient-events", f"p{i}", published_at=old)
        for i in range(5)
    ]
    recent = _insert(
        admin_engine,
        "patient_service",
        "patient-events",
        "p9",
        published_at=as_of - timedelta(days=13),
    )
    # never published, and older than the retention: kept whatever its age
    unpublished = _insert(
        admin_engine, "patient_service", "patient-events", "p8", published_at=None
    )
    with admin_engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE patient_service.outbox SET created_at = :old WHERE event_id = :id"),
            {"old": old - timedelta(days=30), "id": unpublished},
        )
    # a row locked by someone else (a relay marking it) is skipped, not waited for
    locked_id = old_published[0]
    with admin_engine.connect() as holder:
        holder.begin()
        holder.execute(
            sa.text("SELECT id FROM patient_service.outbox WHERE event_id = :id FOR UPDATE"),
            {"id": locked_id},
        )
        done = threading.Event()
        counts: list[int] = []

        def prune() -> None:
            counts.append(
                prune_published(
                    patient_db, PATIENT_INFRA, as_of=as_of, retention_days=14, batch_size=2
                )
            )
            done.set()

        thread = threading.Thread(target=prune)
        thread.start()
        assert done.wait(30), "prune waited for a locked row"
        holder.rollback()
    thread.join()
    # the other rows of every test this session are younger than the cutoff; only ours go
    assert counts == [4]
    assert _present(admin_engine, old_published) == {locked_id}
    assert _present(admin_engine, [recent, unpublished]) == {recent, unpublished}
    # the next run takes the row that was locked; the unpublished one stays
    assert prune_published(patient_db, PATIENT_INFRA, as_of=as_of, retention_days=14) == 1
    assert _present(admin_engine, [locked_id, recent, unpublished]) == {recent, unpublished}


def test_prune_command_reports_rows_per_service(
    database_url: str,
    admin_engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    as_of = utcnow()
    gone = _insert(
        admin_engine,
        "geocoding_service",
        "location-events",
        "g1",
        published_at=as_of - timedelta(days=8),
        producer="geocoding_service",
    )
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("OUTBOX_RETENTION_DAYS", "7")
    code = main(
        ["outbox", "--prune", "--service", "geocoding_service", "--as-of", as_of.isoformat()]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"pruned": {"geocoding_service": 1}}
    with admin_engine.connect() as connection:
        assert (
            connection.execute(
                sa.text("SELECT count(*) FROM geocoding_service.outbox WHERE event_id = :id"),
                {"id": gone},
            ).scalar_one()
            == 0
        )


def _window(days_ago: int) -> tuple[datetime, datetime]:
    """A publication window of its own, well apart from the rows of other tests."""
    start = utcnow() - timedelta(days=days_ago, seconds=uuid.uuid4().int % 3600)
    return start, start + timedelta(seconds=10)


def test_replay_publishes_again_in_order_per_aggregate_with_original_ids(
    admin_engine: sa.Engine, patient_db: Database, kafka_bootstrap: str, topic_prefix: str
) -> None:
    start, end = _window(3)
    aggregates = [f"agg-{uuid.uuid4().hex[:6]}-{n}" for n in range(4)]
    expected: dict[str, list[str]] = defaultdict(list)
    for round_ in range(5):  # interleaved: ids of one aggregate are not consecutive
        for aggregate in aggregates:
            published = start + timedelta(seconds=round_)
            event_id = _insert(
                admin_engine, "patient_service", "patient-events", aggregate, published_at=published
            )
            expected[aggregate].append(event_id)
    before = _insert(
        admin_engine,
        "patient_service",
        "patient-events",
        aggregates[0],
        published_at=start - timedelta(minutes=1),
    )
    pending = _insert(
        admin_engine, "patient_service", "patient-events", aggregates[1], published_at=None
    )
    topic = f"{topic_prefix}patient-events"
    producer = RobustProducer(kafka_bootstrap, topics=[topic], partitions=3)
    try:
        result = replay_published(
            patient_db,
            PATIENT_INFRA,
            producer,
            since=start,
            until=end,
            as_of=utcnow(),
            topic_prefix=topic_prefix,
        )
    finally:
        producer.close()
    assert (result.replayed, result.failed) == (20, 0)
    messages = read_topic(kafka_bootstrap, topic, expected=20)
    seen: dict[str, list[str]] = defaultdict(list)
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        value = json.loads(message.value)
        assert message.key.decode() == value["aggregate_id"]
        seen[value["aggregate_id"]].append(value["event_id"])
    assert dict(seen) == dict(expected)  # every row once, in id order per aggregate
    assert before not in {e for ids in seen.values() for e in ids}
    assert pending not in {e for ids in seen.values() for e in ids}


def test_replay_waits_for_the_relay_holding_a_bucket(
    admin_engine: sa.Engine, patient_db: Database, kafka_bootstrap: str, topic_prefix: str
) -> None:
    start, end = _window(4)
    aggregate = f"agg-{uuid.uuid4().hex[:6]}"
    _insert(admin_engine, "patient_service", "patient-events", aggregate, published_at=start)
    producer = RobustProducer(kafka_bootstrap, topics=[f"{topic_prefix}patient-events"])
    outcome: list[Any] = []
    try:
        with admin_engine.connect() as relay:  # what a relay pass holds while it publishes
            relay.begin()
            relay.execute(
                sa.text(
                    "SELECT bucket FROM patient_service.relay_buckets WHERE bucket = :b FOR UPDATE"
                ),
                {"b": bucket_of(aggregate)},
            )
            thread = threading.Thread(
                target=lambda: outcome.append(
                    replay_published(
                        patient_db,
                        PATIENT_INFRA,
                        producer,
                        since=start,
                        until=end,
                        as_of=utcnow(),
                        topic_prefix=topic_prefix,
                    )
                )
            )
            thread.start()
            thread.join(timeout=2)
            assert thread.is_alive() and not outcome  # waiting for the bucket
            relay.rollback()
        thread.join(timeout=30)
    finally:
        producer.close()
    assert outcome[0].replayed == 1


def test_replay_command_takes_only_the_chosen_service_and_refuses_pruned_ranges(
    database_url: str,
    admin_engine: sa.Engine,
    kafka_bootstrap: str,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    start, end = _window(5)
    patient_events = [
        _insert(admin_engine, "patient_service", "patient-events", f"cli-{n}", published_at=start)
        for n in range(3)
    ]
    _insert(
        admin_engine,
        "geocoding_service",
        "location-events",
        "cli-geo",
        published_at=start,
        producer="geocoding_service",
    )
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", topic_prefix)
    code = main(
        [
            "outbox",
            "--replay",
            "--service",
            "patient_service",
            "--since",
            start.isoformat(),
            "--until",
            end.isoformat(),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out) == {
        "replayed": {"patient_service": 3},
        "failed": {"patient_service": 0},
    }
    assert "patient_service: 3 row(s) published again" in captured.err
    messages = read_topic(kafka_bootstrap, f"{topic_prefix}patient-events", expected=3)
    assert sorted(json.loads(m.value)["event_id"] for m in messages) == sorted(patient_events)
    assert (
        read_topic(kafka_bootstrap, f"{topic_prefix}location-events", expected=0, timeout=3) == []
    )

    # older than the retention (rows may be pruned): refused, nothing sent
    too_old = utcnow() - timedelta(days=15)
    code = main(["outbox", "--replay", "--since", too_old.isoformat()])
    captured = capsys.readouterr()
    assert code == 2
    assert "older than the outbox retention" in captured.err
    assert "OUTBOX_RETENTION_DAYS=14" in captured.err
    assert captured.out == ""
    # the same with a longer retention is allowed (and finds nothing that old)
    monkeypatch.setenv("OUTBOX_RETENTION_DAYS", "16")
    code = main(
        [
            "outbox",
            "--replay",
            "--service",
            "therapist_service",
            "--since",
            too_old.isoformat(),
            "--until",
            (too_old + timedelta(seconds=1)).isoformat(),
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["replayed"] == {"therapist_service": 0}


@pytest.mark.parametrize(
    "argv",
    [
        ["outbox", "--replay"],  # no --since
        ["outbox", "--since", "2026-11-01T00:00"],  # --since without --replay
        ["outbox", "--prune", "--replay", "--since", "2026-11-01T00:00"],
        ["outbox", "--replay", "--since", "yesterday"],
        ["outbox", "--prune", "--service", "billing_service"],
    ],
)
def test_bad_outbox_arguments_are_usage_errors(
    argv: list[str],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_replay_until_before_since_is_refused(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    since = utcnow() - timedelta(days=1)
    until = since - timedelta(hours=1)
    argv = ["outbox", "--replay", "--since", since.isoformat(), "--until", until.isoformat()]
    assert main([*argv, "--service", "patient_service"]) == 2
    assert "is before --since" in capsys.readouterr().err


def test_replay_refuses_since_older_than_retention_in_process(
    patient_db: Database, kafka_bootstrap: str
) -> None:
    producer = RobustProducer(kafka_bootstrap)
    try:
        as_of = utcnow()
        with pytest.raises(RetentionExceeded, match="older than the outbox retention"):
            replay_published(
                patient_db,
                PATIENT_INFRA,
                producer,
                since=as_of - timedelta(days=3),
                as_of=as_of,
                retention_days=2,
            )
    finally:
        producer.close()
