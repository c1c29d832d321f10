"""A broker that comes back empty (killed in-memory Tansu): consumers must not skip records.

The consumer's positions belong to the old broker's log; the new broker's partitions start
again at offset 0. Reading on from the old positions would skip the records below them.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.handlers import HANDLERS, SUBSCRIPTIONS
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.models import INFRA as PATIENT_INFRA
from patient_service.schemas import PATIENT_TOPIC
from patient_service.settings import PatientSettings
from shared.devstack import TansuBroker
from shared.runtime import ServiceRuntime, relay_forever
from tests.helpers import background, patient_body, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]

CYCLES = 5


def _missing_in_matching(engine: sa.Engine, patient_ids: list[int]) -> set[int]:
    with engine.connect() as connection:
        present = connection.execute(
            sa.text(
                "SELECT patient_id FROM matching_service.patient_projection "
                "WHERE patient_id = ANY(:ids)"
            ),
            {"ids": patient_ids},
        ).scalars()
        return set(patient_ids) - set(present)


def test_every_patient_reaches_matching_across_five_broker_replacements(
    make_settings: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    broker = TansuBroker()
    bootstrap = broker.start()
    patient_settings = make_settings(PatientSettings, kafka_bootstrap_servers=bootstrap)
    matching_settings = make_settings(MatchingSettings, kafka_bootstrap_servers=bootstrap)
    client = create_patient_app(patient_settings).test_client()
    relay = ServiceRuntime.build(patient_settings, PATIENT_INFRA).relay([PATIENT_TOPIC])
    consumer = ServiceRuntime.build(matching_settings, MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, HANDLERS
    )
    created: list[int] = []

    def create(count: int) -> None:
        for _ in range(count):
            response = client.post("/api/patients", json=patient_body(), headers=admin_headers)
            assert response.status_code == 201, response.json  # the outbox buffers the event
            created.append(response.json["id"])

    def all_in_matching() -> bool:
        return not _missing_in_matching(admin_engine, created)

    try:
        with (
            background(lambda stop: relay_forever(relay, stop, idle_s=0.05, max_backoff_s=0.5)),
            background(consumer.run),
        ):
            for cycle in range(CYCLES):
                create(3)  # before: handled by matching on the old broker
                wait_until(all_in_matching, timeout=90)
                broker.kill()  # the log, the topics and the group's offsets are gone
                create(6)  # during the outage: 201 at once, waiting in the outbox
                broker.start()  # empty, on the same port
                create(3)  # after
                try:
                    wait_until(all_in_matching, timeout=90)
                except AssertionError:
                    missing = _missing_in_matching(admin_engine, created)
                    raise AssertionError(
                        f"cycle {cycle}: never reached matching: {missing}"
                    ) from None
    finally:
        broker.stop()
    assert len(created) == CYCLES * 12
    print(f"rewinds: {consumer.rewinds}")
    assert consumer.rewinds >= CYCLES  # each replacement noticed (and logged as a warning)
