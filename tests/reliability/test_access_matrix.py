"""Who may call what, for every route of every service: generated from each app's route
table, so an endpoint added tomorrow is in the matrix without anyone listing it.

Each `@operation` declares the role it requires (`shared.web.Operation.role`, shown in the
OpenAPI document as its security and "Requires role ..."); the platform's rule for a role
(docs/security.md) decides the expected answer for each caller: no token, an unknown, a
revoked, an empty or an oversized one, an admin token of the other services only, or the
admin token sent as `Basic` get 401; staff, admin and the service token get 403 below the
operation's role, and otherwise anything but 401/403 (made-up ids and empty bodies may well
be 404 or 422) - never a 5xx. Routes that are not operations must be in `PUBLIC`, and are
checked to answer without a token; a route in neither fails the test.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from shared.auth import Role, issue_token
from shared.cli import token_stores
from shared.settings import SERVICES
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
from tests.conftest import ADMIN_TOKEN, SERVICE_TOKEN
from tests.reliability.conftest import Tally

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

READS = frozenset({"GET", "HEAD"})
# no token, or none this service knows (tokens live in each service's schema)
NO_ACCESS = (
    "no token",
    "unknown token",
    "revoked token",
    "other services' token",  # an admin token stored in every schema but this one
    "admin token, other scheme",  # `Basic`, not `Bearer`
    "empty bearer",
    "oversized token",
)
CALLERS = (*NO_ACCESS, "staff", "admin", "service")


def expected_access(caller: str, required: Role, method: str) -> int | None:
    """401 or 403 as the platform's rule has it, or None: allowed (docs/security.md).

    admin may call everything; staff what requires staff; the service token reads (GET)
    what requires staff or service - never writes, never admin operations."""
    if caller in NO_ACCESS:
        return 401
    allowed = {
        "admin": {Role.STAFF, Role.SERVICE, Role.ADMIN},
        "staff": {Role.STAFF},
        "service": {Role.STAFF, Role.SERVICE} if method in READS else set(),
    }[caller]
    if required not in {Role.STAFF, Role.SERVICE, Role.ADMIN}:
        raise AssertionError(f"no access rule for the role {required!r}")
    return None if required in allowed else 403


@dataclass(frozen=True)
class Public:
    """A route without a bearer token, the services that have it, a path to try and the
    statuses it may answer with."""

    methods: frozenset[str]
    path: str
    statuses: frozenset[int]
    services: frozenset[str] = frozenset(SERVICES)


_GET = frozenset({"GET"})
PUBLIC: dict[str, Public] = {
    "/health": Public(_GET, "/health", frozenset({200})),
    # a probe: 503 when the database or the broker does not answer
    "/ready": Public(_GET, "/ready", frozenset({200})),
    # label values are bounded (docs/security.md); no personal data in metrics
    "/metrics": Public(_GET, "/metrics", frozenset({200})),
    "/openapi.json": Public(_GET, "/openapi.json", frozenset({200})),
    "/docs": Public(_GET, "/docs", frozenset({200})),
    "/docs/init.js": Public(_GET, "/docs/init.js", frozenset({200})),
    "/docs/static/<path:filename>": Public(_GET, "/docs/static/swagger-ui.css", frozenset({200})),
    # the signed token in the path is the authority (business-rules.md §8); a made-up one: 400
    "/answers/<path:token>": Public(
        frozenset({"GET", "POST"}),
        "/answers/not-a-token",
        frozenset({400}),
        frozenset({"matching_service"}),
    ),
}


@pytest.fixture
def headers(api_database: str) -> Iterator[dict[str, dict[str, str | None]]]:
    """service -> caller -> the caller's Authorization header: a staff token, a revoked admin
    token, and per service an admin token every other schema knows, stored for this test
    (and revoked after it)."""
    staff = issue_token("matrix-staff", Role.STAFF)
    revoked = issue_token("matrix-revoked", Role.ADMIN)
    elsewhere = {service: issue_token(f"matrix-not-{service}", Role.ADMIN) for service in SERVICES}
    with token_stores(api_database, SERVICES) as stores:
        for service, store in stores:
            store.store(staff)
            store.store(revoked)
            store.revoke(revoked.name)
            for other, token in elsewhere.items():
                if other != service:
                    store.store(token)
    basic = base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()
    yield {
        service: {
            "no token": None,
            "unknown token": f"Bearer {issue_token('never-stored', Role.ADMIN).token}",
            "revoked token": f"Bearer {revoked.token}",
            "other services' token": f"Bearer {elsewhere[service].token}",
            "admin token, other scheme": f"Basic {basic}",
            "empty bearer": "Bearer ",
            "oversized token": "Bearer " + "x" * 8000,
            "staff": f"Bearer {staff.token}",
            "admin": f"Bearer {ADMIN_TOKEN}",
            "service": f"Bearer {SERVICE_TOKEN}",
        }
        for service in SERVICES
    }
    with token_stores(api_database, SERVICES) as stores:
        for _, store in stores:
            for token in (staff, *elsewhere.values()):
                store.revoke(token.name)


def _call(app: Flask, method: str, path: str, authorization: str | None, body: bool) -> Any:
    options: dict[str, Any] = {
        "headers": {"Authorization": authorization} if authorization is not None else {}
    }
    if body:
        options["json"] = {}
    response = app.test_client().open(path, method=method, **options)
    response.get_data()  # read, then closed: a file served (the docs' assets) is let go
    response.close()
    return response


def _documented(spec: dict[str, Any], rule: str, method: str) -> dict[str, Any] | None:
    path = CONVERTER.sub(lambda m: "{" + m.group(2) + "}", rule)
    return spec["paths"].get(path, {}).get(method.lower())


def test_every_route_of_every_service_answers_each_caller_as_its_role_says(
    service_apps: dict[str, Flask], headers: dict[str, dict[str, str | None]], tally: Tally
) -> None:
    wrong: list[str] = []
    unclassified: list[str] = []
    public_seen: set[str] = set()
    for service, app in service_apps.items():
        spec = app.test_client().get("/openapi.json").json
        operations_seen = 0
        for rule, method, op in route_table(app):
            where = f"{service} {method} {rule.rule}"
            if op is None:
                public = PUBLIC.get(rule.rule)
                if public is None or service not in public.services or method not in public.methods:
                    unclassified.append(where)
                    continue
                public_seen.add(rule.rule)
                for caller in ("no token", "unknown token"):
                    response = _call(app, method, public.path, headers[service][caller], body=False)
                    tally.checked += 1
                    tally.server_errors += response.status_code >= 500
                    if response.status_code not in public.statuses:
                        wrong.append(f"{where} [{caller}]: {response.status_code}")
                continue
            documented = _documented(spec, rule.rule, method)
            operations_seen += 1
            if documented is None or documented.get("security") != [{"bearerAuth": []}]:
                wrong.append(f"{where}: not in /openapi.json with its bearer security")
            elif f"`{op.role.value}`" not in documented["description"] and not (
                op.role is Role.SERVICE and "service token" in documented["description"]
            ):
                wrong.append(f"{where}: /openapi.json does not name the role {op.role.value}")
            for caller in CALLERS:
                expected = expected_access(caller, op.role, method)
                response = _call(
                    app,
                    method,
                    made_up_path(rule.rule),
                    headers[service][caller],
                    body=op.body is not None,
                )
                tally.checked += 1
                status = response.status_code
                tally.server_errors += status >= 500
                problem = _problem(response, expected)
                if problem:
                    wrong.append(f"{where} [{caller}, requires {op.role.value}]: {problem}")
        # and the document describes no operation the app does not have
        documented_count = sum(len(methods) for methods in spec["paths"].values())
        if documented_count != operations_seen:
            wrong.append(f"{service}: {documented_count} operations documented, {operations_seen}")
    assert unclassified == [], "routes with no access rule (an operation, or PUBLIC)"
    assert wrong == []
    assert public_seen == set(PUBLIC), "PUBLIC lists routes no service has"


def _problem(response: Any, expected: int | None) -> str | None:
    """What is wrong with an answer, or None."""
    status = response.status_code
    if status >= 500:
        return f"{status} {response.get_data(as_text=True)[:200]}"
    if expected is None:
        return f"{status}: refused an allowed caller" if status in (401, 403) else None
    if status != expected:
        return f"{status}, expected {expected}"
    try:
        assert_error_shape(response.get_json())
    except AssertionError as shape:
        return f"{status} not in the error shape: {shape}"
    if status == 401 and response.headers.get("WWW-Authenticate") != "Bearer":
        return "401 without WWW-Authenticate: Bearer"
    return None


@pytest.mark.parametrize(
    ("caller", "required", "method", "expected"),
    [
        ("no token", Role.STAFF, "GET", 401),
        ("revoked token", Role.STAFF, "GET", 401),
        ("staff", Role.STAFF, "POST", None),
        ("staff", Role.SERVICE, "GET", 403),
        ("staff", Role.ADMIN, "GET", 403),
        ("admin", Role.SERVICE, "GET", None),
        ("admin", Role.ADMIN, "DELETE", None),
        ("service", Role.STAFF, "GET", None),
        ("service", Role.SERVICE, "GET", None),
        ("service", Role.STAFF, "POST", 403),
        ("service", Role.ADMIN, "GET", 403),
    ],
)
def test_the_rule_of_the_matrix_is_the_documented_one(
    caller: str, required: Role, method: str, expected: int | None
) -> None:
    assert expected_access(caller, required, method) == expected
