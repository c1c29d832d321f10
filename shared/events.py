"""Event envelope and payload contracts (docs/architecture.md, docs/events.md).

Producers validate the payload with their full schema before it reaches the outbox;
consumers validate what they read with their own (tolerant) view of the same payload.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.db import utcnow

# A consumed value larger than this is refused before it is parsed (EVENT_MAX_BYTES).
EVENT_MAX_BYTES = 1024 * 1024
# Payloads are flat records with a few lists and maps; anything deeper is not an event.
MAX_PAYLOAD_DEPTH = 16
# Versions count an aggregate's changes one by one; a jump this far ahead of what a
# consumer holds is not a real change (it would freeze the record against later events).
MAX_VERSION_JUMP = 1000


class Envelope(BaseModel):
    """The JSON wrapper of every event on every topic."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID
    event_type: str = Field(max_length=100, pattern=r"^[a-z_]+\.[a-z_]+$")
    schema_version: int = Field(ge=1, le=1000)
    occurred_at: datetime
    producer: str = Field(max_length=64, pattern=r"^[a-z_]+$")
    aggregate_id: str = Field(min_length=1, max_length=100)
    correlation_id: str | None = Field(default=None, max_length=128)
    payload: dict[str, Any]

    def to_bytes(self) -> bytes:
        """Serialised form used on the wire."""
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes | None, max_bytes: int = EVENT_MAX_BYTES) -> Envelope:
        """Parse a message value; raises `InvalidEvent` when it is not an envelope.

        Whatever the bytes are (null, huge, deeply nested, not UTF-8), the only exception
        that leaves is `InvalidEvent`, whose message never quotes the value.
        """
        if raw is None:
            raise InvalidEvent("no value (null message)")
        if len(raw) > max_bytes:
            raise InvalidEvent(f"value of {len(raw)} bytes exceeds the limit of {max_bytes}")
        try:
            # pydantic's parser bounds recursion itself (the stdlib's raises RecursionError)
            envelope = cls.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidEvent(f"not a valid event envelope: {describe(exc)}") from None
        except Exception as exc:  # anything else the bytes provoke: still the message's fault
            raise InvalidEvent(f"not a valid event envelope: {exc.__class__.__name__}") from None
        # every list or map opens with a bracket: with few brackets in all (the common case,
        # brackets in strings only add to the count) the payload cannot nest too deep
        if raw.count(b"{") + raw.count(b"[") <= MAX_PAYLOAD_DEPTH + 1:
            return envelope
        depth = nesting_depth(envelope.payload)
        if depth > MAX_PAYLOAD_DEPTH:
            raise InvalidEvent(f"payload nested {depth} deep, more than {MAX_PAYLOAD_DEPTH}")
        return envelope


class InvalidEvent(ValueError):
    """An event that does not match its envelope or payload schema (never quotes values)."""


def describe(exc: ValidationError) -> str:
    """Which fields failed and why, without the input values (they may be personal data).

    A location part that does not look like a field name is a key taken from the input
    (of a dict-valued field) and is shown as `<key>`.
    """
    return "; ".join(
        f"{'.'.join(_location_part(part) for part in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    )


def _location_part(part: str | int) -> str:
    if isinstance(part, int) or _FIELD_NAME.fullmatch(part):
        return str(part)
    return "<key>"


_FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")


def nesting_depth(value: Any) -> int:
    """How deeply lists and maps nest in `value` (iterative: no recursion limit to hit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_PAYLOAD_DEPTH:
                return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def implausible_version(held: int | None, incoming: int) -> bool:
    """Whether `incoming` jumps implausibly far ahead of the version a consumer holds."""
    return incoming > (held or 0) + MAX_VERSION_JUMP


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
            raise InvalidEvent(f"{self.name} payload invalid: {describe(exc)}") from exc
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
            raise InvalidEvent(f"{envelope.event_type} payload invalid: {describe(exc)}") from None
