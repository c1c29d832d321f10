"""Disaster recovery: a broker that loses records it had acknowledged (replaced after the relay
published them, before any consumer read them). The outbox marks them published, so nothing
sends them again by itself: reconciliation names what the projections miss, the outbox
replay publishes the retained rows again, and a second replay applies nothing twice.

Real parts throughout: the patient and therapist APIs and relays, geocoding's consumer and
relay, matching's consumer, PostgreSQL (a database of this test's own, so reconciliation sees
only its data) and a Tansu broker killed and started empty on the same port.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from typing import Any

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition

from geocoding_service.handlers import SUBSCRIPTIONS as GEO_SUBSCRIPTIONS
from geocoding_service.handlers import handlers as geo_handlers
from geocoding_service.models import INFRA as GEO_INFRA
from geocoding_service.schemas import TOPIC as LOCATION_TOPIC
from geocoding_service.settings import GeocodingSettings
from matching_service.handlers import HANDLERS as MATCHING_HANDLERS
from matching_service.handlers import SUBSCRIPTIONS as MATCHING_SUBSCRIPTIONS
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.models import INFRA as PATIENT_INFRA
from patient_service.schemas import PATIENT_TOPIC
from patient_service.settings import PatientSettings
from shared.cli import main
from shared.consumer import ConsumerRunner, Handler
from shared.db import UnitOfWork, driver_url, role_url, utcnow
from shared.devstack import TansuBroker
from shared.events import Envelope
from shared.pgbouncer import PgBouncer
from shared.reconcile import ReconciliationReport, reconcile
from shared.runtime import ServiceRuntime, relay_forever
from tests.conftest import ADMIN_TOKEN, ANSWER_LINK_SECRET, SERVICE_TOKEN, migrated_database
from tests.helpers import background, patient_body, wait_until
from tests.integration.test_therapist_api import therapist_body
from therapist_service.app import create_app as create_therapist_app
from therapist_service.models import INFRA as THERAPIST_INFRA
from therapist_service.schemas import TOPIC as THERAPIST_TOPIC
from therapist_service.settings import TherapistSettings

pytestmark = pytest.mark.integration

BEFORE, LOST = 4, 6  # patients handled before the fault; patients whose records the broker lost
THERAPISTS_BEFORE, THERAPISTS_LOST = 1, 2


@pytest.fixture
def own_database(pg_admin_url: str, pgbouncer: PgBouncer | None) -> Iterator[tuple[str, str]]:
    """(URL the services use, admin URL reconciliation reads with) of a fresh database."""
    with migrated_database(pg_admin_url, pgbouncer, "dr") as url:
        yield url, url


def _settings(cls: type[Any], url: str, bootstrap: str, prefix: str) -> Any:
    service = cls.model_fields["service_name"].default
    values: dict[str, Any] = {
        "database_url": role_url(url, service),
        "kafka_bootstrap_servers": bootstrap,
        "kafka_topic_prefix": prefix,
        "kafka_session_timeout_ms": 6000,
        "log_json": False,
        "relay_idle_seconds": 0.05,
    }
    if "answer_link_secret" in cls.model_fields:
        values["answer_link_secret"] = ANSWER_LINK_SECRET
    if "service_token" in cls.model_fields:
        values["service_token"] = SERVICE_TOKEN
    return cls(**values)


class HandlerRuns:
    """Counts the handler runs per (service, event id) (a handler runs only for an event id
    not yet in the service's processed_events): a second run is a duplicate applied."""

    def __init__(self) -> None:
        self.runs: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def wrap(self, service: str, handlers: Mapping[str, Handler]) -> dict[str, Handler]:
        """The same handlers, counted as `service`'s."""

        def counted(handler: Handler) -> Handler:
            def run(uow: UnitOfWork, envelope: Envelope) -> None:
                with self._lock:
                    self.runs[(service, str(envelope.event_id))] += 1
                handler(uow, envelope)

            return run

        return {name: counted(handler) for name, handler in handlers.items()}

    def duplicates(self) -> int:
        """Runs beyond the first, over every event id."""
        return sum(count - 1 for count in self.runs.values() if count > 1)


def _problems(report: ReconciliationReport) -> int:
    return sum(len(d.missing) + len(d.stale) + len(d.extra) for d in report.diffs)


def _caught_up(bootstrap: str, group: str, topics: list[str]) -> bool:
    """Whether the consumer group committed the end of every partition of `topics`."""
    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(probe.partitions_for_topic(topic) or ())
        ]
        ends = probe.end_offsets(partitions)
        return bool(partitions) and all(
            (probe.committed(tp) or 0) >= end for tp, end in ends.items()
        )
    finally:
        probe.close(autocommit=False)


def _snapshot(engine: sa.Engine) -> dict[str, Any]:
    """What a duplicate applied would change: handled event ids, projection rows, the events
    geocoding emits for what it handles."""
    queries = {
        "matching processed": "SELECT count(*) FROM matching_service.processed_events",
        "geocoding processed": "SELECT count(*) FROM geocoding_service.processed_events",
        "geocoding outbox": "SELECT count(*) FROM geocoding_service.outbox",
        "patient projection": "SELECT patient_id, version, updated_at "
        "FROM matching_service.patient_projection ORDER BY 1",
        "therapist projection": "SELECT therapist_id, version, updated_at "
        "FROM matching_service.therapist_projection ORDER BY 1",
        "entity locations": "SELECT entity_type, entity_id, source_version, version, updated_at "
        "FROM geocoding_service.entity_locations ORDER BY 1",
        "matching locations": "SELECT entity_type, entity_id, version, updated_at "
        "FROM matching_service.locations ORDER BY 1",
    }
    with engine.connect() as connection:
        return {name: connection.execute(sa.text(sql)).all() for name, sql in queries.items()}


def _changes(before: dict[str, Any], after: dict[str, Any]) -> int:
    changed = 0
    for name, rows in before.items():
        if name.endswith(("processed", "outbox")):
            changed += after[name][0][0] - rows[0][0]
        else:
            changed += len(set(after[name]) ^ set(rows))
    return changed


def test_broker_replaced_after_publish_replay_restores_every_projection(
    own_database: tuple[str, str], tally: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, admin_url = own_database
    engine = sa.create_engine(driver_url(admin_url))
    broker = TansuBroker()
    bootstrap = broker.start()
    prefix = f"t{uuid.uuid4().hex[:8]}."
    patient_settings = _settings(PatientSettings, url, bootstrap, prefix)
    geo_settings = _settings(GeocodingSettings, url, bootstrap, prefix)
    matching_settings = _settings(MatchingSettings, url, bootstrap, prefix)
    therapist_settings = _settings(TherapistSettings, url, bootstrap, prefix)
    client = create_patient_app(patient_settings).test_client()
    therapists_client = create_therapist_app(therapist_settings).test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    patient_relay = ServiceRuntime.build(patient_settings, PATIENT_INFRA).relay([PATIENT_TOPIC])
    therapist_relay = ServiceRuntime.build(therapist_settings, THERAPIST_INFRA).relay(
        [THERAPIST_TOPIC]
    )
    geo_runtime = ServiceRuntime.build(geo_settings, GEO_INFRA)
    geo_relay = geo_runtime.relay([LOCATION_TOPIC])
    # the same runners throughout: they remember the broker generation they committed to
    runs = HandlerRuns()
    geo_consumer = geo_runtime.consumer(
        GEO_SUBSCRIPTIONS, runs.wrap("geocoding", geo_handlers(geo_settings))
    )
    matching_consumer = ServiceRuntime.build(matching_settings, MATCHING_INFRA).consumer(
        MATCHING_SUBSCRIPTIONS, runs.wrap("matching", MATCHING_HANDLERS)
    )
    consumers: list[ConsumerRunner] = [geo_consumer, matching_consumer]
    since = utcnow()

    def create(count: int) -> list[int]:
        ids = []
        for _ in range(count):
            response = client.post("/api/patients", json=patient_body(), headers=headers)
            assert response.status_code == 201, response.json
            ids.append(response.json["id"])
        return ids

    def create_therapists(count: int) -> list[int]:
        ids = []
        for _ in range(count):
            response = therapists_client.post(
                "/api/therapists", json=therapist_body(), headers=headers
            )
            assert response.status_code == 201, response.json
            ids.append(response.json["id"])
        return ids

    def update(patient_id: int, city: str) -> None:
        response = client.patch(f"/api/patients/{patient_id}", json={"city": city}, headers=headers)
        assert response.status_code == 200, response.json

    def consistent() -> ReconciliationReport | None:
        report = reconcile(admin_url)
        return report if report.ok else None

    def all_published() -> bool:
        with engine.connect() as connection:
            return not connection.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM patient_service.outbox "
                    "WHERE published_at IS NULL) + (SELECT count(*) FROM "
                    "therapist_service.outbox WHERE published_at IS NULL)"
                )
            ).scalar_one()

    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", prefix)
    try:
        with ExitStack() as relays:
            for relay in (patient_relay, therapist_relay, geo_relay):
                relays.enter_context(
                    background(
                        lambda stop, relay=relay: relay_forever(  # type: ignore[misc]
                            relay, stop, idle_s=0.05, max_backoff_s=0.5
                        )
                    )
                )
            # 1. normal operation: every projection follows
            with background(geo_consumer.run), background(matching_consumer.run):
                handled = create(BEFORE)
                create_therapists(THERAPISTS_BEFORE)
                wait_until(consistent, timeout=90)

            # 2. consumers away; the relay publishes, the broker acknowledges; then the
            #    broker is replaced by an empty one before anybody read those records
            lost = create(LOST)
            for patient_id in lost:  # three events per patient: order per aggregate matters
                update(patient_id, "Potsdam")
                update(patient_id, "Berlin")
            update(handled[0], "Leipzig")  # a known patient's change, lost too
            lost_therapists = create_therapists(THERAPISTS_LOST)
            wait_until(all_published, timeout=60)
            tally.fault("broker replaced after publish")
            broker.kill()
            broker.start()

            with background(geo_consumer.run), background(matching_consumer.run):
                # 3. nothing brings them back by itself; reconciliation names them
                with pytest.raises(AssertionError):
                    wait_until(consistent, timeout=5)
                report = reconcile(admin_url)
                patients = report.diff("matching_service.patient_projection")
                assert patients.missing == [str(i) for i in lost]
                assert patients.stale == [str(handled[0])]
                locations = report.diff("geocoding_service.entity_locations")
                assert locations.missing == [
                    *(f"patient:{i}" for i in lost),
                    *(f"therapist:{i}" for i in lost_therapists),
                ]
                assert locations.stale == [f"patient:{handled[0]}"]
                assert report.diff("matching_service.therapist_projection").missing == [
                    str(i) for i in lost_therapists
                ]
                assert _problems(report) == 2 * LOST + 2 + 2 * THERAPISTS_LOST

                # 4. the replay (what the runbook runs): every outbox row since the start
                assert main(["outbox", "--replay", "--since", since.isoformat()]) == 0
                final = wait_until(consistent, timeout=120)
                tally.events_lost = _problems(final)
                tally.checked += sum(diff.checked for diff in final.diffs)
                assert _ids(
                    engine, "SELECT patient_id FROM matching_service.patient_projection"
                ) == {
                    *handled,
                    *lost,
                }
                # the consumers noticed the new broker generation (re-read from the start)
                assert all(consumer.rewinds >= 1 for consumer in consumers)

                # 5. a second replay: everything is a duplicate now
                groups = {
                    f"{prefix}geocoding_service": [
                        f"{prefix}{PATIENT_TOPIC}",
                        f"{prefix}{THERAPIST_TOPIC}",
                    ],
                    f"{prefix}matching_service": [
                        f"{prefix}{PATIENT_TOPIC}",
                        f"{prefix}{THERAPIST_TOPIC}",
                        f"{prefix}{LOCATION_TOPIC}",
                    ],
                }
                for group, topics in groups.items():
                    wait_until(lambda g=group, t=topics: _caught_up(bootstrap, g, t), timeout=60)
                before = _snapshot(engine)
                assert main(["outbox", "--replay", "--since", since.isoformat()]) == 0
                for group, topics in groups.items():
                    wait_until(lambda g=group, t=topics: _caught_up(bootstrap, g, t), timeout=60)
                after = _snapshot(engine)
                # handler runs of an event id handled before (all of them, both replays), and
                # what a duplicate would have changed in the second one
                tally.duplicates_applied = runs.duplicates() + _changes(before, after)
                tally.checked += sum(
                    len(before[name])
                    for name in ("patient projection", "therapist projection", "entity locations")
                )
                assert reconcile(admin_url).ok
    finally:
        broker.stop()
        engine.dispose()
    assert tally.events_lost == 0
    assert tally.duplicates_applied == 0
    assert tally.checked > 0


def _ids(engine: sa.Engine, sql: str) -> set[int]:
    with engine.connect() as connection:
        return set(connection.execute(sa.text(sql)).scalars())
