"""Event envelope and payload contracts (ARCHITECTURE.md §4).

Producers validate the payload with their full schema before it reaches the outbox;
consumers validate what they read with their own (tolerant) view of the same payload.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.db import utcnow


class Envelope(BaseModel):
    """The JSON wrapper of every event on every topic."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID
    event_type: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$")
    schema_version: int = Field(ge=1)
    occurred_at: datetime
    producer: str
    aggregate_id: str = Field(min_length=1)
    correlation_id: str | None = None
    payload: dict[str, Any]

    def to_bytes(self) -> bytes:
        """Serialised form used on the wire."""
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        """Parse a message value; raises `InvalidEvent` when it is not an envelope."""
        try:
            return cls.model_validate(json.loads(raw))
        except (TypeError, ValueError, ValidationError) as exc:  # TypeError: null (tombstone)
            raise InvalidEvent(f"not a valid event envelope: {exc}") from exc


class InvalidEvent(ValueError):
    """An event that does not match its envelope or payload schema."""


@dataclass(frozen=True)
class EventType:
    """One event type in the catalogue: name, current version, payload schema and topic."""

    name: str
    version: int
    payload: type[BaseModel]
    topic: str

    def build(
        self,
        *,
        producer: str,
        aggregate_id: object,
        payload: BaseModel | dict[str, Any],
        correlation_id: str | None = None,
    ) -> Envelope:
        """A new envelope; the payload is validated against this type's schema."""
        try:
            data = payload if isinstance(payload, dict) else payload.model_dump(mode="json")
            checked = self.payload.model_validate(data)
        except ValidationError as exc:
            raise InvalidEvent(f"{self.name} payload invalid: {exc}") from exc
        return Envelope(
            event_id=uuid.uuid4(),
            event_type=self.name,
            schema_version=self.version,
            occurred_at=utcnow(),
            producer=producer,
            aggregate_id=str(aggregate_id),
            correlation_id=correlation_id,
            payload=checked.model_dump(mode="json"),
        )

    def parse_payload(self, envelope: Envelope) -> BaseModel:
        """The consumed payload validated against this (consumer's) schema."""
        try:
            return self.payload.model_validate(envelope.payload)
        except ValidationError as exc:
            raise InvalidEvent(f"{envelope.event_type} payload invalid: {exc}") from exc
