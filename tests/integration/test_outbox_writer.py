"""The outbox writer's two paths (one INSERT for a few events, one COPY for many) against a
real PostgreSQL: rows in the order emitted, unique event ids, buckets, the same documents,
and a failed COPY that leaves nothing behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from shared.db import Database
from shared.events import EventType
from shared.outbox import OutboxWriter, PendingEvent, bucket_of

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]

COPY_FROM = 8


class NotePayload(BaseModel):
    text: str
    number: float | None


NOTE_WRITTEN = EventType("note.written", 1, NotePayload, "note-events")

# everything COPY's text format escapes, JSON escapes, and characters beyond ASCII
AWKWARD = ["tab\there", "new\nline", "back\\slash \\N", 'quote " \\" ', "carriage\rreturn", "Ü ß ✓"]


@pytest.fixture
def database(make_settings: Any) -> Iterator[Database]:
    settings = make_settings(MatchingSettings)
    database = Database(
        settings.database_url, outbox=OutboxWriter(MATCHING_INFRA, copy_from=COPY_FROM)
    )
    yield database
    database.dispose()


def _events(count: int, aggregates: list[str]) -> list[PendingEvent]:
    return [
        PendingEvent.of(
            NOTE_WRITTEN,
            producer="matching_service",
            aggregate_id=aggregates[i % len(aggregates)],
            payload={"text": f"{i}: {AWKWARD[i % len(AWKWARD)]}", "number": i / 3 or None},
            correlation_id=f"corr\t{i}",
        )
        for i in range(count)
    ]


def _write(database: Database, events: list[PendingEvent]) -> None:
    with database.unit_of_work() as uow:
        for event in events:
            uow.emit(event)
        uow.commit()


def _rows(engine: sa.Engine, events: list[PendingEvent]) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT id, event_id, event_type, topic, aggregate_id, bucket, envelope "
                    "FROM matching_service.outbox WHERE event_id = ANY(:ids) ORDER BY id"
                ),
                {"ids": [event.envelope.event_id for event in events]},
            )
        )


@pytest.fixture
def cleanup(admin_engine: sa.Engine) -> Iterator[list[PendingEvent]]:
    """The test's events; their rows are deleted afterwards (no relay publishes them)."""
    written: list[PendingEvent] = []
    yield written
    with admin_engine.begin() as connection:
        connection.execute(
            sa.text("DELETE FROM matching_service.outbox WHERE event_id = ANY(:ids)"),
            {"ids": [event.envelope.event_id for event in written]},
        )


@pytest.mark.parametrize("count", [COPY_FROM - 1, COPY_FROM, 150], ids=["insert", "copy", "many"])
def test_rows_keep_the_order_emitted_with_their_buckets_and_exact_documents(
    database: Database, admin_engine: sa.Engine, cleanup: list[PendingEvent], count: int
) -> None:
    aggregates = [f"note-{uuid.uuid4().hex[:8]}" for _ in range(5)] + ["a\tb", "c\\d"]
    events = _events(count, aggregates)
    cleanup.extend(events)
    _write(database, events)
    rows = _rows(admin_engine, events)
    # ids follow the emit order: the relay publishes each aggregate's events in that order
    assert [row.event_id for row in rows] == [event.envelope.event_id for event in events]
    assert len({row.event_id for row in rows}) == count
    for row, event in zip(rows, events, strict=True):
        envelope = event.envelope
        assert (row.event_type, row.topic, row.aggregate_id) == (
            "note.written",
            "note-events",
            envelope.aggregate_id,
        )
        assert row.bucket == bucket_of(envelope.aggregate_id)
        assert row.envelope == envelope.model_dump(mode="json")
        assert row.envelope["payload"]["text"] in {
            f"{i}: {AWKWARD[i % len(AWKWARD)]}" for i in range(count)
        }


def test_both_paths_write_the_same_document_for_the_same_event(
    database: Database, admin_engine: sa.Engine, cleanup: list[PendingEvent]
) -> None:
    (event,) = _events(1, ["same"])
    copied = PendingEvent(event.topic, event.envelope.model_copy(update={"event_id": uuid.uuid4()}))
    filler = _events(COPY_FROM, ["filler"])
    cleanup.extend([event, copied, *filler])
    _write(database, [event])  # one INSERT
    _write(database, [copied, *filler])  # one COPY
    (inserted,) = _rows(admin_engine, [event])
    (streamed,) = _rows(admin_engine, [copied])
    assert inserted.envelope["event_id"] == str(event.envelope.event_id)
    assert streamed.envelope["event_id"] == str(copied.envelope.event_id)
    assert {**inserted.envelope, "event_id": None} == {**streamed.envelope, "event_id": None}


def test_a_copy_with_a_duplicate_event_id_fails_as_a_whole_and_writes_nothing(
    database: Database, admin_engine: sa.Engine, cleanup: list[PendingEvent]
) -> None:
    events = _events(COPY_FROM * 2, ["dup-" + uuid.uuid4().hex[:8]])
    cleanup.extend(events)
    with pytest.raises(IntegrityError) as raised, database.unit_of_work() as uow:
        for event in [*events, events[3]]:
            uow.emit(event)
        uow.commit()
    assert getattr(raised.value.orig, "pgcode", None) == "23505"  # unique_violation
    assert _rows(admin_engine, events) == []
    # the connection is usable again and the same events go in once
    _write(database, events)
    assert [row.event_id for row in _rows(admin_engine, events)] == [
        event.envelope.event_id for event in events
    ]


def test_matching_envelopes_are_compressed_with_lz4_where_the_server_has_it(
    database: Database, admin_engine: sa.Engine, cleanup: list[PendingEvent]
) -> None:
    # large enough to be compressed when stored (over 2 kB), and compressible
    events = [
        PendingEvent.of(
            NOTE_WRITTEN,
            producer="matching_service",
            aggregate_id=f"lz4-{i}",
            payload={"text": "answer link " * 400, "number": i},
        )
        for i in range(COPY_FROM)
    ]
    cleanup.extend(events)
    _write(database, events)
    with admin_engine.connect() as connection:
        has_lz4 = connection.execute(
            sa.text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                "WHERE name = 'default_toast_compression'"
            )
        ).scalar_one()
        methods = set(
            connection.execute(
                sa.text(
                    "SELECT pg_column_compression(envelope) FROM matching_service.outbox "
                    "WHERE event_id = ANY(:ids)"
                ),
                {"ids": [event.envelope.event_id for event in events]},
            ).scalars()
        )
    assert methods == ({"lz4"} if has_lz4 else {"pglz"})
