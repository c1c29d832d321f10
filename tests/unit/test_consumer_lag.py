"""Consumer lag per partition: what the worker knows of its positions against the broker's
end offsets, served on the worker's own /metrics."""

from __future__ import annotations

import urllib.request
from typing import Any

from kafka import TopicPartition

from shared.consumer import ConsumerRunner
from shared.devstack import free_port
from shared.metrics import ConsumerLagCollector, serve_worker_metrics

A0 = TopicPartition("patient-events", 0)
A1 = TopicPartition("patient-events", 1)
B0 = TopicPartition("therapist-events", 0)


class FakeConsumer:
    """The part of KafkaConsumer the lag refresh uses."""

    def __init__(self) -> None:
        self.assigned = {A0, A1, B0}
        self.ends = {A0: 120, A1: 40, B0: 7}
        self.broker_committed: dict[TopicPartition, int | None] = {A1: 30, B0: None}
        self.beginnings = {B0: 2}
        self.calls = 0

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.calls += 1
        return {tp: self.ends[tp] for tp in partitions}

    def committed(self, partition: TopicPartition) -> int | None:
        return self.broker_committed.get(partition)

    def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.beginnings[tp] for tp in partitions}


def _runner() -> ConsumerRunner:
    runner = ConsumerRunner.__new__(ConsumerRunner)
    runner._committed = {A0: 100}
    runner._lag = {}
    runner._lag_checked = 0.0
    runner.lag_interval_s = 0.0
    return runner


def test_lag_is_end_offset_minus_handled_per_assigned_partition() -> None:
    runner, consumer = _runner(), FakeConsumer()
    runner._refresh_lag(consumer)  # type: ignore[arg-type]
    # A0: handled here; A1: the group's committed offset; B0: nothing committed yet
    assert runner.lag() == {
        ("patient-events", 0): 20,
        ("patient-events", 1): 10,
        ("therapist-events", 0): 5,
    }
    consumer.assigned = {A0}  # a rebalance took the others away
    consumer.ends[A0] = 100
    runner._refresh_lag(consumer)  # type: ignore[arg-type]
    assert runner.lag() == {("patient-events", 0): 0}


def test_lag_is_asked_of_the_broker_at_most_every_interval_and_kept_on_failure() -> None:
    runner, consumer = _runner(), FakeConsumer()
    runner.lag_interval_s = 3600.0
    runner._refresh_lag(consumer)  # type: ignore[arg-type]
    runner._refresh_lag(consumer)  # type: ignore[arg-type]
    assert consumer.calls == 1
    before = runner.lag()

    def broken(partitions: Any) -> Any:
        raise TimeoutError("broker away")

    runner.lag_interval_s = 0.0
    consumer.end_offsets = broken  # type: ignore[method-assign]
    runner._refresh_lag(consumer)  # type: ignore[arg-type]
    assert runner.lag() == before


def test_worker_metrics_endpoint_serves_the_lag_per_partition() -> None:
    lag = {("patient-events", 1): 10, ("patient-events", 0): 20}
    port = free_port()
    server = serve_worker_metrics(
        port, [ConsumerLagCollector("matching_service", lambda: lag)], address="127.0.0.1"
    )
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
    assert (
        'consumer_lag{partition="0",service="matching_service",topic="patient-events"} 20.0' in text
    )
    assert (
        'consumer_lag{partition="1",service="matching_service",topic="patient-events"} 10.0' in text
    )
