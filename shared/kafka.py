"""Kafka plumbing on kafka-python: a producer that survives broker outages, topic set-up."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


# producer batching (see RobustProducer._ensure_producer); compression stays off (the broker
# and the consumers are on a fast network, and compressing costs CPU on both ends)
LINGER_MS = 50
BATCH_BYTES = 256 * 1024


class _Secret(str):
    """A password kafka-python can use, shown masked: its admin client logs its config."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'**********'"


def kafka_client_options(settings: ServiceSettings) -> dict[str, Any]:
    """kafka-python options for security protocol, SASL and CA file: the same for every client."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_sasl_mechanism and settings.kafka_sasl_password is not None:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = _Secret(settings.kafka_sasl_password.get_secret_value())
    if settings.kafka_ssl_cafile:
        options["ssl_cafile"] = settings.kafka_ssl_cafile
    return options


@dataclass(frozen=True)
class OutgoingRecord:
    """One message to publish: key = aggregate id, value = envelope as JSON-able dict."""

    topic: str
    key: str
    value: dict[str, Any] | bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    partitions: int = 3,
    client_options: Mapping[str, Any] | None = None,
) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="topic-setup", **(client_options or {})
    )
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=1)
            for name in sorted(set(topics) - existing)
        ]
        if missing:
            # another process may create them between our list and create
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()


class HeldBack(KafkaError):
    """A record not sent because an earlier record with its key failed (it has no fault)."""


class RobustProducer:
    """Publishes batches with acks=all, keyed, idempotent; rebuilt after any failure.

    kafka-python's idempotent producer goes into a fatal state when the broker has lost its
    producer-id state (a broker restart does that); a failed batch therefore closes the
    producer, and the next batch builds a fresh one (and re-creates missing topics).
    Nothing here blocks an HTTP request: only the relay calls it, and the outbox is the buffer.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "relay",
        topics: Sequence[str] = (),
        partitions: int = 3,
        timeout_s: float = 10.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._client_options = dict(client_options or {})
        self._client_id = client_id
        self._topics = tuple(topics)
        self._partitions = partitions
        self._timeout_s = timeout_s
        self._producer: KafkaProducer | None = None
        self.rebuilds = 0

    def create_missing_topics(self) -> None:
        """Create this producer's topics that do not exist yet, with its partition count."""
        if self._topics:
            ensure_topics(self._bootstrap, self._topics, self._partitions, self._client_options)

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is None:
            self.create_missing_topics()
            self._producer = KafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=True,
                max_in_flight_requests_per_connection=5,
                retries=5,
                retry_backoff_ms=200,
                # a relay pass appends all its records, then flushes (which sends at once,
                # linger or not): large batches and a long linger mean few requests and few
                # wake-ups of the sender thread per pass, at no cost in latency
                linger_ms=LINGER_MS,
                batch_size=BATCH_BYTES,
                max_block_ms=int(self._timeout_s * 1000),
                request_timeout_ms=int(self._timeout_s * 1000),
                **self._client_options,
            )
            self.rebuilds += 1
        return self._producer

    def send_all(self, records: Sequence[OutgoingRecord]) -> list[Exception | None]:
        """Publish in order; returns, per record, None when acknowledged or the error.

        A record refused at once (too large, unknown topic, ...) stops the later records with
        the same key; those that were in flight keep their order through the idempotent
        producer, which fails everything after a failed batch of a partition.
        """
        if not records:
            return []
        unavailable = self._connect()
        if unavailable is not None:  # broker unreachable: every record failed, nothing sent
            return [unavailable] * len(records)
        producer = self._ensure_producer()
        futures: list[Any] = []
        failed_keys: set[str] = set()
        for record in records:
            if record.key in failed_keys:
                # never send a later record of a key whose earlier one was refused: order
                futures.append(HeldBack("not sent: an earlier record with this key failed"))
                continue
            try:
                futures.append(
                    producer.send(
                        record.topic,
                        key=record.key.encode(),
                        value=_serialise(record.value),
                        headers=list(record.headers) or None,
                    )
                )
            except KafkaError as exc:
                futures.append(exc)
                failed_keys.add(record.key)
        try:
            producer.flush(timeout=self._timeout_s)
        except KafkaError as exc:
            log.warning("kafka flush failed: %s", exc)
        outcomes: list[Exception | None] = []
        for future in futures:
            if isinstance(future, Exception):
                outcomes.append(future)
            elif not future.is_done:
                outcomes.append(KafkaError("not acknowledged in time"))
            else:
                outcomes.append(future.exception if future.failed() else None)
        if any(outcomes):
            log.warning(
                "publishing failed for %d of %d records", sum(map(bool, outcomes)), len(records)
            )
            self.close()
        return outcomes

    def ready(self) -> bool:
        """Build the producer (and topics) now, outside any database transaction."""
        return self._connect() is None

    def _connect(self) -> Exception | None:
        """Build the producer if needed; the error when the broker cannot be reached."""
        try:
            self._ensure_producer()
        except Exception as exc:
            log.warning("kafka producer unavailable: %s", exc)
            self.close()
            return exc
        return None

    def close(self) -> None:
        """Close the current producer; the next send builds a new one."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=1)
        except Exception:
            # close() flushes first and gives up while batches are pending (broker gone);
            # kafka-python then leaves its sender thread retrying forever: stop it here.
            # (_sender/_closed are kafka-python internals; close() has no force option.)
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(timeout=5)
            producer._closed = True  # its __del__ would try to close (and fail) again


def _serialise(value: dict[str, Any] | bytes) -> bytes:
    return (
        value if isinstance(value, bytes) else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    )
