"""Outbox retention and replay: published rows are kept `OUTBOX_RETENTION_DAYS`, so records a
broker acknowledged and then lost (a cluster lost, or restored from an old backup) can be
published again; older ones are pruned in small batches.

- `prune_published`: deletes published rows older than the retention, a batch per short
  transaction (rows a relay holds are skipped, never waited for); unpublished rows are never
  deleted, whatever their age.
- `replay_published`: publishes the retained rows published in [since, until] again, with
  their original envelopes (event ids) and keys, to their topics. Bucket by bucket it holds
  the bucket's relay lock (the relays go on with the other buckets meanwhile), so the rows of
  one aggregate reach their partition in id order, and no newer row of that aggregate is
  published in between. Consumers skip what they handled already (`processed_events`).

After a broker restore the consumers take the replayed records: a broker whose log is gone
or older than their positions shows as a recreated topic or a lost (or lower) committed
offset, and `ConsumerRunner` reads those partitions again from the beginning, where the
replayed records are. On a broker that kept its log the replayed records come after the
consumers' positions and are read as new ones. A consumer notices a restore only when it
reconnects: restart the workers before a replay (docs/runbook.md), or a position from the old
log could be valid again in the log the replay lengthened, and the records below it skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from shared.db import Database
from shared.infrastructure import RELAY_BUCKETS, Infrastructure
from shared.kafka import OutgoingRecord, RobustProducer

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 14
PRUNE_BATCH = 1000
REPLAY_BATCH = 500


class RetentionExceeded(ValueError):
    """A replay reaching back further than the retention: those rows may be pruned already."""


def retention_start(as_of: datetime, retention_days: int) -> datetime:
    """The oldest publication time whose rows are still kept at `as_of`."""
    return as_of - timedelta(days=retention_days)


def prune_published(
    database: Database,
    infra: Infrastructure,
    *,
    as_of: datetime,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    batch_size: int = PRUNE_BATCH,
) -> int:
    """Delete rows published before `as_of - retention_days`, `batch_size` rows per
    transaction; returns how many were deleted. Unpublished rows stay, whatever their age."""
    outbox = infra.outbox
    cutoff = retention_start(as_of, retention_days)
    total = 0
    while True:
        batch = (
            select(outbox.c.id)
            .where(outbox.c.published_at.is_not(None), outbox.c.published_at < cutoff)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        with database.session() as session, session.begin():
            deleted = int(
                session.execute(delete(outbox).where(outbox.c.id.in_(batch))).rowcount  # type: ignore[attr-defined]
            )
        total += deleted
        if deleted < batch_size:
            return total


@dataclass(frozen=True)
class ReplayResult:
    """What a replay of one service's outbox did."""

    replayed: int
    failed: int

    @property
    def ok(self) -> bool:
        """Whether every row was acknowledged by the broker."""
        return self.failed == 0


def replay_published(
    database: Database,
    infra: Infrastructure,
    producer: RobustProducer,
    *,
    since: datetime,
    until: datetime | None = None,
    as_of: datetime,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    topic_prefix: str = "",
    batch_size: int = REPLAY_BATCH,
) -> ReplayResult:
    """Publish again the rows published in [since, until] (until: default as_of), in id
    order per bucket (so per aggregate), with their original envelopes and keys.

    Raises `RetentionExceeded` when `since` is older than the retention at `as_of`. A row
    the broker refuses stops its bucket there (the later rows of its aggregates must not
    overtake it); the other buckets go on, and `failed` counts the rows not replayed: run the
    replay again (what consumers handled already is skipped).
    """
    oldest = retention_start(as_of, retention_days)
    if since < oldest:
        raise RetentionExceeded(
            f"--since {since.isoformat()} is older than the outbox retention "
            f"({retention_days} days before {as_of.isoformat()}: {oldest.isoformat()}); rows "
            "published before that may be pruned already and cannot be replayed"
        )
    until = until or as_of
    if until < since:
        raise ValueError(f"--until {until.isoformat()} is before --since {since.isoformat()}")
    # where the window starts in id order (published_at index): each bucket's scan in id
    # order starts there instead of at the oldest retained row
    outbox = infra.outbox
    with database.session() as session:
        first = session.execute(
            select(func.min(outbox.c.id)).where(*_published_between(infra, since, until))
        ).scalar_one()
    if first is None:
        return ReplayResult(0, 0)
    replayed = failed = 0
    for bucket in range(RELAY_BUCKETS):
        done, refused = _replay_bucket(
            database, infra, producer, bucket, since, until, topic_prefix, batch_size, first - 1
        )
        replayed += done
        failed += refused
    return ReplayResult(replayed, failed)


def _replay_bucket(
    database: Database,
    infra: Infrastructure,
    producer: RobustProducer,
    bucket: int,
    since: datetime,
    until: datetime,
    topic_prefix: str,
    batch_size: int,
    after: int,
) -> tuple[int, int]:
    """Replay one bucket's rows with ids above `after` under the bucket's relay lock;
    returns (replayed, not replayed)."""
    buckets = infra.relay_buckets
    replayed = 0
    with database.session() as session, session.begin():
        # waits for a relay pass holding the bucket; relays skip it while the replay holds it
        session.execute(
            select(buckets.c.bucket).where(buckets.c.bucket == bucket).with_for_update()
        )
        while True:
            rows = _rows_after(session, infra, bucket, since, until, after, batch_size)
            if not rows:
                return replayed, 0
            records = [
                OutgoingRecord(
                    topic=topic_prefix + row.topic, key=row.aggregate_id, value=row.envelope
                )
                for row in rows
            ]
            outcomes = producer.send_all(records)
            for index, error in enumerate(outcomes):
                if error is not None:
                    log.error(
                        "replay of outbox row %s (bucket %s) refused: %s; the bucket stops here",
                        rows[index].id,
                        bucket,
                        error,
                    )
                    left = _count_from(session, infra, bucket, since, until, rows[index].id)
                    return replayed + index, left
            replayed += len(rows)
            after = rows[-1].id


def _published_between(
    infra: Infrastructure, since: datetime, until: datetime
) -> tuple[ColumnElement[bool], ...]:
    outbox = infra.outbox
    return (
        outbox.c.published_at.is_not(None),
        outbox.c.published_at >= since,
        outbox.c.published_at <= until,
    )


def _rows_after(
    session: Session,
    infra: Infrastructure,
    bucket: int,
    since: datetime,
    until: datetime,
    after: int,
    limit: int,
) -> Sequence[Any]:
    outbox = infra.outbox
    return session.execute(
        select(outbox.c.id, outbox.c.topic, outbox.c.aggregate_id, outbox.c.envelope)
        .where(
            outbox.c.bucket == bucket, outbox.c.id > after, *_published_between(infra, since, until)
        )
        .order_by(outbox.c.id)
        .limit(limit)
    ).all()


def _count_from(
    session: Session,
    infra: Infrastructure,
    bucket: int,
    since: datetime,
    until: datetime,
    first: int,
) -> int:
    outbox = infra.outbox
    return int(
        session.execute(
            select(func.count()).where(
                outbox.c.bucket == bucket,
                outbox.c.id >= first,
                *_published_between(infra, since, until),
            )
        ).scalar_one()
    )
