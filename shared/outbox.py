"""Transactional outbox: rows written in the use case's transaction, published by a relay."""

from __future__ import annotations

import functools
import io
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Insert,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from shared.db import Database, json_dumps, utcnow
from shared.events import Envelope, EventType
from shared.infrastructure import RELAY_BUCKETS, Infrastructure
from shared.kafka import HeldBack, OutgoingRecord, RobustProducer

log = logging.getLogger(__name__)


# Refusals that are the record's own fault (or its topic's): retrying cannot help, so they
# count towards parking. Anything else (broker unreachable, timeouts, leader changes) is the
# broker's state: the row keeps its attempts and is simply tried again.
RECORD_FAULTS: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidRecordError,
    CorruptRecordError,
    InvalidTopicError,
    UnknownTopicOrPartitionError,
    TopicAuthorizationFailedError,
)


def is_record_fault(error: Exception) -> bool:
    """Whether a publish failure is the record's own fault (counts towards parking it)."""
    return isinstance(error, RECORD_FAULTS)


def bucket_of(aggregate_id: str) -> int:
    """The relay bucket of an aggregate (stable across processes and restarts)."""
    return zlib.crc32(aggregate_id.encode()) % RELAY_BUCKETS


@dataclass(frozen=True)
class PendingEvent:
    """An envelope with the (logical, unprefixed) topic it goes to."""

    topic: str
    envelope: Envelope

    @classmethod
    def of(
        cls,
        event_type: EventType,
        *,
        producer: str,
        aggregate_id: object,
        payload: BaseModel | dict[str, Any],
        correlation_id: str | None = None,
    ) -> PendingEvent:
        """A new event of `event_type` (payload validated) bound for its topic."""
        envelope = event_type.build(
            producer=producer,
            aggregate_id=aggregate_id,
            payload=payload,
            correlation_id=correlation_id,
        )
        return cls(topic=event_type.topic, envelope=envelope)


# the envelopes one relay pass reads and hands to the producer at most (kafka-python buffers
# 32 MiB; 2,000 rows of up to 1 MiB each would need 2 GiB)
RELAY_MAX_PASS_BYTES = 16 * 1024 * 1024


class OutboxWriter:
    """Writes emitted events into the service's outbox table (inside the caller's transaction).

    A few events go in as one INSERT; from `copy_from` events on (a bundle run emits
    thousands) one COPY streams them. Either way the rows take their ids in the order of
    `events`, so the relay publishes each aggregate's events in the order they were emitted,
    and the unique `event_id` holds. COPY needs no session state and no prepared statement:
    it works through PgBouncer in transaction pooling mode.
    """

    COLUMNS = ("event_id", "event_type", "topic", "aggregate_id", "bucket", "envelope")

    def __init__(self, infra: Infrastructure, *, copy_from: int = 64) -> None:
        self._table = infra.outbox
        self._copy_from = copy_from

    def write(
        self,
        session: Session,
        events: Sequence[PendingEvent],
        rows: Sequence[tuple[Table, list[dict[str, Any]]]] = (),
    ) -> None:
        """Insert one outbox row per event, in order; `rows` of other tables (e.g. audit
        entries) go in with a few events as parts of the same statement (CTEs)."""
        if len(events) >= self._copy_from or not events:
            for table, values in rows:
                session.execute(insert(table), values)
            if events:
                self._copy(session, events)
            return
        documents = [
            {
                "event_id": event.envelope.event_id,
                "event_type": event.envelope.event_type,
                "topic": event.topic,
                "aggregate_id": event.envelope.aggregate_id,
                "bucket": bucket_of(event.envelope.aggregate_id),
                "envelope": _envelope_document(event),
            }
            for event in events
        ]
        parts = [(self._table, documents), *rows]
        statement = _insert_rows(tuple((table, tuple(values[0])) for table, values in parts))
        session.execute(
            statement,
            {
                f"p{index}_{name}": [_array_item(table.c[name], row[name]) for row in values]
                for index, (table, values) in enumerate(parts)
                for name in values[0]
            },
        )

    def _copy(self, session: Session, events: Sequence[PendingEvent]) -> None:
        """The rows as one COPY in text format, on the session's own connection (and so in
        its transaction)."""
        lines = []
        for event in events:
            envelope = event.envelope
            fields = (
                str(envelope.event_id),
                envelope.event_type,
                event.topic,
                envelope.aggregate_id,
                str(bucket_of(envelope.aggregate_id)),
                json_dumps(_envelope_document(event)),
            )
            lines.append("\t".join(_copy_text(field) for field in fields))
        data = io.StringIO("\n".join(lines) + "\n")
        connection = session.connection()
        dialect = connection.dialect
        target = dialect.identifier_preparer.format_table(self._table)
        statement = f"COPY {target} ({', '.join(self.COLUMNS)}) FROM STDIN"
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.copy_expert(statement, data, size=1 << 20)
        except dialect.loaded_dbapi.Error as exc:
            # raised as SQLAlchemy raises its own statements' errors (IntegrityError, ...)
            raise DBAPIError.instance(
                statement, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True
            ) from exc
        finally:
            cursor.close()


@functools.lru_cache(maxsize=64)
def _insert_rows(parts: tuple[tuple[Table, tuple[str, ...]], ...]) -> Insert:
    """One INSERT of the rows of several tables (the first, the others as CTEs: PostgreSQL
    runs an INSERT in a WITH whether or not the statement refers to it), each table's
    columns given as arrays (`p<index>_<column>`) and unnested in their order; one
    statement per shape, built and compiled once (a multi-row VALUES is compiled anew
    every time)."""
    inserts = []
    for index, (table, names) in enumerate(parts):
        arrays = [
            cast(bindparam(f"p{index}_{name}"), ARRAY(_array_type(table.c[name]))) for name in names
        ]
        given = func.unnest(*arrays).table_valued(*names, with_ordinality="n").render_derived()
        columns = [
            cast(given.c[name], JSONB) if _is_json(table.c[name]) else given.c[name]
            for name in names
        ]
        inserts.append(insert(table).from_select(list(names), select(*columns).order_by(given.c.n)))
    statement = inserts[0]
    for index, part in enumerate(inserts[1:], start=1):
        statement = statement.add_cte(part.cte(f"written_{index}"))
    return statement


def _is_json(column: Column[Any]) -> bool:
    return isinstance(column.type, JSON)


def _array_type(column: Column[Any]) -> Any:
    # JSON documents travel as their text (an array of jsonb would take nested lists apart)
    return Text() if _is_json(column) else column.type


def _array_item(column: Column[Any], value: Any) -> Any:
    return json_dumps(value) if _is_json(column) and value is not None else value


def _envelope_document(event: PendingEvent) -> dict[str, Any]:
    """The envelope as the JSON document of its row; the payload is JSON-ready already
    (EventType.build dumped it once)."""
    return {
        **event.envelope.model_dump(mode="json", exclude={"payload"}),
        "payload": event.envelope.payload,
    }


# COPY's text format: a backslash escapes, tab separates columns, newline ends a row
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    # most envelopes hold none of them: four scans cost less than one translation
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


@dataclass(frozen=True)
class RelayResult:
    """What one relay pass did."""

    published: int
    failed: int
    broker_unavailable: bool = False

    @property
    def should_back_off(self) -> bool:
        """Whether the next pass should wait (publishing failed or cannot start)."""
        return self.failed > 0 or self.broker_unavailable


class OutboxRelay:
    """Publishes pending outbox rows in order per aggregate and marks them published.

    Each pass locks a set of relay buckets with `FOR UPDATE SKIP LOCKED` for the length of
    its transaction, so relays running at once never publish the same row, and the rows of
    one aggregate (always in one bucket) are published by one relay at a time, in id order.
    A pass takes at most half the buckets (oldest pending first), so a second relay finds
    work too.
    """

    def __init__(
        self,
        database: Database,
        infra: Infrastructure,
        producer: RobustProducer,
        *,
        batch_size: int = 500,
        buckets_per_pass: int = RELAY_BUCKETS // 2,
        topic_prefix: str = "",
        max_attempts: int = 10,
        max_pass_bytes: int = RELAY_MAX_PASS_BYTES,
    ) -> None:
        self._db = database
        self._outbox = infra.outbox
        self._buckets = infra.relay_buckets
        self._producer = producer
        self._batch_size = batch_size
        self._max_pass_bytes = max_pass_bytes
        self._buckets_per_pass = buckets_per_pass
        self._topic_prefix = topic_prefix
        self._max_attempts = max_attempts

    def _publishable(self, session: Session) -> ColumnElement[bool]:
        """Pending, and neither stuck itself nor queued behind a stuck row of its aggregate.

        A row refused `max_attempts` times for its own fault (larger than the broker
        accepts, an unknown topic; see `RECORD_FAULTS`) is parked: it stays pending with its
        error for operators (`/api/admin/outbox`, `python -m shared.cli outbox
        --retry-stuck`), its aggregate waits behind it (order holds), and the relay stops
        backing off for everybody else. An unreachable broker parks nothing. Stuck rows are
        rare, so they are read first and excluded by value (a correlated subquery per row
        costs O(pending^2)).
        """
        outbox = self._outbox
        stuck = session.execute(
            select(outbox.c.aggregate_id, func.min(outbox.c.id))
            .where(outbox.c.published_at.is_(None), outbox.c.attempts >= self._max_attempts)
            .group_by(outbox.c.aggregate_id)
        ).all()
        condition: ColumnElement[bool] = outbox.c.published_at.is_(None)
        for aggregate_id, first_stuck_id in stuck:
            condition = and_(
                condition,
                ~and_(outbox.c.aggregate_id == aggregate_id, outbox.c.id >= first_stuck_id),
            )
        return condition

    def _oldest_pending(self, buckets: Sequence[int], publishable: ColumnElement[bool]) -> Any:
        """The oldest `batch_size` publishable rows of `buckets`, in id order, cut where their
        envelopes pass `max_pass_bytes` (the first row always comes: one row is at most
        EVENT_MAX_BYTES). Without the cut a pass of 2,000 large events would hold gigabytes
        in the relay and more than the producer's buffer; the rows after it wait for the
        next pass, so every aggregate keeps its order.

        Read per bucket through the pending index and merged: one scan in id order over all
        buckets would walk the primary key past every published row (a pass then costs
        O(rows ever written), not O(batch_size)).
        """
        outbox = self._outbox
        columns = (
            outbox.c.id,
            outbox.c.topic,
            outbox.c.aggregate_id,
            # the stored JSON as text, published as it is: decoding it into a dict only to
            # encode it again cost a third of a pass
            cast(outbox.c.envelope, Text).label("envelope"),
        )
        per_bucket = [
            select(*columns)
            .where(outbox.c.bucket == bucket, publishable)
            .order_by(outbox.c.id)
            .limit(self._batch_size)
            for bucket in buckets
        ]
        merged = union_all(*per_bucket).subquery()
        size = func.octet_length(merged.c.envelope)
        first = (
            select(merged, (func.sum(size).over(order_by=merged.c.id) - size).label("before"))
            .order_by(merged.c.id)
            .limit(self._batch_size)
            .subquery()
        )
        return (
            select(first.c.id, first.c.topic, first.c.aggregate_id, first.c.envelope)
            .where(first.c.before < self._max_pass_bytes)
            .order_by(first.c.id)
        )

    def publish_pending(self) -> RelayResult:
        """One pass: lock buckets, publish their oldest pending rows, mark what was acknowledged."""
        outbox = self._outbox
        if not self._producer.ready():  # no broker: do not even open a transaction
            return RelayResult(0, 0, broker_unavailable=True)
        with self._db.session() as session, session.begin():
            publishable = self._publishable(session)
            oldest_pending = (
                select(func.min(outbox.c.id))
                .where(outbox.c.bucket == self._buckets.c.bucket, publishable)
                .scalar_subquery()
            )
            buckets = (
                session.execute(
                    select(self._buckets.c.bucket)
                    .where(oldest_pending.is_not(None))
                    .order_by(oldest_pending)
                    .limit(self._buckets_per_pass)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            if not buckets:
                return RelayResult(0, 0)
            rows = session.execute(self._oldest_pending(buckets, publishable)).all()
            records = [
                OutgoingRecord(
                    topic=self._topic_prefix + row.topic,
                    key=row.aggregate_id,
                    value=row.envelope.encode(),
                )
                for row in rows
            ]
            outcomes = self._producer.send_all(records)
            published_ids = _acknowledged_prefix_per_aggregate(rows, outcomes)
            now = utcnow()
            if published_ids:
                session.execute(
                    update(outbox).where(outbox.c.id.in_(published_ids)).values(published_at=now)
                )
            failed = [
                (row.id, error)
                for row, error in zip(rows, outcomes, strict=True)
                if error is not None and not isinstance(error, HeldBack)
            ]
            for row_id, error in failed:
                counted = outbox.c.attempts + 1 if is_record_fault(error) else outbox.c.attempts
                session.execute(
                    update(outbox)
                    .where(outbox.c.id == row_id)
                    .values(attempts=counted, last_error=str(error)[:2000])
                )
            return RelayResult(len(published_ids), len(rows) - len(published_ids))


def _acknowledged_prefix_per_aggregate(
    rows: Sequence[object], outcomes: Sequence[Exception | None]
) -> list[int]:
    """Ids to mark published: per aggregate, rows up to (not including) its first failure."""
    blocked: set[str] = set()
    published: list[int] = []
    for row, error in zip(rows, outcomes, strict=True):
        aggregate = row.aggregate_id  # type: ignore[attr-defined]
        if error is not None or aggregate in blocked:
            blocked.add(aggregate)
            continue
        published.append(row.id)  # type: ignore[attr-defined]
    return published


def pending_summary(
    database: Database, infra: Infrastructure, max_attempts: int = 10
) -> dict[str, object]:
    """Unpublished rows, the age of the oldest, and the stuck ones with their last error."""
    outbox = infra.outbox
    with database.session() as session:
        count, oldest = session.execute(
            select(func.count(), func.min(outbox.c.created_at)).where(
                outbox.c.published_at.is_(None)
            )
        ).one()
        stuck = session.execute(
            select(outbox.c.id, outbox.c.event_type, outbox.c.aggregate_id, outbox.c.last_error)
            .where(outbox.c.published_at.is_(None), outbox.c.attempts >= max_attempts)
            .order_by(outbox.c.id)
            .limit(20)
        ).all()
    age = (utcnow() - oldest).total_seconds() if oldest else 0.0
    return {
        "pending": count,
        "oldest_pending_age_seconds": round(age, 3),
        "stuck": [row._asdict() for row in stuck],
    }


def retry_stuck(database: Database, infra: Infrastructure, max_attempts: int = 10) -> int:
    """Give stuck rows a fresh set of attempts (after the cause is fixed); returns how many."""
    outbox = infra.outbox
    with database.session() as session, session.begin():
        result = session.execute(
            update(outbox)
            .where(outbox.c.published_at.is_(None), outbox.c.attempts >= max_attempts)
            .values(attempts=0)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]
