"""Consumer lag per partition: the end offsets the fetches reported against the consumer's
positions, served on the worker's own /metrics."""

from __future__ import annotations

import urllib.request
from types import SimpleNamespace
from typing import Any

from kafka import TopicPartition

from shared.consumer import ConsumerRunner
from shared.devstack import free_port
from shared.metrics import ConsumerLagCollector, serve_worker_metrics

A0 = TopicPartition("patient-events", 0)
A1 = TopicPartition("patient-events", 1)
B0 = TopicPartition("therapist-events", 0)


class FakeConsumer:
    """The part of KafkaConsumer the lag refresh reads (no broker call is allowed)."""

    def __init__(self) -> None:
        self.assigned = {A0, A1, B0}
        self.ends: dict[TopicPartition, int | None] = {A0: 120, A1: 40, B0: None}
        self.positions: dict[TopicPartition, int | None] = {A0: 100, A1: 40, B0: 3}
        self.reads = 0

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def highwater(self, partition: TopicPartition) -> int | None:
        self.reads += 1
        return self.ends[partition]

    @property
    def _subscription(self) -> Any:
        return SimpleNamespace(
            assignment={
                tp: SimpleNamespace(
                    position=None if offset is None else SimpleNamespace(offset=offset)
                )
                for tp, offset in self.positions.items()
            }
        )

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the lag refresh must not call the broker ({name})")


def _runner() -> ConsumerRunner:
    runner = ConsumerRunner.__new__(ConsumerRunner)
    runner._lag = {}
    runner._lag_checked = 0.0
    runner.lag_interval_s = 0.0
    return runner


def test_lag_is_end_offset_minus_position_per_assigned_partition() -> None:
    runner, consumer = _runner(), FakeConsumer()
    runner._refresh_lag(consumer)  # type: ignore[arg-type]
    # B0 has not been fetched yet: its lag is unknown, not 0
    assert runner.lag() == {("patient-events", 0): 20, ("patient-events", 1): 0}
    consumer.assigned = {A0}  # a rebalance took the others away
    consumer.positions[A0] = 120
    runner._refresh_lag(consumer)  # type: ignore[arg-type]
    assert runner.lag() == {("patient-events", 0): 0}


def test_lag_is_refreshed_at_most_every_interval_and_kept_on_failure() -> None:
    runner, consumer = _runner(), FakeConsumer()
    runner.lag_interval_s = 3600.0
    runner._refresh_lag(consumer)  # type: ignore[arg-type]
    reads = consumer.reads
    runner._refresh_lag(consumer)  # type: ignore[arg-type]
    assert consumer.reads == reads
    before = runner.lag()

    def broken(partition: Any) -> Any:
        raise RuntimeError("partition is not assigned")

    runner.lag_interval_s = 0.0
    consumer.highwater = broken  # type: ignore[method-assign]
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
