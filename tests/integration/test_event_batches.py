"""A poll batch in one transaction: event ids recorded in one statement, runs of events with
a multi-event handler handled together, and the result the same as one by one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.handlers import HANDLERS, SUBSCRIPTIONS
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from shared.consumer import Batchable
from shared.db import UnitOfWork
from shared.events import MAX_VERSION_JUMP, Envelope
from shared.runtime import ServiceRuntime
from tests.integration.test_event_flow import (
    _patient_event,
    _projected_version_and_distance,
)

pytestmark = pytest.mark.integration


@dataclass
class Message:
    offset: int
    value: bytes
    topic: str
    partition: int = 0
    key: bytes = b"k"
    headers: tuple[()] = ()


def _messages(topic: str, events: Sequence[Envelope]) -> list[Message]:
    return [Message(n, event.to_bytes(), topic) for n, event in enumerate(events)]


def _processed(engine: sa.Engine, events: Sequence[Envelope]) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.text(
                "SELECT count(*) FROM matching_service.processed_events "
                "WHERE event_id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": [str(event.event_id) for event in events]},
        ).scalar_one()


def test_a_batch_of_patient_versions_leaves_what_handling_them_one_by_one_leaves(
    make_settings: Any, admin_engine: sa.Engine
) -> None:
    consumer = ServiceRuntime.build(make_settings(MatchingSettings), MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, HANDLERS
    )
    base = 5_000_000 + uuid.uuid4().int % 1_000_000
    a, b = base, base + 1
    first = _patient_event(a, 1, max_travel_km=10)
    events = [
        first,
        _patient_event(b, 1, max_travel_km=11),
        _patient_event(a, 3, max_travel_km=30),
        _patient_event(a, 2, max_travel_km=20),  # older than the one before: ignored
        _patient_event(a, 3, max_travel_km=31),  # the same version again: the first one stays
        first,  # the same event twice in one batch
    ]
    consumer.handle_batch(_messages(consumer._topics[0], events))
    assert _projected_version_and_distance(admin_engine, a) == (3, 30)
    assert _projected_version_and_distance(admin_engine, b) == (1, 11)
    assert _processed(admin_engine, events) == 5

    # a later batch with an older version changes nothing; a newer one wins
    consumer.handle_batch(
        _messages(
            consumer._topics[0],
            [_patient_event(a, 2, max_travel_km=22), _patient_event(b, 2, max_travel_km=12)],
        )
    )
    assert _projected_version_and_distance(admin_engine, a) == (3, 30)
    assert _projected_version_and_distance(admin_engine, b) == (2, 12)
    # redelivered whole: every event is a duplicate and nothing changes
    consumer.handle_batch(_messages(consumer._topics[0], events))
    assert _projected_version_and_distance(admin_engine, a) == (3, 30)


def test_an_implausible_version_in_a_batch_is_dead_lettered_and_the_rest_applied(
    make_settings: Any, admin_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = ServiceRuntime.build(make_settings(MatchingSettings), MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, HANDLERS
    )
    dead: list[str] = []
    monkeypatch.setattr(
        consumer, "_dead_letter", lambda message, error, **_: dead.append(str(error))
    )
    base = 6_000_000 + uuid.uuid4().int % 1_000_000
    events = [
        _patient_event(base, 1),
        _patient_event(base + 1, MAX_VERSION_JUMP + 5),
        _patient_event(base + 2, 1, max_travel_km=15),
    ]
    consumer.handle_batch(_messages(consumer._topics[0], events))
    assert len(dead) == 1 and "implausibly far ahead" in dead[0]
    assert _projected_version_and_distance(admin_engine, base)[0] == 1
    assert _projected_version_and_distance(admin_engine, base + 2) == (1, 15)


def _envelope(event_type: str, aggregate_id: int) -> Envelope:
    return Envelope.model_validate(
        {
            "event_id": uuid.uuid4(),
            "event_type": event_type,
            "schema_version": 1,
            "occurred_at": "2026-11-29T08:00:00Z",
            "producer": "patient_service",
            "aggregate_id": str(aggregate_id),
            "payload": {},
        }
    )


def test_runs_of_a_multi_event_handler_are_cut_by_other_event_types_to_keep_the_order(
    make_settings: Any, admin_engine: sa.Engine
) -> None:
    calls: list[tuple[str, list[str]]] = []

    def one(uow: UnitOfWork, envelope: Envelope) -> None:
        calls.append(("one", [envelope.aggregate_id]))

    def many(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
        calls.append(("many", [envelope.aggregate_id for envelope in envelopes]))

    def other(uow: UnitOfWork, envelope: Envelope) -> None:
        calls.append(("other", [envelope.aggregate_id]))

    batchable = Batchable(one, many)
    consumer = ServiceRuntime.build(make_settings(MatchingSettings), MATCHING_INFRA).consumer(
        SUBSCRIPTIONS,
        {"patient.created": batchable, "patient.updated": batchable, "patient.erased": other},
    )
    events = [
        _envelope("patient.created", 1),
        _envelope("patient.updated", 2),
        _envelope("patient.erased", 1),
        _envelope("patient.updated", 3),
        _envelope("patient.merged", 9),  # no handler: skipped, not recorded
        _envelope("patient.updated", 4),
        _envelope("patient.updated", 5),
    ]
    consumer.handle_batch(_messages(consumer._topics[0], events))
    assert calls == [
        ("many", ["1", "2"]),
        ("other", ["1"]),
        ("many", ["3", "4", "5"]),
    ]
    assert _processed(admin_engine, events) == 6

    calls.clear()
    consumer.handle_batch(_messages(consumer._topics[0], [_envelope("patient.created", 7)]))
    assert calls == [("one", ["7"])]  # a run of one takes the one-event form


def test_a_failing_multi_event_call_is_replayed_one_by_one_and_blames_no_single_event(
    make_settings: Any, admin_engine: sa.Engine
) -> None:
    handled: list[str] = []
    failures = {"left": 1}

    def one(uow: UnitOfWork, envelope: Envelope) -> None:
        handled.append(envelope.aggregate_id)

    def many(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("a constraint of one of them, say")
        handled.extend(envelope.aggregate_id for envelope in envelopes)

    settings = make_settings(MatchingSettings, consumer_max_attempts=1)
    consumer = ServiceRuntime.build(settings, MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, {"patient.created": Batchable(one, many)}
    )
    events = [_envelope("patient.created", n) for n in range(1, 4)]
    consumer.handle_batch(_messages(consumer._topics[0], events))
    assert failures["left"] == 0
    # with one attempt each, an event blamed for the batch would have been dead-lettered
    assert handled == ["1", "2", "3"]
    assert _processed(admin_engine, events) == 3
