"""Shared mechanisms that need no server: envelopes, roles, settings, relay bookkeeping."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from shared.auth import Role, hash_token, issue_token
from shared.events import Envelope, EventType, InvalidEvent
from shared.outbox import _acknowledged_prefix_per_aggregate, bucket_of
from shared.settings import ServiceSettings, load_settings


class _Payload(BaseModel):
    thing_id: int
    name: str


THING_CREATED = EventType("thing.created", 1, _Payload, "thing-events")


def test_event_build_validates_payload_and_fills_envelope() -> None:
    envelope = THING_CREATED.build(
        producer="test", aggregate_id=7, payload={"thing_id": 7, "name": "x"}
    )
    assert envelope.event_type == "thing.created"
    assert envelope.schema_version == 1
    assert envelope.aggregate_id == "7"
    assert envelope.occurred_at.tzinfo is not None
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope


def test_event_with_invalid_payload_is_refused_on_produce() -> None:
    with pytest.raises(InvalidEvent, match=r"thing\.created payload invalid"):
        THING_CREATED.build(producer="test", aggregate_id=1, payload={"thing_id": "x"})


def test_consumed_payload_is_validated() -> None:
    envelope = THING_CREATED.build(
        producer="t", aggregate_id=1, payload={"thing_id": 1, "name": "a"}
    )
    broken = envelope.model_copy(update={"payload": {"thing_id": 1}})
    with pytest.raises(InvalidEvent):
        THING_CREATED.parse_payload(broken)


def test_garbage_is_not_an_envelope() -> None:
    with pytest.raises(InvalidEvent):
        Envelope.from_bytes(b"\x00\x01")


def test_admin_may_do_what_staff_may_but_not_the_reverse() -> None:
    assert Role.ADMIN.allows(Role.STAFF)
    assert Role.STAFF.allows(Role.STAFF)
    assert not Role.STAFF.allows(Role.ADMIN)


def test_an_endpoint_for_the_service_token_admits_admins_and_the_service_never_staff() -> None:
    assert Role.SERVICE.allows(Role.SERVICE, "GET")
    assert not Role.SERVICE.allows(Role.SERVICE, "POST")
    assert Role.ADMIN.allows(Role.SERVICE, "GET")
    assert not Role.STAFF.allows(Role.SERVICE, "GET")
    assert not Role.SERVICE.allows(Role.ADMIN, "GET")


def test_audit_entries_outside_requests_name_the_process_or_the_block() -> None:
    from shared import audit

    assert audit.actor() == ("system", "system", None)
    with audit.acting_as("cli"):
        assert audit.actor() == ("cli", "system", None)
    audit.set_process_actor("service:test")
    try:
        assert audit.actor() == ("service:test", "system", None)
    finally:
        audit.set_process_actor("system")


def test_issued_tokens_are_random_and_stored_only_as_hash() -> None:
    first, second = issue_token("a", Role.STAFF), issue_token("a", Role.STAFF)
    assert first.token != second.token
    assert len(hash_token(first.token)) == 64
    assert first.token not in hash_token(first.token)


def test_aggregate_always_lands_in_the_same_bucket() -> None:
    assert bucket_of("42") == bucket_of("42")
    assert len({bucket_of(str(n)) for n in range(1000)}) == 16


def test_relay_marks_published_only_up_to_each_aggregates_first_failure() -> None:
    rows = [SimpleNamespace(id=i, aggregate_id=agg) for i, agg in enumerate("aabab", start=1)]
    outcomes: list[Exception | None] = [None, None, RuntimeError(), None, None]
    # b fails at row 3: b's later row 5 must wait; a's rows all go through
    assert _acknowledged_prefix_per_aggregate(rows, outcomes) == [1, 2, 4]


def test_missing_required_setting_exits_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(ServiceSettings)
    assert exit_info.value.code == 2
    assert "DATABASE_URL" in capsys.readouterr().err


def test_service_specific_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    class DemoSettings(ServiceSettings):
        service_name: str = "demo_service"

    monkeypatch.setenv("DATABASE_URL", "postgresql://shared@/db")
    monkeypatch.setenv("DEMO_SERVICE_DATABASE_URL", "postgresql://own@/db")
    assert load_settings(DemoSettings).database_url == "postgresql://own@/db"


def test_json_log_lines_carry_service_and_context_ids() -> None:
    import json
    import logging

    from shared.logs import JsonFormatter, event_id_var, request_id_var

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    request_token, event_token = request_id_var.set("req-1"), event_id_var.set("evt-1")
    try:
        line = json.loads(JsonFormatter("patient_service").format(record))
    finally:
        request_id_var.reset(request_token)
        event_id_var.reset(event_token)
    assert line["service"] == "patient_service"
    assert line["message"] == "hello world"
    assert (line["request_id"], line["event_id"]) == ("req-1", "evt-1")


def test_an_unavailable_database_is_a_503_to_repeat_and_a_bug_stays_a_500() -> None:
    import psycopg2
    from flask import Flask
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from shared.web import DATABASE_RETRY_AFTER_S, error_response

    class Shutdown(psycopg2.OperationalError):
        pgcode = "57P01"  # admin_shutdown: the server is restarting

    class UndefinedColumn(psycopg2.ProgrammingError):
        pgcode = "42703"

    with Flask(__name__).app_context():
        restarting = error_response(OperationalError("SELECT 1", {}, Shutdown("terminating")))
        bug = error_response(ProgrammingError("SELECT x", {}, UndefinedColumn("no column x")))
    assert restarting.status_code == 503
    assert restarting.headers["Retry-After"] == str(DATABASE_RETRY_AFTER_S)
    assert restarting.get_json()["error"]["code"] == "database_unavailable"
    assert "terminating" not in restarting.get_data(as_text=True)
    assert bug.status_code == 500 and "Retry-After" not in bug.headers
