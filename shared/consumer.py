"""Consumer runner: idempotent handling, offsets committed after the database commit, DLQ."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer
from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from shared.db import Database, UnitOfWork, utcnow
from shared.events import Envelope, InvalidEvent
from shared.infrastructure import Infrastructure
from shared.kafka import OutgoingRecord, RobustProducer
from shared.logs import aggregate_id_var, event_id_var

log = logging.getLogger(__name__)

Handler = Callable[[UnitOfWork, Envelope], None]


class DeadLetterUnavailable(RuntimeError):
    """The dead-letter topic could not be written; the message is not committed."""


class TransientFailure(RuntimeError):
    """The database is unreachable or asked for a retry: handle the poll again later."""


def is_transient(exc: BaseException) -> bool:
    """Connection losses, restarts, deadlocks, serialisation failures: not the message's fault."""
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class ConsumerRunner:
    """Consumes a service's topics and hands each event to its handler, exactly once in effect.

    The handler runs in a unit of work that first inserts the event id into
    `processed_events` (ON CONFLICT DO NOTHING): a redelivered event finds its id there and
    changes nothing. Offsets are committed only after the database transaction commits. A
    message that fails `max_attempts` times, or is not a valid event, goes to the dead-letter
    topic with the error, and consumption moves on. A database that is down is not the
    message's fault: nothing is dead-lettered or committed, the consumer reconnects after a
    pause and the uncommitted messages are delivered again (the idempotency guard skips
    whatever was already handled).

    For throughput, the messages of one poll share one transaction. When any of them fails,
    that transaction is rolled back whole and the batch is replayed message by message
    through the careful path (own transaction, retries, then dead letter), so a failure
    costs a replay but never reorders a partition or loses a message. Handlers never commit.
    """

    def __init__(
        self,
        *,
        group_id: str,
        bootstrap_servers: str,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        database: Database,
        infra: Infrastructure,
        dead_letter_topic: str,
        producer: RobustProducer,
        max_attempts: int = 3,
        session_timeout_ms: int = 10000,
        retry_backoff_s: float = 0.2,
    ) -> None:
        self._group_id = group_id
        self._bootstrap = bootstrap_servers
        self._topics = list(topics)
        self._handlers = handlers
        self._db = database
        self._processed = infra.processed_events
        self._dlq = dead_letter_topic
        self._producer = producer
        self._max_attempts = max_attempts
        self._session_timeout_ms = session_timeout_ms
        self._retry_backoff_s = retry_backoff_s
        # built once: constructing statements per message costs more than running them
        self._record_event = (
            pg_insert(self._processed)
            .values(event_id=bindparam("event_id"), event_type=bindparam("event_type"))
            .on_conflict_do_nothing()
            .returning(self._processed.c.event_id)
        )

    def _consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            *self._topics,
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=f"{self._group_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(1000, self._session_timeout_ms // 5),
            max_poll_records=500,
            fetch_max_wait_ms=100,
        )

    def run(self, stop: threading.Event) -> None:
        """Poll and handle until `stop` is set; reconnects after failures."""
        while not stop.is_set():
            consumer = None
            try:
                consumer = self._consumer()
                while not stop.is_set():
                    batch = consumer.poll(timeout_ms=500)
                    for messages in batch.values():
                        self.handle_batch(messages)
                    if batch:
                        consumer.commit()
            except TransientFailure as exc:
                log.warning("database unavailable (%s); pausing before the next poll", exc)
                stop.wait(2.0)
            except Exception:
                log.exception("consumer loop failed; reconnecting")
                stop.wait(2.0)
            finally:
                if consumer is not None:
                    consumer.close(autocommit=False)

    def handle_batch(self, messages: Sequence[Any]) -> None:
        """Handle messages of one partition in order: one transaction, or one each on failure."""
        failed_at = 0
        try:
            with self._db.unit_of_work() as uow:
                for index, message in enumerate(messages):
                    failed_at = index  # where we are, should the next step raise
                    envelope = Envelope.from_bytes(message.value)
                    handler = self._handlers.get(envelope.event_type)
                    if handler is None:
                        log.info("skipping event type %s: no handler", envelope.event_type)
                        continue
                    self._run_handler(uow, envelope, handler)
                uow.commit()
        except Exception as exc:
            if is_transient(exc):
                raise TransientFailure(str(exc)) from exc
            log.info("batch of %d failed (%s); replaying one by one", len(messages), exc)
            for index, message in enumerate(messages):
                if index == failed_at:  # the batch run was the failing message's first attempt
                    self.handle_message(message, attempts_used=1, previous_error=exc)
                else:
                    self.handle_message(message)

    def handle_message(
        self, message: Any, attempts_used: int = 0, previous_error: Exception | None = None
    ) -> None:
        """Handle one Kafka message; returns once it is handled, skipped or dead-lettered."""
        try:
            envelope = Envelope.from_bytes(message.value)
        except InvalidEvent as exc:
            self._dead_letter(message, exc, attempts=1)
            return
        handler = self._handlers.get(envelope.event_type)
        if handler is None:
            log.info("skipping event type %s: no handler", envelope.event_type)
            return
        event_token = event_id_var.set(str(envelope.event_id))
        aggregate_token = aggregate_id_var.set(envelope.aggregate_id)
        try:
            self._handle_with_retries(message, envelope, handler, attempts_used, previous_error)
        finally:
            event_id_var.reset(event_token)
            aggregate_id_var.reset(aggregate_token)

    def _handle_with_retries(
        self,
        message: Any,
        envelope: Envelope,
        handler: Handler,
        attempts_used: int,
        previous_error: Exception | None,
    ) -> None:
        error = previous_error
        for attempt in range(attempts_used + 1, self._max_attempts + 1):
            try:
                self._handle_once(envelope, handler)
                return
            except InvalidEvent as exc:  # retrying cannot make a bad payload valid
                self._dead_letter(message, exc, attempts=attempt)
                return
            except Exception as exc:
                if is_transient(exc):
                    raise TransientFailure(str(exc)) from exc
                error = exc
                log.warning(
                    "handling %s failed (attempt %d): %s", envelope.event_type, attempt, exc
                )
                time.sleep(self._retry_backoff_s * attempt)
        assert error is not None  # at least one attempt (batch or here) failed
        self._dead_letter(message, error, attempts=self._max_attempts)

    def _handle_once(self, envelope: Envelope, handler: Handler) -> None:
        with self._db.unit_of_work() as uow:
            self._run_handler(uow, envelope, handler)
            uow.commit()

    def _run_handler(self, uow: UnitOfWork, envelope: Envelope, handler: Handler) -> None:
        """Record the event id; run the handler only if the id is new (idempotency guard)."""
        first_time = uow.session.execute(
            self._record_event,
            {"event_id": envelope.event_id, "event_type": envelope.event_type},
        ).first()
        if first_time is None:
            log.info("duplicate event %s ignored", envelope.event_id)
            return
        token = event_id_var.set(str(envelope.event_id))
        try:
            handler(uow, envelope)
        finally:
            event_id_var.reset(token)

    def _dead_letter(self, message: Any, error: Exception, *, attempts: int) -> None:
        log.error(
            "dead-lettering message %s/%s@%s: %s",
            message.topic,
            message.partition,
            message.offset,
            error,
        )
        record = {
            "original_topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "key": message.key.decode(errors="replace") if message.key else None,
            "value": message.value.decode(errors="replace") if message.value else None,
            "error": f"{error.__class__.__name__}: {error}",
            "attempts": attempts,
            "consumer_group": self._group_id,
            "failed_at": utcnow().isoformat(),
        }
        key = record["key"] or f"{message.topic}-{message.partition}-{message.offset}"
        outcome = self._producer.send_all([OutgoingRecord(self._dlq, key, record)])
        if outcome[0] is not None:
            raise DeadLetterUnavailable(f"cannot write to {self._dlq}: {outcome[0]}")
