"""Wiring of one service process: settings -> database, outbox, tokens, relay, consumer, worker."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from flask import Blueprint, Flask
from sqlalchemy import MetaData

from shared.audit import set_process_actor
from shared.auth import TokenStore
from shared.consumer import ConsumerRunner, Handler
from shared.db import Database
from shared.infrastructure import Infrastructure, define_infrastructure
from shared.kafka import RobustProducer, kafka_client_options
from shared.logs import configure_logging
from shared.metrics import ConsumerLagCollector, serve_worker_metrics
from shared.outbox import OutboxRelay, OutboxWriter
from shared.settings import ServiceSettings, load_settings
from shared.topics import owner_of
from shared.web import ResourceRoute, create_service_app

log = logging.getLogger(__name__)

# A worker's own background job: runs until the event is set (e.g. geocoding's address loop).
Loop = Callable[[threading.Event], None]

_infrastructure_cache: dict[int, Infrastructure] = {}


def infrastructure_of(metadata: MetaData) -> Infrastructure:
    """The infrastructure tables of a service's metadata (declared once per metadata)."""
    key = id(metadata)
    if key not in _infrastructure_cache:
        _infrastructure_cache[key] = define_infrastructure(metadata)
    return _infrastructure_cache[key]


@dataclass
class ServiceRuntime:
    """Everything a service process builds from its settings (built by `build`, not at import)."""

    settings: ServiceSettings
    infra: Infrastructure
    database: Database
    tokens: TokenStore

    @classmethod
    def build(cls, settings: ServiceSettings, infra: Infrastructure) -> ServiceRuntime:
        """Connect the pieces (no I/O yet; connections open lazily)."""
        database = Database(
            settings.database_url,
            outbox=OutboxWriter(infra),
            pool_size=settings.db_pool_size,
            name=settings.service_name,
        )
        tokens = TokenStore(database, infra)
        return cls(settings=settings, infra=infra, database=database, tokens=tokens)

    def producer(self, topics: Sequence[str] = ()) -> RobustProducer:
        """A robust producer that makes sure `topics` (logical names) exist."""
        return RobustProducer(
            self.settings.kafka_bootstrap_servers,
            client_id=self.settings.service_name,
            topics=[self.settings.topic(name) for name in topics],
            partitions=self.settings.kafka_partitions,
            client_options=kafka_client_options(self.settings),
        )

    def relay(self, topics: Sequence[str]) -> OutboxRelay:
        """The outbox relay of this service."""
        return OutboxRelay(
            self.database,
            self.infra,
            self.producer(topics),
            batch_size=self.settings.relay_batch_size,
            topic_prefix=self.settings.kafka_topic_prefix,
            max_attempts=self.settings.relay_max_attempts,
            max_pass_bytes=self.settings.relay_max_pass_bytes,
        )

    def consumer(self, topics: Sequence[str], handlers: Mapping[str, Handler]) -> ConsumerRunner:
        """The consumer of this service's subscriptions (consumer group = service name)."""
        dead_letter = f"{self.settings.service_name}.dlq"
        return ConsumerRunner(
            group_id=self.settings.topic(self.settings.service_name),
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            topics=[self.settings.topic(name) for name in topics],
            handlers=handlers,
            database=self.database,
            infra=self.infra,
            dead_letter_topic=self.settings.topic(dead_letter),
            producer=self.producer([*topics, dead_letter]),
            topic_owners={self.settings.topic(name): owner_of(name) for name in topics},
            max_attempts=self.settings.consumer_max_attempts,
            max_event_bytes=self.settings.event_max_bytes,
            session_timeout_ms=self.settings.kafka_session_timeout_ms,
            client_options=kafka_client_options(self.settings),
        )


def service_app(
    settings: ServiceSettings,
    infra: Infrastructure,
    *,
    title: str,
    routes: Callable[[ServiceRuntime], Sequence[ResourceRoute]],
    pages: Callable[[ServiceRuntime], Sequence[Blueprint]] | None = None,
) -> Flask:
    """Body of every service's `create_app`: logging, runtime, common endpoints, resources."""
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    runtime = ServiceRuntime.build(settings, infra)
    return create_service_app(
        name=settings.service_name,
        title=title,
        database=runtime.database,
        infrastructure=infra,
        token_store=runtime.tokens,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        routes=routes(runtime),
        relay_max_attempts=settings.relay_max_attempts,
        max_content_length=settings.max_content_length,
        pages=pages(runtime) if pages is not None else (),
    )


class Heartbeat:
    """How long a loop has been inside its current step: the worker's watchdog restarts a
    process one of whose loops has been in one step for `CONSUMER_STALL_SECONDS` (stuck in a
    call that never returns). Waits between steps do not count."""

    def __init__(self) -> None:
        self._since: float | None = None

    @contextmanager
    def step(self) -> Iterator[None]:
        self._since = time.monotonic()
        try:
            yield
        finally:
            self._since = None

    def stalled_for(self) -> float:
        since = self._since
        return 0.0 if since is None else time.monotonic() - since


def relay_forever(
    relay: OutboxRelay,
    stop: threading.Event,
    *,
    idle_s: float = 0.2,
    max_backoff_s: float = 10.0,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Publish pending outbox rows until `stop`; back off exponentially while publishing fails.
    `heartbeat` times each pass (bounded by the producer's timeouts: one that does not end
    waits on something that never answers, e.g. a lock on the outbox)."""
    failures = 0
    heartbeat = heartbeat or Heartbeat()
    while not stop.is_set():
        try:
            with heartbeat.step():
                result = relay.publish_pending()
            failed = result.should_back_off
            idle = result.published == 0 and not failed
        except Exception:
            log.exception("outbox relay pass failed")
            failed, idle = True, False
        if failed:
            failures += 1
            stop.wait(min(max_backoff_s, 0.2 * 2**failures))
        else:
            failures = 0
            if idle:
                stop.wait(idle_s)


def worker_main(
    settings_class: type[ServiceSettings],
    infra: Infrastructure,
    *,
    topics_produced: Sequence[str],
    subscriptions: Sequence[str] = (),
    handlers: Mapping[str, Handler] | Callable[[Any], Mapping[str, Handler]] | None = None,
    loops: Callable[[ServiceRuntime], Mapping[str, Loop]] | None = None,
) -> None:
    """Entry point body of every service's `worker.py`.

    `handlers` is the event type -> handler table, or a function building it from the
    process's settings (for handlers that need configuration). `loops` builds the worker's
    own background jobs (name -> loop) from the runtime.
    """
    settings = load_settings(settings_class)
    configure_logging(f"{settings.service_name}.worker", settings.log_level, settings.log_json)
    runtime = ServiceRuntime.build(settings, infra)
    set_process_actor(f"service:{settings.service_name}")
    run_worker(
        runtime,
        topics_produced=topics_produced,
        subscriptions=subscriptions,
        handlers=handlers(settings) if callable(handlers) else handlers,
        loops=loops(runtime) if loops else None,
    )


def run_worker(
    runtime: ServiceRuntime,
    *,
    topics_produced: Sequence[str],
    subscriptions: Sequence[str] = (),
    handlers: Mapping[str, Handler] | None = None,
    loops: Mapping[str, Loop] | None = None,
) -> None:
    """Run the outbox relay, (when the service consumes) the consumer and the service's own
    `loops` until SIGTERM/SIGINT."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal %s received: stopping worker", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    relay = Heartbeat()
    threads = [
        threading.Thread(
            target=relay_forever,
            args=(runtime.relay(topics_produced), stop),
            kwargs={"idle_s": runtime.settings.relay_idle_seconds, "heartbeat": relay},
            name="relay",
        )
    ]
    # the loops the watchdog below restarts the process for, when one does not come round
    watched: dict[str, Callable[[], float]] = {"relay": relay.stalled_for}
    lag: Callable[[], dict[tuple[str, int], int]] = dict
    if subscriptions and handlers:
        consumer = runtime.consumer(subscriptions, handlers)
        threads.append(threading.Thread(target=consumer.run, args=(stop,), name="consumer"))
        watched["consumer"] = consumer.stalled_for
        lag = consumer.lag
    metrics_server = None
    if runtime.settings.worker_metrics_port is not None:
        try:
            metrics_server = serve_worker_metrics(
                runtime.settings.worker_metrics_port,
                [ConsumerLagCollector(runtime.settings.service_name, lag)],
            )
        except OSError as exc:
            # the worker's real work goes on; only its lag is not served
            log.error(
                "metrics not served on WORKER_METRICS_PORT=%s: %s",
                runtime.settings.worker_metrics_port,
                exc,
            )
    for name, loop in (loops or {}).items():
        threads.append(threading.Thread(target=loop, args=(stop,), name=name))
    for thread in threads:
        thread.start()
    log.info("worker started: %s", ", ".join(thread.name for thread in threads))
    stall_limit = runtime.settings.consumer_stall_seconds
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(timeout=0.5)
        for name, stalled_for in watched.items():
            if not stop.is_set() and stalled_for() > stall_limit:
                log.error(
                    "%s loop has not come round for %.0fs (CONSUMER_STALL_SECONDS=%g): "
                    "restarting the worker process",
                    name,
                    stalled_for(),
                    stall_limit,
                )
                restart_process()
    if metrics_server is not None:
        metrics_server.shutdown()
    runtime.database.dispose()
    log.info("worker stopped")


def restart_process() -> NoReturn:
    """Replace this process with a fresh run of the same command line (same pid).

    The way out of a thread stuck in a call that never returns: Python cannot stop the thread,
    but a new process image starts clean. Nothing is lost: a worker commits a message's offset
    only after its database transaction, the open transactions die with their connections
    (sockets are closed on exec), and the relay publishes what it had not marked published
    again (consumers skip what they handled).
    """
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    sys.stdout.flush()
    os.execv(sys.executable, sys.orig_argv)
