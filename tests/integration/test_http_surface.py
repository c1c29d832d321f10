"""The HTTP surface every service inherits from `shared.web`: metrics with bounded labels,
bounded request bodies, security headers on every response, no control characters in text."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask_restful import Resource
from pydantic import BaseModel, ConfigDict
from werkzeug.serving import make_server

from patient_service.app import create_app
from patient_service.models import INFRA
from patient_service.settings import PatientSettings
from shared.devstack import free_port
from shared.runtime import ServiceRuntime
from shared.settings import load_settings
from shared.web import MultilineText, ResourceRoute, create_service_app, operation
from tests.conftest import ADMIN_TOKEN
from tests.helpers import patient_body

pytestmark = pytest.mark.integration

LIMIT = 1_048_576  # the default MAX_CONTENT_LENGTH
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"


@pytest.fixture
def app(make_settings: Any) -> Flask:
    return create_app(make_settings(PatientSettings))


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


# ---------------------------------------------------------------- metrics


def _series(metrics: bytes) -> list[str]:
    """Each sample's name and labels, without its value."""
    return [
        line.rsplit(" ", 1)[0]
        for line in metrics.decode().splitlines()
        if line and not line.startswith("#")
    ]


def test_made_up_methods_and_paths_do_not_grow_the_metrics(client: Any) -> None:
    client.get("/metrics")
    client.open("/health", method="M0X")  # the one `other` series
    client.get("/no/such/path")  # the one `unmatched` series
    before = client.get("/metrics").data
    for n in range(5000):
        client.open("/health", method=f"M{n:06d}X")
    for n in range(100):
        client.get(f"/no/such/path/{n}")
    after = client.get("/metrics").data
    assert _series(after) == _series(before)  # only counter values changed
    assert abs(len(after) - len(before)) < 200, (len(before), len(after))
    requests = [line for line in _series(after) if line.startswith("http_requests_total{")]
    assert 'http_requests_total{endpoint="unmatched",method="other",' in "\n".join(requests)
    assert 'http_requests_total{endpoint="unmatched",method="GET",' in "\n".join(requests)


# ---------------------------------------------------------------- body size


def test_body_over_the_limit_is_413_with_the_error_shape_before_auth(
    client: Any, admin_headers: dict[str, str]
) -> None:
    before = client.get("/api/patients", headers=admin_headers).json["total"]
    for headers in (admin_headers, {}):
        response = client.post(
            "/api/patients",
            data=b" " * (LIMIT + 1),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 413
        assert set(response.json) == {"error"}
        assert response.json["error"]["code"] == "request_entity_too_large"
        assert str(LIMIT) in response.json["error"]["message"]
        assert "details" in response.json["error"]
    assert client.get("/api/patients", headers=admin_headers).json["total"] == before


def test_body_limit_comes_from_max_content_length(
    make_settings: Any, admin_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "4096")
    assert load_settings(
        PatientSettings, database_url="postgresql://x@h/db"
    ).max_content_length == (4096)
    app = create_app(make_settings(PatientSettings, max_content_length=4096))
    assert app.config["MAX_CONTENT_LENGTH"] == 4096
    body = patient_body(gp_name="x" * 100)
    assert app.test_client().post(
        "/api/patients", json=body, headers=admin_headers
    ).status_code == (201)
    padded = b"{" + b" " * 4096 + b"}"
    response = app.test_client().post(
        "/api/patients", data=padded, headers={**admin_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413


class _Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    text: MultilineText
    lines: list[MultilineText] = []
    labels: dict[str, MultilineText | None] = {}


class _Notes(Resource):
    @operation("Upload a note", body=_Note, max_body_bytes=8192)
    def post(self, body: _Note) -> Any:
        return body.model_dump()

    @operation("Replace a note", body=_Note)
    def put(self, body: _Note) -> Any:
        return body.model_dump()

    @operation("Fails")
    def get(self) -> Any:
        raise RuntimeError("boom")


@pytest.fixture
def notes_app(make_settings: Any) -> Iterator[Flask]:
    """A service app with one resource of its own (and a body limit of 1 KB)."""
    settings = make_settings(PatientSettings)
    runtime = ServiceRuntime.build(settings, INFRA)
    yield create_service_app(
        name="notes",
        title="Notes",
        database=runtime.database,
        infrastructure=INFRA,
        token_store=runtime.tokens,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        routes=[ResourceRoute(_Notes, "/api/notes")],
        max_content_length=1024,
    )
    runtime.database.dispose()


def test_an_operation_may_allow_a_larger_body(
    notes_app: Flask, admin_headers: dict[str, str]
) -> None:
    client = notes_app.test_client()
    note = {"title": "t", "text": "x" * 2000}
    assert client.post("/api/notes", json=note, headers=admin_headers).status_code == 200
    assert client.put("/api/notes", json=note, headers=admin_headers).status_code == 413
    large = {"title": "t", "text": "x" * 9000}
    assert client.post("/api/notes", json=large, headers=admin_headers).status_code == 413
    spec = client.get("/openapi.json").json
    assert "413" in spec["paths"]["/api/notes"]["post"]["responses"]


def test_multiline_text_may_hold_line_feeds_and_tabs_but_no_other_control(
    notes_app: Flask, admin_headers: dict[str, str]
) -> None:
    client = notes_app.test_client()
    ok = {"title": "t", "text": "a\n\tb", "lines": ["c\nd"], "labels": {"k": "e\nf", "n": None}}
    assert client.post("/api/notes", json=ok, headers=admin_headers).json == ok
    bad = {
        "title": "a\nb",
        "text": "a\r\nb",
        "lines": ["ok", "\x1b[31m"],
        "labels": {"k\n": "v", "j": "\x7f"},
    }
    response = client.post("/api/notes", json=bad, headers=admin_headers)
    assert response.status_code == 422
    assert [detail["field"] for detail in response.json["error"]["details"]] == [
        "labels.j",
        "labels.k\n",
        "lines.1",
        "text",
        "title",
    ]
    assert response.json["error"]["details"][-1]["message"] == (
        "must not contain control characters (found U+000A)"
    )


def _serve(app: Flask) -> tuple[Any, int]:
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


def _post_until_answered(port: int, size: int, *, chunked: bool) -> tuple[bytes, int, float]:
    """POST `size` body bytes in 64 KB pieces, stopping as soon as the server answers:
    the status line, the bytes sent by then and the seconds it took."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = (
        f"POST /api/patients HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    )
    piece = b" " * 65536
    sent = 0
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            while sent < size and not select.select([sock], [], [], 0)[0]:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked and sent >= size:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server closed the connection on a body it will not read
            pass
        status = sock.recv(4096).split(b"\r\n", 1)[0]
    return status, sent, time.perf_counter() - started


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_20_mb_body_is_refused_before_it_is_read(app: Flask, chunked: bool) -> None:
    server, port = _serve(app)
    try:
        size = 20 * 1024 * 1024
        status, sent, seconds = _post_until_answered(port, size, chunked=chunked)
    finally:
        server.shutdown()
        server.server_close()
    assert status == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE"
    # the answer came while the client was still sending (socket buffers hold a few MB)
    assert sent < size / 2, f"{sent} of {size} bytes sent before the answer"
    assert seconds < 5


# ---------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("method", "path", "auth", "body", "status"),
    [
        ("GET", "/api/patients", True, None, 200),
        ("GET", "/api/patients", False, None, 401),
        ("GET", "/api/patients/999999999", True, None, 404),
        ("POST", "/api/patients", True, {"first_name": "Anna"}, 422),
        ("DELETE", "/api/patients", True, None, 405),
    ],
)
def test_api_responses_are_not_cached_sniffed_framed_or_referred(
    client: Any,
    admin_headers: dict[str, str],
    method: str,
    path: str,
    auth: bool,
    body: Any,
    status: int,
) -> None:
    response = client.open(path, method=method, json=body, headers=admin_headers if auth else {})
    assert response.status_code == status
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"] == JSON_CSP


def test_a_500_carries_the_headers_too(notes_app: Flask, admin_headers: dict[str, str]) -> None:
    response = notes_app.test_client().get("/api/notes", headers=admin_headers)
    assert response.status_code == 500
    assert response.json["error"]["code"] == "internal_error"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_docs_keep_their_own_content_policy(client: Any) -> None:
    for path in ("/docs", "/docs/static/swagger-ui.css"):
        with client.get(path) as response:  # closes the static file
            assert response.status_code == 200
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers.get("Content-Security-Policy") != JSON_CSP
    health = client.get("/health")
    assert health.headers["X-Frame-Options"] == "DENY"
    assert "Cache-Control" not in health.headers
