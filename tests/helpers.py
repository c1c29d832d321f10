"""Test helpers: request bodies with unique data, reading topics, background loops."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kafka import KafkaConsumer, TopicPartition


def patient_body(**overrides: Any) -> dict[str, Any]:
    """A valid, qualified patient with a unique name and email."""
    unique = uuid.uuid4().hex[:10]
    body: dict[str, Any] = {
        "gender": "female",
        "first_name": f"Anna{unique}",
        "last_name": "Beispiel",
        "postal_code": "10115",
        "birth_date": "1990-04-01",
        "email": f"anna.{unique}@example.org",
        "diagnosis": "F32.1",
        "symptoms": ["low_mood", "sleep_problems"],
        "availability": {"mon": ["08:00-18:00"], "tue": ["08:00-18:00"]},
        "contract_signed": True,
        "payment_received": True,
    }
    body.update(overrides)
    return body


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """All messages of `topic` from the beginning: at least `expected`, then until quiet."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout
        partitions: set[int] | None = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.2)
        if not partitions:
            return []
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        messages: list[Any] = []
        quiet_polls = 0
        # keep reading past `expected` until the topic is quiet, so duplicates show up too
        while time.monotonic() < deadline and (len(messages) < expected or quiet_polls < 3):
            batch = [m for part in consumer.poll(timeout_ms=300).values() for m in part]
            messages.extend(batch)
            quiet_polls = 0 if batch else quiet_polls + 1
        return messages
    finally:
        consumer.close()


def envelopes(messages: list[Any]) -> list[dict[str, Any]]:
    """Decoded message values."""
    return [json.loads(message.value) for message in messages]


def dead_letters(messages: list[Any]) -> list[dict[str, Any]]:
    """Dead-letter records: their `dlq.*` headers decoded, plus the original `value` bytes."""
    return [
        {**{name: raw.decode() for name, raw in message.headers}, "value": message.value}
        for message in messages
    ]


@contextmanager
def background(target: Callable[[threading.Event], None]) -> Iterator[threading.Event]:
    """Run `target(stop)` in a thread for the duration of the block."""
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "background loop did not stop"


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def location_resolved(
    entity_type: str, entity_id: int, version: int = 1, postal_code: str = "10115"
) -> Any:
    """A `location.resolved` envelope as geocoding publishes it (at Leipzig's centroid):
    matching starts searches only for patients it has one for, computed for the postal
    code it holds (10115: `patient_body`'s)."""
    from geocoding_service.schemas import LOCATION_RESOLVED

    payload = {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "version": version,
        "entity_version": version,
        "postal_code": postal_code,
        "lat": 51.3397,
        "lon": 12.3731,
        "precision": "plz",
        "source": "plz_centroid",
    }
    return LOCATION_RESOLVED.build(
        producer="geocoding_service", aggregate_id=f"{entity_type}-{entity_id}", payload=payload
    )
