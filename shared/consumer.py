"""Consumer runner: idempotent handling, offsets committed after the database commit, DLQ."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy import String, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.db import Database, UnitOfWork, utcnow
from shared.errors import DomainError
from shared.events import EVENT_MAX_BYTES, Envelope, InvalidEvent
from shared.infrastructure import Infrastructure
from shared.kafka import OutgoingRecord, RobustProducer
from shared.logs import aggregate_id_var, event_id_var
from shared.outbox import is_record_fault

log = logging.getLogger(__name__)

Handler = Callable[[UnitOfWork, Envelope], None]
# the multi-event form of a handler: several events (in partition order) in one call
BatchHandler = Callable[[UnitOfWork, Sequence[Envelope]], None]


@dataclass(frozen=True)
class Batchable:
    """A handler that also has a multi-event form (`many`), e.g. one multi-row upsert.

    Called like any handler it handles one event (`one`). In a poll batch, consecutive
    events whose handlers share the same `many` are handed to it together; `many` must leave
    the database exactly as calling `one` for each of them in order would.
    """

    one: Handler
    many: BatchHandler

    def __call__(self, uow: UnitOfWork, envelope: Envelope) -> None:
        self.one(uow, envelope)


# SQLSTATEs that say "the database cannot take this now", not "this message is wrong":
# read-only after a failover, shutdowns, too many connections, serialisation and deadlock.
TRANSIENT_SQLSTATES = frozenset({"25006", "57P01", "57P02", "57P03", "40001", "40P01", "55P03"})
# how long one commit or committed-offset lookup may block the loop
BROKER_CALL_TIMEOUT_MS = 5000
# messages per poll: a partition's share of a poll is handled in one transaction, so larger
# polls mean fewer transactions (each fetch still stops at max_partition_fetch_bytes, 1 MiB)
MAX_POLL_RECORDS = 2000
# how often the poll loop updates its consumer lag (metric; from what the fetches reported)
LAG_INTERVAL_S = 1.0
# how old the consumer's view of its topics' partitions may get: a topic that a new broker
# generation created with another partition count (Tansu auto-creates with 4 whoever asks
# first; the relays create with KAFKA_PARTITIONS) is only assigned in full after a metadata
# refresh (kafka-python's default waits 5 minutes)
METADATA_MAX_AGE_MS = 10_000
# an assigned partition that cannot be fetched for this long (a rebalance or an offset reset
# that does not complete): the consumer is rebuilt, which leaves the group and joins afresh
STUCK_PARTITION_S = 60.0
# how long the group coordinator may hold a JoinGroup while members rejoin (kafka-python
# sends max_poll_interval_ms and waits that plus 5 s for the answer: with its default of 5
# minutes, a join that a replaced broker never answered held a consumer's partitions for
# minutes); also the longest a poll loop may take before the member leaves the group
MAX_POLL_INTERVAL_MS = 30_000
# how often the loop asks the broker whether the group's committed offsets moved where
# records wait (a partition that did not move at two checks makes the loop rebuild)
PROGRESS_INTERVAL_S = 30.0
# a position past the partition's end for this long means the broker lost its log (not a
# new leader whose high watermark is a moment behind)
PAST_END_GRACE_S = 5.0
# whole classes: 08 connection exception, 53 insufficient resources (too many connections,
# out of memory or disk on the server)
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53"})


class Interruption(RuntimeError):
    """Handling cannot go on for now (not the message's fault): pause, then poll again.

    `done` counts the messages of the interrupted partition batch that were finished
    (handled, skipped or dead-lettered) before it: they are committed, not redone.
    """

    done = 0


def _positions(consumer: KafkaConsumer) -> dict[TopicPartition, tuple[int, int | None]]:
    """Per assigned partition with a position: (the position, the partition's end as its last
    fetch reported it, None before any). No broker call: kafka-python keeps positions in its
    subscription state only."""
    states = consumer._subscription.assignment
    positions: dict[TopicPartition, tuple[int, int | None]] = {}
    for partition in consumer.assignment():
        position = getattr(getattr(states.get(partition), "position", None), "offset", None)
        if position is not None:
            positions[partition] = (position, consumer.highwater(partition))
    return positions


def _seen_since(
    earlier: Mapping[TopicPartition, float], seen: Iterable[TopicPartition]
) -> dict[TopicPartition, float]:
    """Since when each partition seen in a check has been seen at every check (now if it
    was not at the last one); partitions not seen now are forgotten."""
    now = time.monotonic()
    return {partition: earlier.get(partition, now) for partition in seen}


def _seen_for(since: Mapping[TopicPartition, float], seconds: float) -> list[TopicPartition]:
    """The partitions seen for at least `seconds`, in order."""
    now = time.monotonic()
    return sorted(partition for partition, first in since.items() if now - first >= seconds)


class ConsumerStuck(RuntimeError):
    """The consumer cannot make progress by itself (its group or partitions are stuck): the
    loop rebuilds it."""


class DeadLetterUnavailable(Interruption):
    """The dead-letter topic could not be written; the message is not committed."""


class TransientFailure(Interruption):
    """The database is unreachable or asked for a retry: handle the poll again later."""

    @classmethod
    def of(cls, exc: BaseException) -> TransientFailure:
        """The failure for a database error (by class and SQLSTATE only)."""
        return cls(f"database unavailable: {safe_reason(exc)}")


def is_transient(exc: BaseException) -> bool:
    """Database unavailability of any kind (anywhere in the cause chain): not the message's
    fault. Connection losses, restarts, read-only failovers, pool timeouts, deadlocks.

    A database error with a SQLSTATE is judged by it (psycopg2 files many deterministic
    errors under OperationalError too); one without (the connection itself failed) is
    transient.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PoolTimeout):
            return True
        if isinstance(current, DBAPIError):
            if current.connection_invalidated:
                return True
            code = getattr(current.orig, "pgcode", None)
            if code:
                return code in TRANSIENT_SQLSTATES or code[:2] in TRANSIENT_SQLSTATE_CLASSES
            if isinstance(current, OperationalError | InterfaceError):
                return True
        current = current.__cause__ or current.__context__
    return False


def safe_reason(exc: BaseException) -> str:
    """Why a message failed, for logs and dead-letter headers: never a payload value.

    Our own errors are written not to quote values; for anything else only the class (and
    a database error's SQLSTATE) is kept, since driver messages can quote row values.
    """
    if isinstance(exc, InvalidEvent | Interruption):
        return f"{exc.__class__.__name__}: {exc}"[:500]
    if isinstance(exc, DomainError):
        return f"{exc.__class__.__name__}: {exc.message}"[:500]
    if isinstance(exc, DBAPIError):
        code = getattr(exc.orig, "pgcode", None)
        return f"{exc.__class__.__name__} ({exc.orig.__class__.__name__}, SQLSTATE {code})"
    return exc.__class__.__name__


class ConsumerRunner:
    """Consumes a service's topics and hands each event to its handler, exactly once in effect.

    The handler runs in a unit of work that first inserts the event id into
    `processed_events` (ON CONFLICT DO NOTHING): a redelivered event finds its id there and
    changes nothing. Offsets are committed only after the database transaction commits, and
    only those of messages actually handled (never the consumer's current positions, which
    may come from another broker generation). A message that fails `max_attempts` times, or
    is not a valid event (whatever its bytes), goes to the dead-letter topic and consumption
    moves on. A database that is unavailable is not the message's fault: nothing is
    dead-lettered, the unhandled messages are rewound and polled again after a pause.

    For throughput, the messages of one poll share one transaction: their event ids go into
    `processed_events` in one statement, and runs of consecutive events whose handler is
    `Batchable` are handled by its multi-event form. When any of them fails,
    that transaction is rolled back whole and the batch is replayed message by message
    through the careful path (own transaction, retries, then dead letter), so a failure
    costs a replay but never reorders a partition or loses a message. Handlers never commit.

    A broker that comes back without its log (a replaced in-memory broker, a topic deleted
    and recreated, a cluster restored from a backup) shows as a changed topic id or a
    missing or smaller committed offset: the affected partitions are re-read from the
    beginning (idempotency makes that safe) and a warning names them. So is a position that
    stays past the end of its partition (the high watermark the last fetch reported) for
    `past_end_grace_s`: Kafka refuses such a fetch (OffsetOutOfRange, then
    `auto_offset_reset`), but a broker that just answers "nothing yet" (Tansu) would hold the
    consumer there until the new log grows past it, and skip everything below. See
    docs/architecture.md for what cannot be recovered.
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
        topic_owners: Mapping[str, str] | None = None,
        max_attempts: int = 3,
        max_event_bytes: int = EVENT_MAX_BYTES,
        session_timeout_ms: int = 10000,
        retry_backoff_s: float = 0.2,
        pause_s: float = 2.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._group_id = group_id
        self._bootstrap = bootstrap_servers
        self._topics = list(topics)
        self._handlers = handlers
        self._db = database
        self._processed = infra.processed_events
        self._dlq = dead_letter_topic
        self._producer = producer
        self._owners = dict(topic_owners or {})
        self._max_attempts = max_attempts
        self._max_event_bytes = max_event_bytes
        self._session_timeout_ms = session_timeout_ms
        self._retry_backoff_s = retry_backoff_s
        self._pause_s = pause_s
        self._client_options = dict(client_options or {})
        # what this runner knows of the broker's state, across consumer rebuilds
        self._committed: dict[TopicPartition, int] = {}
        self._topic_ids: dict[str, Any] = {}
        self._rewound: set[TopicPartition] = set()
        self._newly_assigned: set[TopicPartition] = set()
        # partitions whose position was seen past their end, and since when
        self._past_end: dict[TopicPartition, float] = {}
        self.past_end_grace_s = PAST_END_GRACE_S
        # assigned partitions seen not fetchable, and since when
        self._unfetchable: dict[TopicPartition, float] = {}
        self.stuck_partition_s = STUCK_PARTITION_S
        # committed offsets at the last progress check (records were waiting beyond them)
        self._behind: dict[TopicPartition, int] = {}
        self._interrupted = False  # the loop paused for the database since that check
        self._progress_checked = time.monotonic()
        self.progress_interval_s = PROGRESS_INTERVAL_S
        # consumer lag per (topic, partition) assigned now, refreshed by the poll loop
        self._lag: dict[tuple[str, int], int] = {}
        self._lag_checked = 0.0
        self.lag_interval_s = LAG_INTERVAL_S
        self.rewinds = 0  # partitions re-read because the broker lost its log (for tests, ops)
        # when the loop last came round (the worker's watchdog restarts a stalled process)
        self._came_round = time.monotonic()
        self.reconnects = 0  # consumer rebuilt after a broker failure
        # built once: constructing statements per message costs more than running them
        self._record_event = (
            pg_insert(self._processed)
            .values(event_id=bindparam("event_id"), event_type=bindparam("event_type"))
            .on_conflict_do_nothing()
            .returning(self._processed.c.event_id)
        )
        # the same for all events of a poll batch at once (ids and types as two arrays)
        unnest = select(
            func.unnest(bindparam("event_ids", type_=ARRAY(UUID(as_uuid=True)))),
            func.unnest(bindparam("event_types", type_=ARRAY(String()))),
        )
        self._record_events = (
            pg_insert(self._processed)
            .from_select(["event_id", "event_type"], unnest)
            .on_conflict_do_nothing()
            .returning(self._processed.c.event_id)
        )

    def _consumer(self) -> KafkaConsumer:
        # the subscribed topics exist before the group is joined, with the configured partition
        # count: joined without them, a member is assigned nothing of a topic until a metadata
        # refresh and a rejoin; and Tansu would create them for the first client that asks,
        # with its own count (its producer also makes the dead-letter topic)
        self._producer.create_missing_topics()
        consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=f"{self._group_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._session_timeout_ms,
            # a member learns of a rebalance at its next heartbeat: the sooner, the shorter
            # the pause while a worker joins or leaves (docs/benchmarks.md, "Events")
            heartbeat_interval_ms=max(300, self._session_timeout_ms // 10),
            max_poll_records=MAX_POLL_RECORDS,
            fetch_max_wait_ms=100,
            # a consumer's metadata request must not create topics with the broker's default
            # partition count (Kafka honours this; Tansu does not, hence the creation above)
            allow_auto_create_topics=False,
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            **self._client_options,
        )
        consumer.subscribe(self._topics, listener=_VerifyOnAssignment(self))
        return consumer

    # ------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """Poll and handle until `stop` is set; reconnects after broker failures."""
        while not stop.is_set():
            consumer = None
            try:
                self._came_round = time.monotonic()
                consumer = self._consumer()
                while not stop.is_set():
                    self._came_round = time.monotonic()
                    self.poll_once(consumer, stop)
            except ConsumerStuck as stuck:
                self.reconnects += 1
                log.warning("%s", stuck)
                stop.wait(self._pause_s)
            except Exception:
                self.reconnects += 1
                log.exception("consumer loop failed; reconnecting")
                stop.wait(self._pause_s)
            finally:
                if consumer is not None:
                    consumer.close(autocommit=False)

    def stalled_for(self) -> float:
        """Seconds since the poll loop last came round.

        A healthy loop comes round at least every poll timeout plus a batch's handling. A loop
        that does not is stuck in a call that never returns: kafka-python can wait without a
        timeout for its network thread after a broker was replaced, and a handler can wait on
        a lock. `run_worker` restarts the process then (`CONSUMER_STALL_SECONDS`).
        """
        return time.monotonic() - self._came_round

    def poll_once(self, consumer: KafkaConsumer, stop: threading.Event) -> None:
        """One poll: check the broker generation, handle per partition, commit what was handled.

        When the database (or the dead-letter topic) is unavailable, the partitions not yet
        handled are rewound to their first polled offset and polled again after a pause;
        the consumer keeps its group membership.
        """
        self._rewound.clear()
        batch = consumer.poll(timeout_ms=500)
        if self._newly_assigned:
            assigned, self._newly_assigned = self._newly_assigned, set()
            self.verify_assignment(consumer, assigned & consumer.assignment())
        self._check_topic_ids(consumer)
        self._check_positions(consumer)
        self._check_fetchable(consumer)
        self._check_progress(consumer)
        if not batch:
            self._refresh_lag(consumer)
            return
        assigned = consumer.assignment()
        handled: dict[TopicPartition, int] = {}
        current: TopicPartition | None = None
        try:
            for partition, messages in batch.items():
                if partition in self._rewound or partition not in assigned:
                    continue  # from a broker generation that is gone, or revoked meanwhile
                current = partition
                self.handle_batch(messages)
                handled[partition] = messages[-1].offset + 1
        except Interruption as exc:
            self._interrupted = True
            self._resume_later(consumer, batch, handled, current, exc.done)
            self._refresh_lag(consumer)  # what waits now counts as lag
            log.warning("%s; pausing %.0fs before polling again", exc, self._pause_s)
            stop.wait(self._pause_s)
            return
        self._commit(consumer, handled)
        self._refresh_lag(consumer)

    def _resume_later(
        self,
        consumer: KafkaConsumer,
        batch: Mapping[TopicPartition, Sequence[Any]],
        handled: dict[TopicPartition, int],
        interrupted: TopicPartition | None,
        done: int,
    ) -> None:
        """Commit what was finished; seek every unfinished partition back to its first
        unfinished message (a rewound one keeps its reset to the beginning)."""
        for partition, messages in batch.items():
            if partition in handled or partition in self._rewound:
                continue
            if partition not in consumer.assignment():
                continue
            start = done if partition == interrupted else 0
            if start:
                handled[partition] = messages[start - 1].offset + 1
            consumer.seek(partition, messages[start].offset)
        self._commit(consumer, handled)

    def _commit(self, consumer: KafkaConsumer, handled: Mapping[TopicPartition, int]) -> None:
        """Commit offset + 1 of the last handled message per partition (a failure only means
        that those messages may come again, and are then skipped as duplicates)."""
        if not handled:
            return
        try:
            consumer.commit(
                {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in handled.items()},
                timeout_ms=BROKER_CALL_TIMEOUT_MS,
            )
        except Exception as exc:
            log.warning("offset commit failed (%s); handled messages may be redelivered", exc)
            return
        self._committed.update(handled)

    # ------------------------------------------------------------ lag

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages on the broker not yet handled, per (topic, partition) assigned to this
        consumer (as of the last refresh; safe to call from another thread)."""
        return dict(self._lag)

    def _refresh_lag(self, consumer: KafkaConsumer) -> None:
        """At most every `lag_interval_s`: per assigned partition, the broker's end offset as
        the last fetch reported it (its high watermark) minus the consumer's position (the
        next message to handle: after each poll, everything before it is handled). No broker
        call: the loop is never held up for it, also while the broker is away."""
        now = time.monotonic()
        if now - self._lag_checked < self.lag_interval_s:
            return
        self._lag_checked = now
        try:
            positions = _positions(consumer)
        except Exception as exc:
            log.warning("consumer lag not refreshed: %s", exc.__class__.__name__)
            return
        self._lag = {
            (partition.topic, partition.partition): max(0, end - position)
            for partition, (position, end) in positions.items()
            if end is not None  # not fetched yet: unknown, not 0
        }

    # ------------------------------------------------------------ broker generations

    def _check_topic_ids(self, consumer: KafkaConsumer) -> None:
        """A subscribed topic whose id changed was recreated: its positions mean nothing now."""
        # kafka-python keeps topic ids (metadata v10+) in its cluster metadata only
        cluster = consumer._client.cluster
        for topic in {tp.topic for tp in consumer.assignment()}:
            current = cluster.topic_id(topic)
            if current is None:
                continue
            known = self._topic_ids.setdefault(topic, current)
            if known != current:
                partitions = [tp for tp in consumer.assignment() if tp.topic == topic]
                self._rewind(consumer, partitions, "the topic was recreated (its id changed)")

    def _check_positions(self, consumer: KafkaConsumer) -> None:
        """A position past the end of its partition for `past_end_grace_s`: the log it
        belonged to is gone (no broker call: positions and high watermarks as last fetched)."""
        try:
            past_end = [
                partition
                for partition, (position, end) in _positions(consumer).items()
                if end is not None and position > end
            ]
        except Exception as exc:
            log.warning("consumer positions not checked: %s", exc.__class__.__name__)
            return
        self._past_end = _seen_since(self._past_end, past_end)
        expired = _seen_for(self._past_end, self.past_end_grace_s)
        if expired:
            for partition in expired:
                del self._past_end[partition]
            self._rewind(consumer, expired, "the position is past the end of the partition")

    def _check_fetchable(self, consumer: KafkaConsumer) -> None:
        """Raise `ConsumerStuck` when an assigned partition has not been fetchable for
        `stuck_partition_s`: `run` then rebuilds the consumer.

        Seen after a broker replacement: a rejoin that the new broker's coordinator never
        completed left every partition pending revocation for minutes while the loop kept
        coming round (so the watchdog, which looks for a loop that does not, saw nothing).
        Closing the consumer leaves the group; the new one joins with a new member id.
        """
        try:
            states = consumer._subscription.assignment
            unfetchable = [
                partition
                for partition in consumer.assignment()
                if (state := states.get(partition)) is not None and not state.is_fetchable()
            ]
        except Exception as exc:
            log.warning("consumer partitions not checked: %s", exc.__class__.__name__)
            return
        self._unfetchable = _seen_since(self._unfetchable, unfetchable)
        stuck = _seen_for(self._unfetchable, self.stuck_partition_s)
        if stuck:
            self._unfetchable = {}
            raise ConsumerStuck(
                f"{', '.join(f'{tp.topic}[{tp.partition}]' for tp in stuck)} not fetchable for "
                f"{self.stuck_partition_s:g} s (a rebalance or offset reset that does not "
                "complete): rebuilding the consumer"
            )

    def _check_progress(self, consumer: KafkaConsumer) -> None:
        """Raise `ConsumerStuck` when a partition of the subscribed topics had records waiting
        beyond the group's committed offset at two checks `progress_interval_s` apart, and
        that offset did not move.

        The broker is asked (two calls per interval) for every partition of the topics, not
        only those assigned here: a member that was assigned nothing of a topic, or whose
        fetches stopped, shows no position to compare with. After a broker replacement
        consumers were seen with fetchable partitions and no high watermark, and with a topic
        missing from their assignment, reading nothing for minutes. A check across which the
        loop was interrupted (the database away) starts afresh: that wait is not the broker's.
        """
        now = time.monotonic()
        if now - self._progress_checked < self.progress_interval_s:
            return
        self._progress_checked = now
        if self._interrupted:
            self._interrupted = False
            self._behind = {}
            return
        # the partitions as the consumer's metadata has them (kafka-python's public
        # partitions_for_topic can wait without a timeout for a topic it does not know)
        cluster = consumer._client.cluster
        try:
            partitions = [
                TopicPartition(topic, number)
                for topic in self._topics
                for number in sorted(cluster.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                self._behind = {}
                return
            ends = consumer.end_offsets(partitions, timeout_ms=BROKER_CALL_TIMEOUT_MS)
            # kafka-python offers the group's committed offsets one partition per call only
            committed = consumer._coordinator.fetch_committed_offsets(
                partitions, timeout_ms=BROKER_CALL_TIMEOUT_MS
            )
        except Exception as exc:
            log.warning("consumer progress not checked: %s", exc.__class__.__name__)
            return
        behind: dict[TopicPartition, int] = {}
        for partition in partitions:
            done = committed[partition].offset if partition in committed else 0
            if (ends.get(partition) or 0) > done:
                behind[partition] = done
        stuck = sorted(tp for tp, done in behind.items() if self._behind.get(tp) == done)
        self._behind = behind
        if stuck:
            self._behind = {}
            assigned = consumer.assignment()
            raise ConsumerStuck(
                ", ".join(
                    f"{tp.topic}[{tp.partition}] (committed {behind[tp]} of {ends[tp]}, "
                    f"{'assigned here' if tp in assigned else 'not assigned here'})"
                    for tp in stuck
                )
                + f" did not move for {self.progress_interval_s:g} s: rebuilding the consumer"
            )

    def verify_assignment(
        self, consumer: KafkaConsumer, partitions: Iterable[TopicPartition]
    ) -> None:
        """After a (re)join: a committed offset missing or below the one this runner committed
        means the broker lost the group's state, and with it most likely the log.

        Bounded in time (a stop request is never held up for long); partitions that could not
        be checked are checked again after the next poll.
        """
        lost = []
        for partition in partitions:
            ours = self._committed.get(partition)
            if ours is None:
                continue
            try:
                theirs = consumer.committed(partition, timeout_ms=BROKER_CALL_TIMEOUT_MS)
            except Exception as exc:
                log.warning("cannot read the committed offset of %s yet (%s)", partition, exc)
                self._newly_assigned.add(partition)
                continue
            if theirs is None or theirs < ours:
                lost.append(partition)
        if lost:
            self._rewind(consumer, lost, "the broker lost the group's committed offsets")

    def _rewind(
        self, consumer: KafkaConsumer, partitions: Sequence[TopicPartition], why: str
    ) -> None:
        """Re-read `partitions` from the beginning; forget what this runner knew of them."""
        partitions = sorted(partitions)
        if not partitions:
            return
        consumer.seek_to_beginning(*partitions)
        self._rewound.update(partitions)
        self.rewinds += 1
        cluster = consumer._client.cluster
        for partition in partitions:
            self._committed.pop(partition, None)
            current = cluster.topic_id(partition.topic)
            if current is not None:
                self._topic_ids[partition.topic] = current
        log.warning(
            "broker lost its log for %s (%s): re-reading from the beginning; "
            "events already handled are skipped as duplicates",
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions),
            why,
        )

    # ------------------------------------------------------------ handling

    def handle_batch(self, messages: Sequence[Any]) -> None:
        """Handle messages of one partition in order: one transaction, or one each on failure.

        The batch's event ids are recorded in one statement (the new ones come back); then
        the handlers run in partition order, runs of consecutive `Batchable` events with the
        same multi-event form in one call.
        """
        failed_at: int | None = 0
        try:
            with self._db.unit_of_work() as uow:
                todo: list[tuple[int, Envelope, Handler]] = []
                for index, message in enumerate(messages):
                    failed_at = index  # where we are, should the next step raise
                    envelope = self.parse(message)
                    handler = self._handlers.get(envelope.event_type)
                    if handler is None:
                        log.info("skipping event type %s: no handler", envelope.event_type)
                        continue
                    todo.append((index, envelope, handler))
                failed_at = None  # the statements below blame no single message
                fresh = self._record_batch(uow, [envelope for _, envelope, _ in todo])
                first_time: list[tuple[int, Envelope, Handler]] = []
                for item in todo:
                    if item[1].event_id in fresh:
                        fresh.discard(item[1].event_id)  # a second copy in the batch: duplicate
                        first_time.append(item)
                    else:
                        log.info("duplicate event %s ignored", item[1].event_id)
                for run in _runs(first_time):
                    index, envelope, handler = run[0]
                    if len(run) > 1 and isinstance(handler, Batchable):
                        failed_at = None  # a multi-event call blames no single message
                        handler.many(uow, [envelope for _, envelope, _ in run])
                    else:
                        failed_at = index
                        self._call_handler(uow, envelope, handler)
                failed_at = None  # a failing commit blames no single message
                uow.commit()
        except Exception as exc:
            if is_transient(exc):
                raise TransientFailure.of(exc) from exc
            log.info(
                "batch of %d failed (%s); replaying one by one", len(messages), safe_reason(exc)
            )
            for index, message in enumerate(messages):
                try:
                    if index == failed_at:  # the batch was the failing message's first attempt
                        self.handle_message(message, attempts_used=1, previous_error=exc)
                    else:
                        self.handle_message(message)
                except Interruption as interruption:
                    interruption.done = index  # the ones before are finished: not redone
                    raise

    def _record_batch(self, uow: UnitOfWork, envelopes: Sequence[Envelope]) -> set[Any]:
        """Insert the batch's event ids into `processed_events`; the ids that were new."""
        if not envelopes:
            return set()
        # in id order: two consumers recording overlapping batches (a rebalance) lock the
        # rows in the same order and cannot deadlock
        types = {envelope.event_id: envelope.event_type for envelope in envelopes}
        ordered = sorted(types.items(), key=lambda item: item[0].int)
        return set(
            uow.session.execute(
                self._record_events,
                {
                    "event_ids": [event_id for event_id, _ in ordered],
                    "event_types": [event_type for _, event_type in ordered],
                },
            ).scalars()
        )

    def parse(self, message: Any) -> Envelope:
        """The message's envelope, from the service that owns its topic; else `InvalidEvent`."""
        envelope = Envelope.from_bytes(message.value, self._max_event_bytes)
        owner = self._owners.get(message.topic)
        if owner is not None and envelope.producer != owner:
            raise InvalidEvent(
                f"producer '{envelope.producer}' may not publish to {message.topic} "
                f"(owned by {owner})"
            )
        return envelope

    def handle_message(
        self, message: Any, attempts_used: int = 0, previous_error: Exception | None = None
    ) -> None:
        """Handle one Kafka message; returns once it is handled, skipped or dead-lettered."""
        try:
            envelope = self.parse(message)
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
                self._dead_letter(message, exc, attempts=attempt, envelope=envelope)
                return
            except Exception as exc:
                if is_transient(exc):
                    raise TransientFailure.of(exc) from exc
                error = exc
                log.warning(
                    "handling %s failed (attempt %d): %s",
                    envelope.event_type,
                    attempt,
                    safe_reason(exc),
                )
                time.sleep(self._retry_backoff_s * attempt)
        if error is None:  # the batch failed at its commit and this message alone did not
            error = RuntimeError("the batch failed and so did this message's own attempts")
        self._dead_letter(message, error, attempts=self._max_attempts, envelope=envelope)

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
        self._call_handler(uow, envelope, handler)

    @staticmethod
    def _call_handler(uow: UnitOfWork, envelope: Envelope, handler: Handler) -> None:
        token = event_id_var.set(str(envelope.event_id))
        try:
            handler(uow, envelope)
        finally:
            event_id_var.reset(token)

    def _dead_letter(
        self, message: Any, error: BaseException, *, attempts: int, envelope: Envelope | None = None
    ) -> None:
        """Publish the original bytes to the dead-letter topic, the context in headers.

        Headers and the log line carry ids, type, position and reason: never payload values.
        A value larger than the event limit is not copied (it could not be published).
        """
        reason = safe_reason(error)
        event_id = str(envelope.event_id) if envelope else ""
        event_type = envelope.event_type if envelope else ""
        log.error(
            "dead-lettering %s/%s@%s event_id=%s type=%s after %d attempt(s): %s",
            message.topic,
            message.partition,
            message.offset,
            event_id or "-",
            event_type or "-",
            attempts,
            reason,
        )
        value: bytes = message.value or b""
        size = len(value)
        if size > self._max_event_bytes:
            value = b""
        headers = {
            "dlq.original.topic": message.topic,
            "dlq.original.partition": str(message.partition),
            "dlq.original.offset": str(message.offset),
            "dlq.event.id": event_id,
            "dlq.event.type": event_type,
            "dlq.reason": reason,
            "dlq.attempts": str(attempts),
            "dlq.consumer.group": self._group_id,
            "dlq.failed.at": utcnow().isoformat(),
            "dlq.value.bytes": str(size),
            "dlq.value.dropped": "true" if size > self._max_event_bytes else "false",
        }
        key = (
            message.key.decode(errors="replace")
            if message.key
            else f"{message.topic}-{message.partition}-{message.offset}"
        )
        outcome = self._producer.send_all([_dead_letter_record(self._dlq, key, value, headers)])
        if outcome[0] is not None and value and is_record_fault(outcome[0]):
            # the copy plus its headers is over a size limit the original was just under:
            # the context alone must get through, or the partition would stop here
            headers["dlq.value.dropped"] = "true"
            outcome = self._producer.send_all([_dead_letter_record(self._dlq, key, b"", headers)])
        if outcome[0] is not None:
            raise DeadLetterUnavailable(f"cannot write to {self._dlq}: {outcome[0]}")


def _runs(
    items: Sequence[tuple[int, Envelope, Handler]],
) -> list[list[tuple[int, Envelope, Handler]]]:
    """Consecutive items grouped while their handlers share one multi-event form (others
    stand alone): handling run after run keeps the partition's order."""
    runs: list[list[tuple[int, Envelope, Handler]]] = []
    for item in items:
        handler = item[2]
        previous = runs[-1][-1][2] if runs else None
        if (
            isinstance(handler, Batchable)
            and isinstance(previous, Batchable)
            and previous.many is handler.many
        ):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _dead_letter_record(
    topic: str, key: str, value: bytes, headers: Mapping[str, str]
) -> OutgoingRecord:
    return OutgoingRecord(
        topic,
        key[:200],
        value,
        headers=tuple((name, text.encode()) for name, text in headers.items()),
    )


class _VerifyOnAssignment(ConsumerRebalanceListener):
    """Notes partitions assigned by a (re)join; the poll loop verifies them before handling.

    (kafka-python runs this on its network thread, where no blocking call may be made.)
    """

    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    def on_partitions_revoked(self, revoked: Any) -> None:
        """Nothing to do: offsets are committed right after each poll is handled."""

    def on_partitions_assigned(self, assigned: Any) -> None:
        """Queue the assigned partitions for `verify_assignment`."""
        self._runner._newly_assigned.update(assigned)
