"""What communication_service's tests run against: a real SMTP server (aiosmtpd) that
records every message and can refuse the next ones, and the real therapist_service and
patient_service apps served over HTTP in threads (contact data is read over REST)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from flask import Flask
from werkzeug.serving import make_server

from communication_service.handlers import handlers_for
from communication_service.settings import CommunicationSettings
from shared.db import Database
from shared.devstack import free_port
from shared.events import Envelope, EventType
from tests.conftest import SERVICE_TOKEN as SERVICE_TOKEN
from tests.integration.test_therapist_api import therapist_body


@dataclass
class SmtpSink:
    """aiosmtpd handler: keeps accepted messages; `refuse_next` answers the next recipients
    with the given SMTP replies ('451 ...' temporary, '550 ...' permanent)."""

    messages: list[EmailMessage] = field(default_factory=list)
    refusals: deque[str] = field(default_factory=deque)
    # seconds each DATA takes (makes overlapping runs overlap)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse_next(self, *replies: str) -> None:
        """Refuse the next recipients with these replies, in order."""
        self.refusals.extend(replies)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refusals:
            return self.refusals.popleft()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        """The messages sent to `address`."""
        with self.lock:
            return [message for message in self.messages if message["To"] == address]


@contextmanager
def smtp_server() -> Iterator[tuple[SmtpSink, int]]:
    """A real SMTP server on 127.0.0.1 for the duration."""
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@contextmanager
def served(app: Flask) -> Iterator[str]:
    """`app` served over real HTTP on 127.0.0.1 in a thread; its base URL."""
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def new_id() -> int:
    """An id no other test uses."""
    return 1_000_000 + uuid.uuid4().int % 1_000_000_000


def monday(weeks: int = 1) -> datetime:
    """Monday 08:00 UTC, `weeks` weeks after this week's (always in the future: emails are
    queued now, and a send run as of an earlier moment finds them not due yet)."""
    today = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    return today - timedelta(days=today.weekday()) + timedelta(weeks=weeks)


def patient_summary(search_id: int, position: int, **changes: Any) -> dict[str, Any]:
    """One anonymised patient of inquiry.created, with its answer links."""
    summary: dict[str, Any] = {
        "search_id": search_id,
        "patient_id": new_id(),
        "reference": f"PS-{search_id}",
        "position": position,
        "age": 34,
        "gender": "female",
        "diagnosis": "F32.1",
        "symptoms": ["low_mood", "sleep_problems"],
        "insurer_type": "statutory",
        "availability": {"mon": ["08:00-12:00"], "thu": ["14:00-18:00"]},
        "distance_km": 3.25,
        "two_year_rule_flag": position == 1,
        "answer_links": {
            outcome: f"https://match.example/answers/{search_id}-{outcome}"
            for outcome in ("accepted", "rejected_capacity", "rejected_unsuitable")
        },
    }
    summary.update(changes)
    return summary


def inquiry_created(
    therapist_id: int, practice_key: str, *patients: dict[str, Any], inquiry_id: int | None = None
) -> dict[str, Any]:
    """An inquiry.created payload as matching_service builds it."""
    now = datetime.now(UTC)
    return {
        "inquiry_id": inquiry_id or new_id(),
        "therapist_id": therapist_id,
        "practice_key": practice_key,
        "origin": "bundle_run",
        "bundle_run_id": None,
        "created_at": now.isoformat(),
        "answer_links_valid_until": (now + timedelta(days=21)).isoformat(),
        "patients": list(patients) or [patient_summary(new_id(), 1)],
    }


def new_therapist(client: Any, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """A therapist created through therapist_service's API."""
    response = client.post("/api/therapists", json=therapist_body(**overrides), headers=headers)
    assert response.status_code == 201, response.json
    return dict(response.json)


def feed(
    database: Database,
    settings: CommunicationSettings,
    event: EventType,
    payload: dict[str, Any],
    producer: str = "matching_service",
) -> Envelope:
    """Build an event as its producer does and apply communication's handler to it."""
    envelope = event.build(producer=producer, aggregate_id="1", payload=payload)
    with database.unit_of_work() as uow:
        handlers_for(settings)[envelope.event_type](uow, envelope)
        uow.commit()
    return envelope


def table_rows(engine: sa.Engine, table: str, **where: Any) -> list[dict[str, Any]]:
    """The rows of a communication_service table matching `where`, oldest first."""
    condition = " AND ".join(f"{name} = :{name}" for name in where) or "true"
    with engine.connect() as connection:
        result = connection.execute(
            sa.text(f"SELECT * FROM communication_service.{table} WHERE {condition} ORDER BY id"),
            where,
        )
        return [dict(row._mapping) for row in result]


def outbox_events(engine: sa.Engine, event_type: str, aggregate_id: int) -> list[dict[str, Any]]:
    """The envelopes of communication's outbox of one type and aggregate."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT envelope FROM communication_service.outbox "
                    "WHERE event_type = :type AND aggregate_id = :id ORDER BY id"
                ),
                {"type": event_type, "id": str(aggregate_id)},
            ).scalars()
        )
