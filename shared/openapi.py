"""OpenAPI 3.1 document built from the same pydantic models that validate requests."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from shared.web import MAX_ID, ErrorResponse, Operation, ServiceApi

_REF = "#/components/schemas/{model}"
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
_REASONS = {
    400: "Bad request",
    401: "Missing or invalid bearer token",
    403: "Role not allowed",
    404: "Not found",
    409: "Conflict with current state",
    413: "Request body too large (`MAX_CONTENT_LENGTH`)",
    422: "Validation failed (details name each field)",
}


def build_openapi(api: ServiceApi, *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI document of every `@operation` method mounted on `api`."""
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for resource, urls in api.mounted:
        for url in urls:
            path, path_params = _openapi_path(url)
            for method in ("get", "post", "put", "patch", "delete"):
                handler = getattr(resource, method, None)
                op: Operation | None = getattr(handler, "operation", None)
                if op is None:
                    continue
                paths.setdefault(path, {})[method] = _operation(op, path_params, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }


def _openapi_path(url: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for converter, name in _CONVERTER.findall(url):
        schema: dict[str, Any] = {"type": "string"}
        if converter in ("int", "id"):
            schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return _CONVERTER.sub(r"{\2}", url), params


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template=_REF, mode="serialization")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": _REF.format(model=model.__name__)}


def _operation(
    op: Operation, path_params: list[dict[str, Any]], components: dict[str, Any]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "summary": op.summary,
        "description": (
            "Requires role `admin` or the service token."
            if op.role.value == "service"
            else f"Requires role `{op.role.value}`."
        ),
        "security": [{"bearerAuth": []}],  # every operation authorises (`@operation`)
        "parameters": list(path_params),
        "responses": {},
    }
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template=_REF)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            spec["parameters"].append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    if op.body is not None:
        body = op.body.model_json_schema(ref_template=_REF, mode="validation")
        for name, definition in body.pop("$defs", {}).items():
            components[name] = definition
        components[f"{op.body.__name__}"] = body
        spec["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=op.body.__name__)}}
            },
        }
    success: dict[str, Any] = {"description": "Success"}
    if op.response is not None:
        ref: dict[str, Any] = _schema_ref(op.response, components)
        if op.paginated:
            ref = {
                "type": "object",
                "required": ["items", "total", "total_exact", "page", "per_page"],
                "properties": {
                    "items": {"type": "array", "items": ref},
                    "total": {
                        "type": "integer",
                        "description": "matches, counted up to 10,000 (see total_exact)",
                    },
                    "total_exact": {
                        "type": "boolean",
                        "description": "false: there are more than `total` matches",
                    },
                    "page": {"type": "integer"},
                    "per_page": {"type": "integer"},
                },
            }
        success["content"] = {"application/json": {"schema": ref}}
    for media_type in op.other_media_types:
        success.setdefault("content", {})[media_type] = {"schema": {"type": "string"}}
    spec["responses"][str(op.status)] = success
    error_ref = _schema_ref(ErrorResponse, components)
    codes = {401, 403, *op.errors}
    if path_params:
        codes.add(404)  # an id that cannot exist (IdConverter) or does not
    if op.body is not None or op.query is not None:
        codes.add(422)
    if op.body is not None:
        codes.add(413)
    for code in sorted(codes):
        spec["responses"][str(code)] = {
            "description": _REASONS.get(code, "Error"),
            "content": {"application/json": {"schema": error_ref}},
        }
    return spec
