"""Prometheus metrics of every process: HTTP counters, business gauges, consumer lag.

The HTTP processes run under gunicorn with several worker processes. With
`PROMETHEUS_MULTIPROC_DIR` set (see `shared/gunicorn_conf.py`), every process writes its
counters to that directory and `/metrics` adds them all up, whichever process answers.

Business gauges (outbox backlog, and a service's own such as matching's active searches) are
computed from the database when `/metrics` is scraped, cached for a few seconds so that
frequent scrapes (or several processes) do not load the database.

The workers (`python -m <service>.worker`) serve their consumer lag per partition on their
own small HTTP endpoint (`WORKER_METRICS_PORT`).

Label values come from known, bounded sets only (methods, route rules, statuses, topics and
partitions); never from what a client sends.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, select

from shared.db import Database, utcnow
from shared.infrastructure import Infrastructure

log = logging.getLogger(__name__)

# Metric labels come from known values only: a label per method name a client makes up
# would grow /metrics (and the process) without bound.
_STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

GAUGE_CACHE_SECONDS = 5.0


def multiprocess_dir() -> str | None:
    """The directory the processes of one gunicorn share their metrics in, if any."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass(frozen=True)
class BusinessGauge:
    """A gauge read from the database at scrape time.

    `read` returns the value per label values (a tuple as long as `labels`; `()` when there
    are none). Every label value must come from a fixed set (e.g. a status column).
    """

    name: str
    documentation: str
    read: Callable[[Connection], dict[tuple[str, ...], float]]
    labels: tuple[str, ...] = ()


class BusinessGaugeCollector(Collector):
    """Collects the `BusinessGauge`s of one service from its database, with a short cache."""

    def __init__(
        self,
        service: str,
        database: Database,
        gauges: Sequence[BusinessGauge] = (),
        *,
        cache_seconds: float = GAUGE_CACHE_SECONDS,
    ) -> None:
        self.service = service
        self.database = database
        self.gauges = list(gauges)
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._read_at: float | None = None

    def add(self, gauges: Iterable[BusinessGauge]) -> None:
        """More gauges (a service's own); they appear from the next uncached scrape on."""
        with self._lock:
            self.gauges.extend(gauges)
            self._read_at = None

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the registry must not read the database when this is added."""
        return []

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= self.cache_seconds:
                self._cached = self._read()
                self._read_at = now
            return list(self._cached)

    def _read(self) -> list[Metric]:
        families: list[Metric] = []
        try:
            with self.database.engine.connect() as connection:
                for gauge in self.gauges:
                    family = GaugeMetricFamily(
                        gauge.name, gauge.documentation, labels=["service", *gauge.labels]
                    )
                    for label_values, value in sorted(gauge.read(connection).items()):
                        family.add_metric([self.service, *label_values], value)
                    families.append(family)
        except Exception as exc:
            # a scrape must still answer (with the HTTP counters) while the database is away
            log.warning("business gauges not read: %s", exc.__class__.__name__)
            return []
        return families


def outbox_gauges(infra: Infrastructure) -> list[BusinessGauge]:
    """The outbox backlog every service reports: unpublished rows and the oldest one's age."""
    outbox = infra.outbox

    def pending(connection: Connection) -> dict[tuple[str, ...], float]:
        count = connection.execute(
            select(func.count()).where(outbox.c.published_at.is_(None))
        ).scalar_one()
        return {(): float(count)}

    def oldest_age(connection: Connection) -> dict[tuple[str, ...], float]:
        oldest = connection.execute(
            select(func.min(outbox.c.created_at)).where(outbox.c.published_at.is_(None))
        ).scalar_one()
        return {(): (utcnow() - oldest).total_seconds() if oldest else 0.0}

    return [
        BusinessGauge("outbox_pending_events", "Outbox rows not yet published", pending),
        BusinessGauge(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox row (0 when none)",
            oldest_age,
        ),
    ]


def counts_by(
    statement: Any, values: Sequence[str]
) -> Callable[[Connection], dict[tuple[str, ...], float]]:
    """A gauge reader from `statement` (rows of value, count) with a 0 for each of `values`
    that has no row; rows with other values are left out (the label set stays fixed)."""

    def read(connection: Connection) -> dict[tuple[str, ...], float]:
        counts: dict[tuple[str, ...], float] = {(value,): 0.0 for value in values}
        for value, count in connection.execute(statement):
            if (value,) in counts:
                counts[(value,)] = float(count)
        return counts

    return read


def install_metrics(
    app: Flask, name: str, database: Database, infrastructure: Infrastructure
) -> None:
    """HTTP counters per request and `/metrics` (all processes' counters under gunicorn with
    `PROMETHEUS_MULTIPROC_DIR`, plus the business gauges)."""
    registry = CollectorRegistry()
    requests_total = Counter(
        "http_requests_total",
        "HTTP requests",
        ["service", "method", "endpoint", "status"],
        registry=registry,
    )
    latency = Histogram(
        "http_request_duration_seconds",
        "HTTP request latency",
        ["service", "method", "endpoint"],
        registry=registry,
    )
    gauges = BusinessGaugeCollector(name, database, outbox_gauges(infrastructure))
    app.extensions["metrics_registry"] = registry
    app.extensions["business_gauges"] = gauges

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in _STANDARD_METHODS else "other"
        requests_total.labels(name, method, endpoint, response.status_code).inc()
        latency.labels(name, method, endpoint).observe(
            time.perf_counter() - g.get("started", time.perf_counter())
        )
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        scrape = CollectorRegistry(auto_describe=False)
        directory = multiprocess_dir()
        if directory:
            multiprocess.MultiProcessCollector(scrape, path=directory)
        else:
            scrape.register(_RegistryCollector(registry))
        scrape.register(gauges)
        return Response(generate_latest(scrape), mimetype=CONTENT_TYPE_LATEST)


def add_business_gauges(app: Flask, gauges: Iterable[BusinessGauge]) -> None:
    """Add a service's own gauges to its `/metrics`."""
    collector: BusinessGaugeCollector = app.extensions["business_gauges"]
    collector.add(gauges)


class _RegistryCollector(Collector):
    """One process's own registry inside the scrape registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return list(self.registry.collect())


# ---------------------------------------------------------------- workers


class ConsumerLagCollector(Collector):
    """`consumer_lag` per topic and partition of a worker's consumer: the broker's end offset
    minus the offset the consumer has handled (what `lag()` of the consumer reports)."""

    def __init__(self, service: str, lag: Callable[[], dict[tuple[str, int], int]]) -> None:
        self.service = service
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "consumer_lag",
            "Messages on the broker not yet handled by this consumer group, per partition",
            labels=["service", "topic", "partition"],
        )
        for (topic, partition), value in sorted(self.lag().items()):
            family.add_metric([self.service, topic, str(partition)], float(value))
        yield family


def serve_worker_metrics(
    port: int, collectors: Sequence[Collector], address: str = "0.0.0.0"
) -> Any:
    """Serve `collectors` on `http://address:port/metrics` from a daemon thread; returns the
    server (its `shutdown()` stops it)."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server
