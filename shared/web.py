"""HTTP base for every service: app factory helpers, auth, validation, errors, health, docs.

Resources declare each method with `@operation(...)`; the same declaration authorises the
call, validates body and query with pydantic, renders the response and feeds `/openapi.json`.
"""

from __future__ import annotations

import codecs
import functools
import logging
import re
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flask_restful
import flask_swagger_ui
import orjson
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    request,
    send_from_directory,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import text
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.exceptions import NotFound as NotFoundHTTP
from werkzeug.routing import IntegerConverter, Map

from shared.auth import Role, TokenStore
from shared.consumer import is_transient, safe_reason
from shared.db import Database
from shared.errors import (
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    RuleViolation,
    Unauthorized,
    ValidationFailed,
)
from shared.infrastructure import Infrastructure
from shared.logs import request_id_var
from shared.metrics import install_metrics
from shared.outbox import pending_summary
from shared.settings import MEGABYTE
from shared.text import MULTILINE as MULTILINE
from shared.text import MultilineText as MultilineText
from shared.text import control_characters

log = logging.getLogger(__name__)

# The one place where domain errors become HTTP statuses.
STATUS_OF: dict[type[DomainError], int] = {
    ValidationFailed: 422,
    RuleViolation: 422,
    NotFound: 404,
    Conflict: 409,
    Unauthorized: 401,
    Forbidden: 403,
}


# ---------------------------------------------------------------- request/response schemas


MAX_ID = 2**31 - 1  # ids are PostgreSQL integers


class IdConverter(IntegerConverter):
    """`<id:name>` in a route: 1 .. 2^31-1; anything else is a 404, never a database error."""

    def __init__(self, map: Map) -> None:
        super().__init__(map, min=1, max=MAX_ID)


class PageQuery(BaseModel):
    """Pagination parameters shared by every list endpoint."""

    model_config = ConfigDict(extra="forbid")

    page: int = Field(default=1, ge=1, le=1_000_000)
    per_page: int = Field(default=20, ge=1, le=100)


@dataclass(frozen=True)
class Page:
    """One page of results as returned by a query use case."""

    items: Sequence[Any]
    total: int
    page: int
    per_page: int
    # False: `total` is a lower bound (shared.db.COUNT_LIMIT; lists count no further)
    total_exact: bool = True


class ErrorBody(BaseModel):
    """Error payload: `{"error": {"code", "message", "details"}}`."""

    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """Every error of every service has this shape."""

    error: ErrorBody


# ---------------------------------------------------------------- operations


@dataclass(frozen=True)
class Operation:
    """What one resource method is: who may call it, what it takes, what it returns.

    `max_body_bytes` overrides the app's `MAX_CONTENT_LENGTH` for this method (e.g. an
    import that takes a large file); larger bodies get a 413 before they are read.

    `check_text=False` leaves out the body-wide control-character check (a 422 for one bad
    text anywhere): only for a body whose parts are checked one by one by the method itself
    (a directory import reports a bad entry and imports the rest), which then must check
    every text it keeps (`shared.text.control_characters`).
    """

    summary: str
    role: Role = Role.STAFF
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    paginated: bool = False
    errors: tuple[int, ...] = field(default=())
    max_body_bytes: int | None = None
    check_text: bool = True
    # other media types the method may answer with (e.g. text/csv when a query parameter
    # asks for it): it then returns a finished flask Response, passed on as it is
    other_media_types: tuple[str, ...] = field(default=())


def operation(summary: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a resource method: authorise, validate body/query, render the response."""
    op = Operation(summary=summary, **options)

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            authorise(op.role)
            if op.body is not None:
                kwargs["body"] = parse_json(op.body, _json_body(), check_text=op.check_text)
            if op.query is not None:
                kwargs["query"] = parse_model(op.query, _query_args(op.query), "query")
            result = method(self, *args, **kwargs)
            if op.other_media_types and isinstance(result, Response):
                return result
            return render(op, result)

        wrapper.operation = op  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _json_body() -> bytes:
    # read whatever the Content-Type says: curl -d sends form encoding unless told otherwise
    raw = request.get_data(cache=True)
    if _cut_at_limit(raw):
        raise _too_large()
    raw = raw.removeprefix(codecs.BOM_UTF8)
    if not raw:
        raise ValidationFailed(
            "request body required", [{"field": "body", "message": "a JSON object is required"}]
        )
    return raw


def _cut_at_limit(raw: bytes) -> bool:
    """Whether a body without Content-Length (chunked) went on past the limit: werkzeug stops
    reading there without an error, so one more byte from the server's stream tells."""
    limit = request.max_content_length
    if request.content_length is not None or limit is None or len(raw) < limit:
        return False
    return bool(request.environ["wsgi.input"].read(1))


def _query_args(model: type[BaseModel]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        annotation = str(model.model_fields[key].annotation) if key in model.model_fields else ""
        args[key] = values if "list" in annotation else values[-1]
    return args


def parse_model(model: type[BaseModel], data: Any, location: str) -> BaseModel:
    """Validate `data` (e.g. query strings, converted to the field types) or raise
    `ValidationFailed` naming each bad field."""
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise _validation_failed(exc, location) from None
    reject_control_characters(parsed, location)
    return parsed


def parse_json(model: type[BaseModel], raw: bytes, *, check_text: bool = True) -> BaseModel:
    """Parse and validate a JSON body strictly: each value has its documented JSON type (no
    `"5"` for 5, no `1` for true, no number for a date), else `ValidationFailed`; with
    `check_text`, also a 422 for a control character in any text (see `Operation`).

    pydantic's parser bounds nesting depth (the stdlib's raises RecursionError: a 500)."""
    try:
        parsed = model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        invalid = [error["msg"] for error in exc.errors() if error["type"] == "json_invalid"]
        if invalid:
            raise ValidationFailed(
                "request body is not valid JSON", [{"field": "body", "message": invalid[0]}]
            ) from None
        raise _validation_failed(exc, "body") from None
    if check_text:
        reject_control_characters(parsed, "body")
    return parsed


def _validation_failed(exc: ValidationError, location: str) -> ValidationFailed:
    details = [
        {"field": ".".join(str(part) for part in error["loc"]) or location, "message": error["msg"]}
        for error in exc.errors()
    ]
    fields = ", ".join(sorted({d["field"] for d in details}))
    return ValidationFailed(f"invalid {location}: {fields}", details)


def reject_control_characters(parsed: Any, location: str) -> None:
    """A 422 naming every text field (string values and keys, nested too) that holds a
    control character; `MultilineText` fields may hold line feeds and tabs."""
    found: dict[str, str] = {}
    for path, char in control_characters(parsed):
        found.setdefault(path or location, char)
    if found:
        raise ValidationFailed(
            f"invalid {location}: {', '.join(sorted(found))}",
            [
                {
                    "field": path,
                    "message": f"must not contain control characters (found U+{ord(char):04X})",
                }
                for path, char in sorted(found.items())
            ],
        )


def render(op: Operation, result: Any) -> tuple[Any, int]:
    """Turn a use case result into JSON (bytes, see `output_json`) with the operation's
    status code."""
    if result is None:
        return "", 204 if op.status == 200 else op.status
    if op.paginated:
        assert isinstance(result, Page)
        page = {
            "items": [orjson.Fragment(_dump(op.response, item)) for item in result.items],
            "total": result.total,
            "total_exact": result.total_exact,
            "page": result.page,
            "per_page": result.per_page,
        }
        return orjson.dumps(page), op.status
    return _dump(op.response, result), op.status


def _dump(model: type[BaseModel] | None, value: Any) -> bytes:
    """JSON of one result, written by pydantic's serializer itself (no dict of JSON values
    in between, which the json module then had to encode again)."""
    if isinstance(value, BaseModel):
        return value.__pydantic_serializer__.to_json(value)
    if model is not None:
        parsed = model.model_validate(value, from_attributes=True)
        return parsed.__pydantic_serializer__.to_json(parsed)
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def output_json(data: Any, code: int, headers: Any = None) -> Response:
    """The JSON representation of every resource: `render` hands over finished JSON (bytes);
    anything else a resource returns is encoded here."""
    body = data if isinstance(data, bytes) else orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    response = current_app.response_class(body + b"\n", status=code, mimetype="application/json")
    response.headers.extend(headers or {})
    return response


# ---------------------------------------------------------------- auth


def authorise(required: Role) -> Role:
    """The caller's role, or Unauthorized / Forbidden."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    store: TokenStore = current_app.extensions["token_store"]
    caller = store.caller_for(token.strip())
    if caller is None:
        raise Unauthorized("the bearer token is not valid or has been revoked")
    if not caller.role.allows(required, request.method):
        if caller.role is Role.SERVICE:
            raise Forbidden("a service token may only read (GET) what staff may read")
        raise Forbidden(f"this endpoint requires the role '{required.value}'")
    g.role = caller.role
    g.actor = caller.name
    return caller.role


def current_actor() -> str:
    """The name of the calling token (who did it, for the records); `anonymous` outside an
    authenticated request."""
    return str(g.get("actor", "anonymous"))


# ---------------------------------------------------------------- errors

DATABASE_RETRY_AFTER_S = 5  # Retry-After of a 503 while the database is unavailable


def error_response(exc: Exception) -> Response:
    """The one JSON error shape for every failure."""
    headers: list[tuple[str, str]] = []
    if isinstance(exc, DomainError):
        status = next(
            (code for cls, code in STATUS_OF.items() if isinstance(exc, cls)),
            400,
        )
        body = ErrorBody(code=exc.code, message=exc.message, details=exc.details)
    elif isinstance(exc, HTTPException):
        status = exc.code or 500
        body = ErrorBody(code=_snake(exc.name), message=exc.description or exc.name)
        # e.g. `Allow` on a 405 (RFC 9110); the body is ours, so not its Content-Type
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    elif is_transient(exc):
        # the database is restarting, failing over or out of connections: the request may
        # be repeated as it is, so say so (not a 500: nothing is wrong with the request)
        log.warning("database unavailable: %s", safe_reason(exc))
        status = 503
        body = ErrorBody(
            code="database_unavailable",
            message="the database is not available right now; repeat the request shortly",
        )
        headers = [("Retry-After", str(DATABASE_RETRY_AFTER_S))]
    else:
        log.exception("unhandled error")
        status = 500
        body = ErrorBody(code="internal_error", message="internal server error")
    response = jsonify(ErrorResponse(error=body).model_dump(mode="json"))
    response.status_code = status
    response.headers.extend(headers)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


class ServiceApi(flask_restful.Api):
    """Flask-RESTful Api whose errors use the platform's JSON error shape."""

    def __init__(self, app: Flask) -> None:
        super().__init__(app)
        self.representations["application/json"] = output_json
        self.mounted: list[tuple[type[flask_restful.Resource], tuple[str, ...]]] = []

    def add_resource(self, resource: Any, *urls: str, **kwargs: Any) -> None:
        """Mount `resource` and remember it for the OpenAPI document."""
        self.mounted.append((resource, urls))
        super().add_resource(resource, *urls, **kwargs)

    def handle_error(self, e: Exception) -> Response:
        return error_response(e)


# ---------------------------------------------------------------- app factory


@dataclass(frozen=True)
class ResourceRoute:
    """A resource class mounted at a URL, with constructor kwargs (its dependencies)."""

    resource: type[flask_restful.Resource]
    url: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def create_service_app(
    *,
    name: str,
    title: str,
    database: Database,
    infrastructure: Infrastructure,
    token_store: TokenStore,
    bootstrap_servers: str,
    routes: Sequence[ResourceRoute],
    version: str = "1.0.0",
    relay_max_attempts: int = 10,
    max_content_length: int = MEGABYTE,
    pages: Sequence[Blueprint] = (),
) -> Flask:
    """A Flask app with the platform's common endpoints and the service's resources.

    `pages` are public HTML views mounted as they are: no bearer token (only `@operation`
    methods require one), so each must carry its own authority (e.g. a signed token in the
    URL). They get the security headers and `PAGE_CSP`.
    """
    # no `/static/<path>`: a service serves no files but its docs' assets (`_DOCS_ASSETS`)
    app = Flask(name, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = max_content_length
    app.url_map.converters["id"] = IdConverter
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["token_store"] = token_store
    app.extensions["database"] = database
    api = ServiceApi(app)
    from shared.audit_api import AuditEvents  # it declares its resource with `operation`

    for route in [
        *routes,
        ResourceRoute(
            AuditEvents, "/api/audit-events", {"database": database, "infra": infrastructure}
        ),
        ResourceRoute(
            OutboxStatus,
            "/api/admin/outbox",
            {"database": database, "infra": infrastructure, "max_attempts": relay_max_attempts},
        ),
    ]:
        api.add_resource(route.resource, route.url, resource_class_kwargs=route.kwargs)
    for page in pages:
        app.register_blueprint(page)
    app.register_error_handler(Exception, error_response)
    _install_request_ids(app)
    _install_body_limit(app)
    _install_security_headers(app)
    install_metrics(app, name, database, infrastructure)
    _install_probes(app, database, bootstrap_servers)
    _install_docs(app, api, title, version)
    return app


class StuckRow(BaseModel):
    """An outbox row the relay gave up on (it holds back its aggregate's later events)."""

    id: int
    event_type: str
    aggregate_id: str
    last_error: str | None


class OutboxStatusOut(BaseModel):
    """How far the outbox relay is behind, and what it is stuck on."""

    pending: int
    oldest_pending_age_seconds: float
    stuck: list[StuckRow]


class OutboxStatus(flask_restful.Resource):
    """`/api/admin/outbox`: the outbox backlog of this service (operators)."""

    def __init__(self, database: Database, infra: Infrastructure, max_attempts: int) -> None:
        self.database = database
        self.infra = infra
        self.max_attempts = max_attempts

    @operation("Outbox backlog of this service", role=Role.ADMIN, response=OutboxStatusOut)
    def get(self) -> Any:
        return pending_summary(self.database, self.infra, self.max_attempts)


def _install_request_ids(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if re.fullmatch(r"[\w.-]{1,64}", incoming) else uuid.uuid4().hex
        g.request_id_token = request_id_var.set(g.request_id)

    @app.after_request
    def return_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    @app.teardown_request
    def clear_request_id(_: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id_var.reset(token)


def _install_body_limit(app: Flask) -> None:
    @app.before_request
    def refuse_large_body() -> None:
        """413 on a Content-Length over the limit before a byte of the body is read (and
        before auth); a body without Content-Length is cut at the limit while it is read."""
        op = _current_operation()
        if op is not None and op.max_body_bytes is not None:
            request.max_content_length = op.max_body_bytes
        limit = request.max_content_length
        if limit is not None and (request.content_length or 0) > limit:
            raise _too_large()


def _current_operation() -> Operation | None:
    """The `@operation` of the resource method this request is routed to, if any."""
    view = current_app.view_functions.get(request.endpoint or "")
    handler = getattr(getattr(view, "view_class", None), request.method.lower(), None)
    return getattr(handler, "operation", None)


def _too_large() -> RequestEntityTooLarge:
    return RequestEntityTooLarge(
        f"the request body may hold at most {request.max_content_length} bytes"
    )


# Responses are JSON for programs, not pages: no sniffing, framing or referrers; and health
# data must not stay in browser or proxy caches.
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
# public HTML pages: nothing loads, forms post back to this service only
PAGE_CSP = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"


def _install_security_headers(app: Flask) -> None:
    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        # the API docs and their assets have their own policy (they load scripts and styles)
        if request.path.startswith("/docs"):
            response.headers["Content-Security-Policy"] = _DOCS_CSP
        elif response.mimetype == "application/json":
            response.headers.setdefault("Content-Security-Policy", _JSON_CSP)
        elif response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        return response


def broker_reachable(bootstrap_servers: str, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to any bootstrap server succeeds."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def _install_probes(app: Flask, database: Database, bootstrap_servers: str) -> None:
    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/ready")
    def ready() -> Response | tuple[Response, int]:
        checks: dict[str, str] = {}
        try:
            with database.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {exc.__class__.__name__}"
        checks["broker"] = "ok" if broker_reachable(bootstrap_servers) else "unreachable"
        ok = all(value == "ok" for value in checks.values())
        return jsonify({"status": "ready" if ok else "not_ready", "checks": checks}), (
            200 if ok else 503
        )


def _install_docs(app: Flask, api: ServiceApi, title: str, version: str) -> None:
    from shared.openapi import build_openapi

    spec: dict[str, Any] = {}
    assets = Path(flask_swagger_ui.__file__).parent / "dist"  # Swagger UI 5 (reads 3.1)

    @app.get("/openapi.json")
    def openapi() -> Response:
        if not spec:
            spec.update(build_openapi(api, title=title, version=version))
        return jsonify(spec)

    @app.get("/docs")
    def docs() -> Response:
        return Response(_SWAGGER_PAGE.format(title=title), mimetype="text/html")

    @app.get("/docs/init.js")
    def docs_init() -> Response:
        return Response(_SWAGGER_INIT, mimetype="text/javascript")

    @app.get("/docs/static/<path:filename>")
    def docs_static(filename: str) -> Response:
        if filename not in _DOCS_ASSETS:  # the package ships more (an OAuth page, ...)
            raise NotFoundHTTP()
        return send_from_directory(assets, filename)


# Only the service's own files run; Swagger UI sets inline styles and data: images.
_DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'; object-src 'none'"
)
# the Swagger UI files the page uses; nothing else of the package is served
_DOCS_ASSETS = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"}
)

_SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - API</title>
<link rel="icon" href="/docs/static/favicon-32x32.png">
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>
"""

# A file of its own, not an inline <script>, so the CSP needs no 'unsafe-inline' for scripts.
# The token stays in the page's memory: persisting it would leave it in localStorage.
_SWAGGER_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
  validatorUrl: null,
});
"""
