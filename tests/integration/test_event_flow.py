"""Outbox -> Kafka -> consumer behaviour against a real PostgreSQL and a real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from typing import Any

import pytest
import sqlalchemy as sa
from kafka import KafkaProducer

from matching_service.app import create_app as create_matching_app
from matching_service.handlers import HANDLERS, SUBSCRIPTIONS
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.models import INFRA as PATIENT_INFRA
from patient_service.schemas import PATIENT_TOPIC
from patient_service.settings import PatientSettings
from shared.devstack import ROOT, TansuBroker
from shared.events import Envelope
from shared.runtime import ServiceRuntime, relay_forever
from tests.helpers import (
    background,
    dead_letters,
    envelopes,
    location_resolved,
    patient_body,
    read_topic,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]


def _relay(settings: Any, infra: Any, topics: list[str]) -> Any:
    return ServiceRuntime.build(settings, infra).relay(topics)


def _projected(engine: sa.Engine, patient_id: int) -> bool:
    """Whether matching's projection holds the patient."""
    with engine.connect() as connection:
        return (
            connection.execute(
                sa.text("SELECT 1 FROM matching_service.patient_projection WHERE patient_id = :id"),
                {"id": patient_id},
            ).first()
            is not None
        )


def _projected_version_and_distance(engine: sa.Engine, patient_id: int) -> tuple[int, int]:
    """(version, max_travel_km) of matching's copy of the patient."""
    with engine.connect() as connection:
        version, distance = connection.execute(
            sa.text(
                "SELECT version, max_travel_km FROM matching_service.patient_projection "
                "WHERE patient_id = :id"
            ),
            {"id": patient_id},
        ).one()
    return int(version), int(distance)


def _pending(engine: sa.Engine, schema: str) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.text(f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL")
        ).scalar_one()


def test_patient_created_over_rest_reaches_matching_and_a_search_can_start(
    make_settings: Any, admin_headers: dict[str, str]
) -> None:
    patient_settings = make_settings(PatientSettings)
    matching_settings = make_settings(MatchingSettings)
    patients = create_patient_app(patient_settings).test_client()
    matching = create_matching_app(matching_settings).test_client()
    consumer = ServiceRuntime.build(matching_settings, MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, HANDLERS
    )
    relay = _relay(patient_settings, PATIENT_INFRA, [PATIENT_TOPIC])
    with background(consumer.run), background(lambda stop: relay_forever(relay, stop, idle_s=0.05)):
        patient = patients.post("/api/patients", json=patient_body(), headers=admin_headers).json
        # geocoding's part (tests/integration/test_geocoding.py): the patient is located
        with ServiceRuntime.build(matching_settings, MATCHING_INFRA).database.unit_of_work() as uow:
            location = location_resolved("patient", patient["id"])
            HANDLERS[location.event_type](uow, location)
            uow.commit()
        started = wait_until(
            lambda: (
                response
                if (
                    response := matching.post(
                        "/api/patient-searches",
                        json={"patient_id": patient["id"]},
                        headers=admin_headers,
                    )
                ).status_code
                == 201
                else None
            )
        )
    search = started.json
    assert search["patient_id"] == patient["id"]
    assert search["status"] == "active"
    again = matching.post(
        "/api/patient-searches", json={"patient_id": patient["id"]}, headers=admin_headers
    )
    assert again.status_code == 409
    assert again.json["error"]["details"]["existing_search_id"] == search["id"]
    fetched = matching.get(f"/api/patient-searches/{search['id']}", headers=admin_headers)
    assert {name: fetched.json[name] for name in search} == search  # the detail shows more


def test_search_for_unknown_patient_is_404_with_clear_message(
    make_settings: Any, admin_headers: dict[str, str]
) -> None:
    matching = create_matching_app(make_settings(MatchingSettings)).test_client()
    response = matching.post(
        "/api/patient-searches", json={"patient_id": 987654321}, headers=admin_headers
    )
    assert response.status_code == 404
    assert "not known to matching" in response.json["error"]["message"]


def _patient_event(patient_id: int, version: int, **changes: Any) -> Envelope:
    from patient_service.schemas import PATIENT_CREATED, PATIENT_UPDATED

    payload = {
        "patient_id": patient_id,
        "version": version,
        "status": "registered",
        "gender": "female",
        "birth_date": "1990-01-01",
        "postal_code": "10115",
        "diagnosis": "F32.1",
        "symptoms": ["low_mood"],
        "availability": {"mon": ["08:00-18:00"]},
        "max_travel_km": 20,
        "travel_mode": "car",
        "preferred_therapist_gender": "any",
        "preferred_therapy_method": "any",
        "open_to_group_therapy": False,
        "group_therapy_only": False,
        "qualified": True,
        "unmet_criteria": [],
        "two_year_rule_flag": False,
        **changes,
    }
    event_type = PATIENT_CREATED if version == 1 else PATIENT_UPDATED
    return event_type.build(producer="patient_service", aggregate_id=patient_id, payload=payload)


def _produce(bootstrap: str, topic: str, values: list[bytes], key: str = "k") -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for value in values:
        producer.send(topic, key=key.encode(), value=value)
    producer.flush()
    producer.close()


def _produce_null(bootstrap: str, topic: str, key: str = "k") -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topic, key=key.encode(), value=None)
    producer.flush()
    producer.close()


def test_database_outage_is_retried_not_dead_lettered(
    make_settings: Any, kafka_bootstrap: str, topic_prefix: str, admin_engine: sa.Engine
) -> None:
    settings = make_settings(MatchingSettings, consumer_max_attempts=2)
    failures = {"left": 3}

    def flaky(uow: Any, envelope: Envelope) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        HANDLERS[envelope.event_type](uow, envelope)

    consumer = ServiceRuntime.build(settings, MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, {name: flaky for name in HANDLERS}
    )
    patient_id = 600_000 + uuid.uuid4().int % 100_000
    _produce(
        kafka_bootstrap,
        f"{topic_prefix}{PATIENT_TOPIC}",
        [_patient_event(patient_id, 1).to_bytes()],
    )
    with background(consumer.run):
        wait_until(
            lambda: _projected(admin_engine, patient_id),
            timeout=60,
        )
    assert failures["left"] == 0
    assert read_topic(kafka_bootstrap, f"{topic_prefix}matching_service.dlq", 0, timeout=3) == []


def test_same_event_delivered_twice_changes_matching_once(
    make_settings: Any, kafka_bootstrap: str, topic_prefix: str, admin_engine: sa.Engine
) -> None:
    settings = make_settings(MatchingSettings)
    calls: list[str] = []

    def counting(uow: Any, envelope: Envelope) -> None:
        calls.append(str(envelope.event_id))
        HANDLERS[envelope.event_type](uow, envelope)

    consumer = ServiceRuntime.build(settings, MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, {name: counting for name in HANDLERS}
    )
    patient_id = 700_000 + uuid.uuid4().int % 100_000
    event = _patient_event(patient_id, 1)
    _produce(
        kafka_bootstrap, f"{topic_prefix}{PATIENT_TOPIC}", [event.to_bytes(), event.to_bytes()]
    )
    with background(consumer.run):
        wait_until(lambda: len(calls) >= 1)
        # the duplicate is read too; give the consumer time to reach it
        later = _patient_event(patient_id, 2, max_travel_km=30)
        _produce(kafka_bootstrap, f"{topic_prefix}{PATIENT_TOPIC}", [later.to_bytes()])
        wait_until(lambda: len(calls) >= 2)
    assert calls == [str(event.event_id), str(later.event_id)]
    with admin_engine.connect() as connection:
        processed = connection.execute(
            sa.text("SELECT count(*) FROM matching_service.processed_events WHERE event_id = :id"),
            {"id": event.event_id},
        ).scalar_one()
    assert _projected_version_and_distance(admin_engine, patient_id) == (2, 30)
    assert processed == 1


def test_older_version_arriving_late_does_not_overwrite_projection(
    make_settings: Any, admin_engine: sa.Engine
) -> None:
    settings = make_settings(MatchingSettings)
    runtime = ServiceRuntime.build(settings, MATCHING_INFRA)
    patient_id = 800_000 + uuid.uuid4().int % 100_000
    for event in (_patient_event(patient_id, 2, max_travel_km=40), _patient_event(patient_id, 1)):
        with runtime.database.unit_of_work() as uow:
            HANDLERS[event.event_type](uow, event)
            uow.commit()
    assert _projected_version_and_distance(admin_engine, patient_id) == (2, 40)


def test_poison_messages_go_to_dead_letter_topic_and_later_messages_flow(
    make_settings: Any, kafka_bootstrap: str, topic_prefix: str, admin_engine: sa.Engine
) -> None:
    settings = make_settings(MatchingSettings, consumer_max_attempts=2)
    consumer = ServiceRuntime.build(settings, MATCHING_INFRA).consumer(SUBSCRIPTIONS, HANDLERS)
    patient_id = 900_000 + uuid.uuid4().int % 100_000
    bad_payload = _patient_event(patient_id, 1).model_copy(update={"payload": {"patient_id": "x"}})
    good = _patient_event(patient_id, 1)
    unknown = good.model_copy(update={"event_type": "patient.teleported", "event_id": uuid.uuid4()})
    topic = f"{topic_prefix}{PATIENT_TOPIC}"
    _produce(
        kafka_bootstrap,
        topic,
        [b"\x00not json", bad_payload.to_bytes(), unknown.to_bytes()],
    )
    _produce_null(kafka_bootstrap, topic)
    _produce(kafka_bootstrap, topic, [good.to_bytes()])
    with background(consumer.run):
        wait_until(lambda: _projected(admin_engine, patient_id))
    dead = dead_letters(read_topic(kafka_bootstrap, f"{topic_prefix}matching_service.dlq", 3))
    assert len(dead) == 3  # the unknown event type is skipped, not dead-lettered
    assert all(record["dlq.original.topic"] == topic for record in dead)
    assert "not a valid event envelope" in dead[0]["dlq.reason"]
    assert dead[0]["value"] == b"\x00not json"  # the original bytes, for a later replay
    assert "payload invalid" in dead[1]["dlq.reason"]
    assert dead[1]["dlq.event.id"] == str(bad_payload.event_id)
    assert "null message" in dead[2]["dlq.reason"]  # a tombstone does not block the partition


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_handler_that_keeps_failing_is_dead_lettered_after_max_attempts(
    make_settings: Any, kafka_bootstrap: str, topic_prefix: str, max_attempts: int
) -> None:
    settings = make_settings(MatchingSettings, consumer_max_attempts=max_attempts)
    attempts: list[int] = []

    def broken(uow: Any, envelope: Envelope) -> None:
        attempts.append(1)
        raise RuntimeError("database said no")

    consumer = ServiceRuntime.build(settings, MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, {"patient.created": broken}
    )
    event = _patient_event(1, 1)
    _produce(kafka_bootstrap, f"{topic_prefix}{PATIENT_TOPIC}", [event.to_bytes()])
    with background(consumer.run):
        dead = dead_letters(read_topic(kafka_bootstrap, f"{topic_prefix}matching_service.dlq", 1))
    assert len(attempts) == max_attempts
    assert dead[0]["dlq.attempts"] == str(max_attempts)
    assert dead[0]["dlq.reason"] == "RuntimeError"  # a foreign message may quote values
    assert dead[0]["dlq.event.type"] == "patient.created"


def _insert_outbox_rows(make_settings: Any, patients: int, events_each: int) -> list[str]:
    """Outbox rows written through the real writer: `events_each` versions of each patient."""
    from patient_service.schemas import PATIENT_TOPIC as TOPIC
    from shared.outbox import PendingEvent

    runtime = ServiceRuntime.build(make_settings(PatientSettings), PATIENT_INFRA)
    ids: list[str] = []
    base = 1_000_000 + uuid.uuid4().int % 1_000_000
    with runtime.database.unit_of_work() as uow:
        for version in range(1, events_each + 1):
            for patient_id in range(base, base + patients):
                event = _patient_event(patient_id, version)
                uow.emit(PendingEvent(TOPIC, event))
                ids.append(str(event.event_id))
        uow.commit()
    return ids


def _assert_in_order_per_patient(records: list[dict[str, Any]]) -> None:
    versions: dict[int, list[int]] = defaultdict(list)
    for record in records:
        versions[record["payload"]["patient_id"]].append(record["payload"]["version"])
    for seen in versions.values():
        assert seen == sorted(seen), f"out of order: {seen}"


def test_two_relays_at_once_publish_each_outbox_row_once_in_order(
    make_settings: Any, kafka_bootstrap: str, topic_prefix: str, admin_engine: sa.Engine
) -> None:
    ids = _insert_outbox_rows(make_settings, patients=50, events_each=6)
    settings = make_settings(PatientSettings, relay_batch_size=40)
    relays = [_relay(settings, PATIENT_INFRA, [PATIENT_TOPIC]) for _ in range(2)]
    for relay in relays:
        relay._buckets_per_pass = 4  # small passes so the two relays really interleave
    with (
        background(lambda stop: relay_forever(relays[0], stop, idle_s=0.01)),
        background(lambda stop: relay_forever(relays[1], stop, idle_s=0.01)),
    ):
        wait_until(lambda: _pending(admin_engine, "patient_service") == 0)
    records = envelopes(read_topic(kafka_bootstrap, f"{topic_prefix}{PATIENT_TOPIC}", len(ids)))
    published = [record["event_id"] for record in records]
    assert sorted(published) == sorted(ids)  # each row exactly once
    _assert_in_order_per_patient(records)


def test_a_relay_pass_stops_at_its_byte_cap_and_the_rest_follows_in_order(
    make_settings: Any, kafka_bootstrap: str, topic_prefix: str, admin_engine: sa.Engine
) -> None:
    """A pass reads rows until their envelopes pass RELAY_MAX_PASS_BYTES (2,000 rows of up
    to 1 MiB would otherwise sit in the relay at once); the first row always goes, and what
    is cut off follows in later passes, each aggregate still in order."""
    ids = _insert_outbox_rows(make_settings, patients=5, events_each=6)
    relay = _relay(make_settings(PatientSettings), PATIENT_INFRA, [PATIENT_TOPIC])
    with admin_engine.connect() as connection:
        sizes = (
            connection.execute(
                sa.text(
                    "SELECT octet_length(envelope::text) FROM patient_service.outbox "
                    "WHERE published_at IS NULL ORDER BY id"
                )
            )
            .scalars()
            .all()
        )
    assert len(sizes) == len(ids)
    relay._max_pass_bytes = 1  # below any row: one row a pass
    assert relay.publish_pending().published == 1
    relay._max_pass_bytes = sizes[1] + sizes[2] + sizes[3]  # rows 2-4 fit, the 5th does not
    assert relay.publish_pending().published == 3
    while _pending(admin_engine, "patient_service"):
        assert 1 <= relay.publish_pending().published <= 4  # rows differ by a few bytes
    records = envelopes(read_topic(kafka_bootstrap, f"{topic_prefix}{PATIENT_TOPIC}", len(ids)))
    assert sorted(record["event_id"] for record in records) == sorted(ids)  # each once
    _assert_in_order_per_patient(records)


def test_api_answers_201_while_broker_is_down_and_nothing_is_lost_when_it_returns(
    make_settings: Any, admin_headers: dict[str, str], topic_prefix: str, admin_engine: sa.Engine
) -> None:
    broker = TansuBroker()
    bootstrap = broker.start()
    broker.stop()
    settings = make_settings(PatientSettings, kafka_bootstrap_servers=bootstrap)
    client = create_patient_app(settings).test_client()
    relay = _relay(settings, PATIENT_INFRA, [PATIENT_TOPIC])
    expected: list[tuple[int, int]] = []
    with background(lambda stop: relay_forever(relay, stop, idle_s=0.05, max_backoff_s=1.0)):
        for _ in range(5):
            created = client.post("/api/patients", json=patient_body(), headers=admin_headers)
            assert created.status_code == 201
            pid = created.json["id"]
            expected.append((pid, 1))
            for city in ("Berlin", "Potsdam"):
                updated = client.patch(
                    f"/api/patients/{pid}", json={"city": city}, headers=admin_headers
                )
                assert updated.status_code == 200
                expected.append((pid, updated.json["version"]))
        assert _pending(admin_engine, "patient_service") == len(expected)
        broker.start()
        try:
            wait_until(lambda: _pending(admin_engine, "patient_service") == 0, timeout=60)
            records = envelopes(
                read_topic(bootstrap, f"{topic_prefix}{PATIENT_TOPIC}", len(expected))
            )
        finally:
            broker.stop()
    seen = {(r["payload"]["patient_id"], r["payload"]["version"]) for r in records}
    assert seen == set(expected)
    _assert_in_order_per_patient(records)


def test_event_committed_by_api_survives_a_killed_worker_and_is_published_on_restart(
    make_settings: Any,
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    settings = make_settings(PatientSettings)
    client = create_patient_app(settings).test_client()
    created = client.post("/api/patients", json=patient_body(), headers=admin_headers)
    assert created.status_code == 201  # committed: patient row and outbox row
    # the request's process is done: the event exists only as an outbox row. A worker that
    # cannot publish it (no broker reachable) is killed hard; a new relay must publish it.
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "KAFKA_TOPIC_PREFIX": topic_prefix,
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "patient_service.worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    threading.Event().wait(3)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert _pending(admin_engine, "patient_service") == 1
    relay = _relay(settings, PATIENT_INFRA, [PATIENT_TOPIC])
    with background(lambda stop: relay_forever(relay, stop, idle_s=0.05)):
        wait_until(lambda: _pending(admin_engine, "patient_service") == 0)
    records = envelopes(read_topic(kafka_bootstrap, f"{topic_prefix}{PATIENT_TOPIC}", 1))
    assert [r["payload"]["patient_id"] for r in records] == [created.json["id"]]
    assert records[0]["event_type"] == "patient.created"
    wire = json.dumps(records[0])
    for identifier in ("first_name", "last_name", "email"):  # no direct identifiers in events
        assert created.json[identifier] not in wire


def test_relay_recovers_when_broker_restarts_and_forgets_its_producer_state(
    make_settings: Any, admin_headers: dict[str, str], topic_prefix: str, admin_engine: sa.Engine
) -> None:
    broker = TansuBroker()
    bootstrap = broker.start()
    settings = make_settings(PatientSettings, kafka_bootstrap_servers=bootstrap)
    client = create_patient_app(settings).test_client()
    relay = _relay(settings, PATIENT_INFRA, [PATIENT_TOPIC])
    try:
        with background(lambda stop: relay_forever(relay, stop, idle_s=0.05, max_backoff_s=1.0)):
            before = client.post("/api/patients", json=patient_body(), headers=admin_headers)
            wait_until(lambda: _pending(admin_engine, "patient_service") == 0)
            builds_before = relay._producer.rebuilds
            broker.stop()  # in-memory broker: topics, offsets and producer ids are gone
            broker.start()
            after = client.post("/api/patients", json=patient_body(), headers=admin_headers)
            wait_until(lambda: _pending(admin_engine, "patient_service") == 0, timeout=60)
            records = envelopes(read_topic(bootstrap, f"{topic_prefix}{PATIENT_TOPIC}", 1))
    finally:
        broker.stop()
    assert before.status_code == after.status_code == 201
    assert [r["payload"]["patient_id"] for r in records] == [after.json["id"]]
    assert relay._producer.rebuilds > builds_before  # the broken producer was replaced


def test_no_search_starts_for_a_patient_in_therapy(
    make_settings: Any, admin_headers: dict[str, str]
) -> None:
    settings = make_settings(MatchingSettings)
    runtime = ServiceRuntime.build(settings, MATCHING_INFRA)
    patient_id = 500_000 + uuid.uuid4().int % 100_000
    event = _patient_event(patient_id, 1, status="in_therapy")
    with runtime.database.unit_of_work() as uow:
        HANDLERS[event.event_type](uow, event)
        uow.commit()
    matching = create_matching_app(settings).test_client()
    response = matching.post(
        "/api/patient-searches", json={"patient_id": patient_id}, headers=admin_headers
    )
    assert response.status_code == 409
    assert response.json["error"]["details"]["patient_status"] == "in_therapy"


def test_search_for_impossible_patient_id_is_422(
    make_settings: Any, admin_headers: dict[str, str]
) -> None:
    matching = create_matching_app(make_settings(MatchingSettings)).test_client()
    response = matching.post(
        "/api/patient-searches", json={"patient_id": 2**31}, headers=admin_headers
    )
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == "patient_id"


def test_row_that_cannot_be_published_is_parked_and_holds_back_only_its_aggregate(
    make_settings: Any,
    kafka_bootstrap: str,
    topic_prefix: str,
    admin_engine: sa.Engine,
    admin_headers: dict[str, str],
) -> None:
    from shared.outbox import PendingEvent

    settings = make_settings(PatientSettings, relay_max_attempts=2)
    runtime = ServiceRuntime.build(settings, PATIENT_INFRA)
    stuck_id, other_id = (400_000 + uuid.uuid4().int % 100_000 + n for n in (0, 1))
    oversized = _patient_event(stuck_id, 1).model_copy(
        update={"payload": {"patient_id": stuck_id, "padding": "x" * 2_000_000}}
    )
    with runtime.database.unit_of_work() as uow:
        for event in (oversized, _patient_event(stuck_id, 2), _patient_event(other_id, 1)):
            uow.emit(PendingEvent(PATIENT_TOPIC, event))
        uow.commit()
    relay = runtime.relay([PATIENT_TOPIC])
    passes = [relay.publish_pending() for _ in range(4)]
    assert [p.failed > 0 for p in passes] == [True, True, False, False]  # parked after 2
    records = envelopes(read_topic(kafka_bootstrap, f"{topic_prefix}{PATIENT_TOPIC}", 1))
    assert [r["payload"]["patient_id"] for r in records] == [other_id]  # stuck_id v2 waits
    status = (
        create_patient_app(settings).test_client().get("/api/admin/outbox", headers=admin_headers)
    )
    assert status.json["pending"] == 2
    [stuck] = status.json["stuck"]
    assert stuck["aggregate_id"] == str(stuck_id)
    assert "MessageSizeTooLarge" in stuck["last_error"]
    from shared.outbox import retry_stuck

    assert retry_stuck(runtime.database, PATIENT_INFRA, max_attempts=2) == 1
    assert relay.publish_pending().failed > 0  # tried again (and still too large)


def test_search_started_moves_the_patient_to_searching_once(
    make_settings: Any,
    kafka_bootstrap: str,
    topic_prefix: str,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    from matching_service.schemas import SEARCH_STARTED
    from patient_service.handlers import SUBSCRIPTIONS as PATIENT_SUBSCRIPTIONS
    from patient_service.handlers import handlers as patient_handlers

    settings = make_settings(PatientSettings)
    client = create_patient_app(settings).test_client()
    patient = client.post("/api/patients", json=patient_body(), headers=admin_headers).json
    started = SEARCH_STARTED.build(
        producer="matching_service",
        aggregate_id=77,
        payload={
            "search_id": 77,
            "patient_id": patient["id"],
            "status": "active",
            "waiting_since": "2026-11-23T10:00:00Z",
            "contact_budget": 25,
        },
    )
    topic = f"{topic_prefix}search-events"
    _produce(kafka_bootstrap, topic, [started.to_bytes(), started.to_bytes()])
    consumer = ServiceRuntime.build(settings, PATIENT_INFRA).consumer(
        PATIENT_SUBSCRIPTIONS, patient_handlers(settings)
    )

    def current() -> dict[str, Any]:
        return client.get(f"/api/patients/{patient['id']}", headers=admin_headers).json

    with background(consumer.run):
        wait_until(lambda: current()["status"] == "searching")
    assert current()["version"] == 2  # the duplicate delivery changed nothing
    with admin_engine.connect() as connection:
        emitted = (
            connection.execute(
                sa.text(
                    "SELECT envelope->'payload'->'changed_fields' FROM patient_service.outbox "
                    "WHERE aggregate_id = :id AND event_type = 'patient.updated'"
                ),
                {"id": str(patient["id"])},
            )
            .scalars()
            .all()
        )
    assert emitted == [["status"]]  # matching learns the new status too
