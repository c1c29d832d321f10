"""Property-based API fuzzing: schemathesis against each service's own `/openapi.json`, and
Hypothesis against matching's answer links (public pages the document does not describe).

The OpenAPI document is built from the pydantic models that validate requests, so requests
generated from it - valid ones and, in negative mode, ones that break it - probe the whole
path: auth, validation, use case, rendering. Whatever comes in, the answer is never a 5xx,
every 4xx has the platform's error shape, and statuses and bodies match the document. Each
test records the requests it sent and the 5xx it saw in the reliability tally.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, Response

from communication_service.app import create_app as create_communication_app
from communication_service.settings import CommunicationSettings
from geocoding_service.app import create_app as create_geocoding_app
from geocoding_service.settings import GeocodingSettings
from matching_service.app import create_app as create_matching_app
from matching_service.placement.links import InvalidLink, verify_link
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.settings import PatientSettings
from shared.db import driver_url
from shared.settings import ServiceSettings
from shared.web import Operation
from tests.api_support import (
    CONVERTER,
    api_database,
    assert_error_shape,
    communication_app,
    geocoding_app,
    made_up_path,
    matching_app,
    patient_app,
    route_table,
    service_apps,
    therapist_app,
)
from tests.conftest import ADMIN_TOKEN, ANSWER_LINK_SECRET, SERVICE_TOKEN
from tests.link_support import link_token, link_url, recorded_state
from tests.matching_support import insert_inquiry
from tests.reliability.conftest import Tally
from therapist_service.app import create_app as create_therapist_app
from therapist_service.settings import TherapistSettings

__all__ = [  # fixtures
    "api_database",
    "communication_app",
    "geocoding_app",
    "matching_app",
    "patient_app",
    "service_apps",
    "therapist_app",
]

pytestmark = pytest.mark.integration

# Reproducible in CI: a fixed seed, derandomized Hypothesis, no example database on disk.
FUZZ_CONFIG: dict[str, Any] = {
    "seed": 20260501,
    "generation": {
        "mode": "all",  # valid requests and requests that break the schema
        "max-examples": 30,
        "deterministic": True,
        "database": "none",
    },
    "auth": {"openapi": {"bearerAuth": {"bearer": ADMIN_TOKEN}}},
    # every built-in check runs (not_a_server_error, status_code_conformance,
    # response_schema_conformance, negative_data_rejection, ignored_auth, ...) but one:
    "checks": {
        # a valid request may still break a rule JSON Schema cannot express (adult birth
        # date, time ranges, ...): its 422 is correct, so acceptance is not asserted
        "positive_data_acceptance": {"enabled": False},
    },
}


def _served_schema(
    create_app: Callable[[Any], Flask], settings_cls: type[ServiceSettings]
) -> schemathesis.BaseSchema:
    """The OpenAPI document the service serves, read at collection time.

    Serving `/openapi.json` touches neither database nor broker, so an app with unused
    connection settings suffices; the requests go to a connected app (`case.call(app=...)`).
    (schemathesis 4.32's lazy `pytest.from_fixture` loader reads `Node._nodeid`, which
    pytest 9.2 no longer has.)
    """
    secrets = {"service_token": SERVICE_TOKEN, "answer_link_secret": ANSWER_LINK_SECRET}
    required = {name: value for name, value in secrets.items() if name in settings_cls.model_fields}
    unused = settings_cls(
        database_url="postgresql://unused@127.0.0.1:1/unused", log_json=False, **required
    )
    return schemathesis.openapi.from_wsgi(
        "/openapi.json", create_app(unused), config=schemathesis.Config.from_dict(FUZZ_CONFIG)
    )


PATIENT_API = _served_schema(create_patient_app, PatientSettings)
MATCHING_API = _served_schema(create_matching_app, MatchingSettings)
THERAPIST_API = _served_schema(create_therapist_app, TherapistSettings)
GEOCODING_API = _served_schema(create_geocoding_app, GeocodingSettings)
COMMUNICATION_API = _served_schema(create_communication_app, CommunicationSettings)
SCHEMAS = {
    "patient_service": PATIENT_API,
    "therapist_service": THERAPIST_API,
    "matching_service": MATCHING_API,
    "communication_service": COMMUNICATION_API,
    "geocoding_service": GEOCODING_API,
}


# what the document leaves out: the platform's public endpoints (each checked in
# test_access_matrix.py) and the answer links, fuzzed below
UNDOCUMENTED = {
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/init.js",
    "/docs/static/<path:filename>",
}
FUZZED_PAGES = {"matching_service": {"/answers/<path:token>"}}


def test_every_service_and_route_is_fuzzed(service_apps: dict[str, Flask]) -> None:
    """Each service's app serves the document its operations are generated from, and every
    route it has is in that document, or is a public endpoint, or a page fuzzed here."""
    assert set(service_apps) == set(SCHEMAS)
    for service, app in service_apps.items():
        served = app.test_client().get("/openapi.json").json
        assert served == SCHEMAS[service].raw_schema, service
        documented = {re.sub(r"\{(\w+)\}", r"\1", path) for path in served["paths"]}
        routes = {rule.rule for rule in app.url_map.iter_rules()}
        assert served["paths"], service
        left = {
            rule
            for rule in routes - UNDOCUMENTED - FUZZED_PAGES.get(service, set())
            if re.sub(r"<(?:\w+:)?(\w+)>", r"\1", rule) not in documented
        }
        assert left == set(), f"{service}: routes neither documented nor fuzzed"
        assert FUZZED_PAGES.get(service, set()) <= routes, service


def error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx body is `{"error": {"code": str, "message": str, "details": ...}}`."""
    if not 400 <= response.status_code < 500:
        return None
    assert_error_shape(response.json())
    return True


def _fuzzed(case: Case, app: Flask, tally: Tally) -> None:
    """Send one generated request and run every check (those that send more requests, such
    as `ignored_auth`, send them to `app` too); the tally counts it, and a 5xx."""

    def counted(ctx: CheckContext, response: Response, case: Case) -> bool | None:
        tally.checked += 1
        tally.server_errors += response.status_code >= 500
        return None

    response = case.call_and_validate(app=app, additional_checks=[counted, error_shape])
    assert response.status_code < 500


# one app serves every generated request of an operation (it holds no per-request state)
shared_app = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@PATIENT_API.parametrize()
@shared_app
def test_patient_api_never_fails_with_5xx_and_keeps_the_error_shape(
    case: Case, patient_app: Flask, tally: Tally
) -> None:
    _fuzzed(case, patient_app, tally)


@MATCHING_API.parametrize()
@shared_app
def test_matching_api_never_fails_with_5xx_and_keeps_the_error_shape(
    case: Case, matching_app: Flask, tally: Tally
) -> None:
    _fuzzed(case, matching_app, tally)


@THERAPIST_API.parametrize()
@shared_app
def test_therapist_api_never_fails_with_5xx_and_keeps_the_error_shape(
    case: Case, therapist_app: Flask, tally: Tally
) -> None:
    _fuzzed(case, therapist_app, tally)


@GEOCODING_API.parametrize()
@shared_app
def test_geocoding_api_never_fails_with_5xx_and_keeps_the_error_shape(
    case: Case, geocoding_app: Flask, tally: Tally
) -> None:
    _fuzzed(case, geocoding_app, tally)


@COMMUNICATION_API.parametrize()
@shared_app
def test_communication_api_never_fails_with_5xx_and_keeps_the_error_shape(
    case: Case, communication_app: Flask, tally: Tally
) -> None:
    _fuzzed(case, communication_app, tally)


@pytest.fixture
def answer_link(matching_app: Flask, api_database: str) -> Iterator[tuple[str, sa.Engine, int]]:
    """A genuine link of a sent inquiry (therapist 1, patient 4's search), the superuser
    engine to read matching's schema, and the inquiry's id."""
    engine = sa.create_engine(driver_url(api_database))
    with engine.connect() as connection:
        search_id = connection.execute(
            sa.text(  # the fuzzed operations before may have ended it and started others
                "SELECT max(id) FROM matching_service.patient_searches WHERE patient_id = 4"
            )
        ).scalar_one()
    inquiry_id = insert_inquiry(engine, 1, [search_id], sent_at=datetime.now(UTC))
    yield link_token(inquiry_id, search_id), engine, inquiry_id
    engine.dispose()


def _mutations(valid: str) -> st.SearchStrategy[str]:
    """Tokens near a genuine one - a character changed, inserted or cut off - and any text."""
    chars = st.characters(codec="utf-8")
    index = st.integers(0, len(valid))
    return st.one_of(
        st.tuples(index, chars).map(lambda p: valid[: p[0]] + p[1] + valid[p[0] + 1 :]),
        st.tuples(index, st.text(chars, min_size=1, max_size=12)).map(
            lambda p: valid[: p[0]] + p[1] + valid[p[0] :]
        ),
        index.map(lambda i: valid[:i]),
        st.text(chars, max_size=200),
    )


def test_answer_links_never_fail_with_5xx_and_record_nothing_unless_genuine(
    matching_app: Flask, answer_link: tuple[str, sa.Engine, int], tally: Tally
) -> None:
    valid, engine, inquiry_id = answer_link
    client = matching_app.test_client()
    before = recorded_state(engine, inquiry_id)
    genuine = verify_link(ANSWER_LINK_SECRET, valid, datetime.now(UTC))

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(token=_mutations(valid))
    def probe(token: str) -> None:
        url = link_url(token)
        try:
            claim = verify_link(ANSWER_LINK_SECRET, token, datetime.now(UTC))
        except InvalidLink:
            claim = None
        # the genuine claim in another spelling (base64's unused bits, characters the decoder
        # skips) is the genuine link: only shown, so that nothing is recorded
        methods = (client.get,) if claim is not None else (client.get, client.post)
        for method in methods:
            response = method(url)
            tally.checked += 1
            tally.server_errors += response.status_code >= 500
            if claim is not None:
                assert (claim.inquiry_id, claim.search_id) == (inquiry_id, genuine.search_id)
                # 404 or a redirect when the route cannot hold it (a line break, "//")
                assert response.status_code in (200, 308, 404), token
            elif "//" in url:  # werkzeug merges slashes: a redirect, or no such page
                assert response.status_code == 308 or 400 <= response.status_code < 500, token
            else:
                assert 400 <= response.status_code < 500, (token, response.status_code)

    probe()
    assert recorded_state(engine, inquiry_id) == before


# What schemathesis does not send: bodies that are no JSON object the way a parser might
# choke on, query values at the edges of number parsing, path values no route expects.
HOSTILE_BODIES = {
    "not UTF-8": b'\xff\xfe{"a": 1}',
    "UTF-16": '{"a": 1}'.encode("utf-16"),
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "objects nested 10,000 deep": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "a 5,000-digit number": b'{"page": ' + b"9" * 5000 + b"}",
    "NaN and Infinity": b'{"a": NaN, "b": Infinity}',
    "a list": b"[]",
    "null": b"null",
    "a string": b'"text"',
    "duplicate keys": b'{"a": 1, "a": 2}',
    "a lone surrogate": b'{"a": "\\ud800", "\\udfff": 1}',
    "NUL": b'{"a": "\\u0000"}',
    "truncated": b'{"a": [1, 2',
}
HOSTILE_QUERIES = (
    "page=1e309",
    "page=NaN",
    "page=-0",
    "per_page=99999999999999999999999",
    "page=" + "9" * 5000,
    "page=%00",
    "page=1&page=x",
    "%FF=%FE",
    "q=%ED%A0%80",  # an encoded surrogate
    "from=" + "%C3%A4" * 2000,
)
HOSTILE_SEGMENTS = ("0", "-1", "2147483648", "1e3", "%00", "%ED%A0%80", "x" * 3000, "%2F..%2F")


def _hostile_requests(rule: str, method: str, op: Operation) -> Iterator[tuple[str, Any]]:
    """(path, body or None) of each hostile request for an operation."""
    path = made_up_path(rule)
    if op.body is not None:
        for raw in HOSTILE_BODIES.values():
            yield path, raw
    for query in HOSTILE_QUERIES:
        yield f"{path}?{query}", None
    if CONVERTER.search(rule):
        for segment in HOSTILE_SEGMENTS:
            yield CONVERTER.sub(segment, rule), None


def test_hostile_bodies_queries_and_paths_never_fail_with_5xx(
    service_apps: dict[str, Flask], tally: Tally
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    failed: list[str] = []
    for service, app in service_apps.items():
        client = app.test_client()
        for rule, method, op in route_table(app):
            if op is None:
                continue
            for path, body in _hostile_requests(rule.rule, method, op):
                response = client.open(path, method=method, data=body, headers=headers)
                tally.checked += 1
                tally.server_errors += response.status_code >= 500
                where = f"{service} {method} {path[:80]} {(body or b'')[:40]!r}"
                if response.status_code >= 500:
                    failed.append(f"{where}: {response.status_code}")
                elif response.status_code >= 400:
                    try:
                        assert_error_shape(response.get_json(silent=True))
                    except AssertionError:
                        failed.append(f"{where}: {response.status_code} not in the error shape")
    assert failed == []
