"""Event pipeline rules that need no server: parsing limits, failure classes, reasons."""

from __future__ import annotations

import json
import uuid

import psycopg2
import pytest
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError, InternalError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.consumer import is_transient, safe_reason
from shared.events import (
    MAX_PAYLOAD_DEPTH,
    MAX_VERSION_JUMP,
    Envelope,
    InvalidEvent,
    describe,
    implausible_version,
    nesting_depth,
)
from shared.outbox import is_record_fault
from shared.topics import TOPIC_OWNERS, owner_of


def _envelope(payload: object) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "thing.created",
            "schema_version": 1,
            "occurred_at": "2026-11-29T10:00:00Z",
            "producer": "patient_service",
            "aggregate_id": "1",
            "payload": payload,
        }
    ).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "recursion limit"),
        (b"\xff\xfe\xfd", "Invalid JSON"),
        (None, "null message"),
        (b"", "Invalid JSON"),
        (b"[1]", "should be an object"),
        (b"x" * 2_000_000, "exceeds the limit"),
        (_envelope([1]), "payload"),
    ],
    ids=["deep", "not-utf8", "null", "empty", "array", "huge", "payload-list"],
)
def test_any_bytes_give_invalid_event_and_nothing_else(raw: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        Envelope.from_bytes(raw)


def test_payload_nested_deeper_than_the_bound_is_refused_and_the_bound_itself_accepted() -> None:
    def nested(depth: int) -> object:
        value: object = 1
        for _ in range(depth - 1):
            value = {"a": value}
        return {"a": value}

    assert nesting_depth(nested(MAX_PAYLOAD_DEPTH)) == MAX_PAYLOAD_DEPTH
    assert Envelope.from_bytes(_envelope(nested(MAX_PAYLOAD_DEPTH))).aggregate_id == "1"
    with pytest.raises(InvalidEvent, match="nested"):
        Envelope.from_bytes(_envelope(nested(MAX_PAYLOAD_DEPTH + 1)))


def test_invalid_event_messages_never_quote_the_values() -> None:
    secret = "Erika Mustermann F32.1"
    raw = json.loads(_envelope({}))
    raw["schema_version"] = secret
    with pytest.raises(InvalidEvent) as caught:
        Envelope.from_bytes(json.dumps(raw).encode())
    assert "schema_version" in str(caught.value)
    assert secret not in str(caught.value)


def test_versions_far_ahead_of_the_held_one_are_implausible() -> None:
    assert not implausible_version(None, 1)
    assert not implausible_version(5, 5 + MAX_VERSION_JUMP)
    assert implausible_version(5, 6 + MAX_VERSION_JUMP)
    assert implausible_version(None, 2_147_483_647)


def _pg_error(pgcode: str) -> psycopg2.Error:
    class Coded(psycopg2.Error):
        pass

    error = Coded("boom")
    # psycopg2 sets pgcode from the server; a subclass property stands in for it here
    type(error).pgcode = property(lambda _self: pgcode)  # type: ignore[assignment]
    return error


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, Exception("connection refused")),
        InternalError("INSERT", {}, _pg_error("25006")),  # read-only after a failover
        InternalError("INSERT", {}, _pg_error("57P01")),  # admin shutdown
        InternalError("INSERT", {}, _pg_error("08006")),  # connection failure
        PoolTimeout("QueuePool limit reached"),
    ],
    ids=["refused", "read-only", "admin-shutdown", "connection", "pool-timeout"],
)
def test_database_unavailability_of_every_kind_is_transient(error: Exception) -> None:
    assert is_transient(error)
    wrapped = RuntimeError("handler failed")
    wrapped.__cause__ = error
    assert is_transient(wrapped)  # also when a handler wrapped it


def test_a_violated_constraint_is_the_message_s_fault() -> None:
    assert not is_transient(IntegrityError("INSERT", {}, _pg_error("23505")))
    assert not is_transient(ValueError("bad"))


def test_reasons_name_the_failure_but_not_foreign_messages() -> None:
    class Model(BaseModel):
        n: int

    with pytest.raises(ValidationError) as caught:
        Model.model_validate({"n": "Erika"})
    assert safe_reason(caught.value) == "ValidationError"
    assert safe_reason(RuntimeError("Erika Mustermann")) == "RuntimeError"
    assert "Erika" not in safe_reason(IntegrityError("INSERT", {"x": "Erika"}, _pg_error("23505")))
    assert safe_reason(InvalidEvent("payload nested 17 deep")).endswith("payload nested 17 deep")


def test_only_the_record_s_own_faults_count_towards_parking_it() -> None:
    assert is_record_fault(MessageSizeTooLargeError())
    assert not is_record_fault(KafkaTimeoutError())
    assert not is_record_fault(KafkaConnectionError())


def test_every_topic_has_one_owner_and_unknown_topics_are_named() -> None:
    assert owner_of("patient-events") == "patient_service"
    assert set(TOPIC_OWNERS.values()) <= {
        "patient_service",
        "therapist_service",
        "matching_service",
        "communication_service",
        "geocoding_service",
    }
    with pytest.raises(KeyError, match="made-up-events"):
        owner_of("made-up-events")


def test_keys_taken_from_the_input_are_not_quoted_either() -> None:
    class Model(BaseModel):
        availability: dict[str, list[str]]

    with pytest.raises(ValidationError) as caught:
        Model.model_validate({"availability": {"Erika Mustermann 0171-1234567": [1]}})
    reason = describe(caught.value)
    assert "Erika" not in reason and reason.startswith("availability.<key>.0:")


def test_a_deterministic_database_error_is_not_transient_whatever_its_class() -> None:
    # psycopg2 files program limits and the like under OperationalError as well
    assert not is_transient(OperationalError("INSERT", {}, _pg_error("54000")))
    assert is_transient(OperationalError("INSERT", {}, _pg_error("53300")))  # too many clients


def test_a_cause_chain_with_a_cycle_ends() -> None:
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__cause__, second.__cause__ = second, first
    assert not is_transient(first)
