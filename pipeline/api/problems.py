"""Errors as RFC 9457 problem details: one mapping from our exception tree to HTTP.

Messages of our exceptions are written to be shown (they never hold content or key
material); anything else is reported by type only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from keys.errors import InvalidSeal
from pipeline.errors import OURS, InsufficientScope, QuotaExceeded, kind_of

__all__ = [
    "MAX_JSON_BYTES",
    "StrictBody",
    "problem",
    "problem_responses",
    "register",
]

MEDIA_TYPE = "application/problem+json"

#: JSON request bodies are small: larger ones get 413, however they are sent (routers pass it as
#: ``max_body_size``, which also counts chunked bodies that declare no Content-Length)
MAX_JSON_BYTES = 64 * 1024


class StrictBody(BaseModel):
    """Base of every JSON request body. Unknown fields are refused, and types are strict:
    lax validation would take ``true`` as the number 1 and ``"yes"`` as true. A number with
    no fraction (``3.0``) is still the integer 3, as JSON Schema counts it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _integral_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in data.items()
        }


def problem(
    status: int,
    detail: str,
    slug: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    title = HTTPStatus(status).phrase
    body = {
        "type": f"https://sealscribe.dev/problems/{slug or title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _ours(request: Request, exc: Exception) -> JSONResponse:
    kind = kind_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if kind.status == 401 else None
    if isinstance(exc, QuotaExceeded) and exc.retry_after is not None:
        headers = {"Retry-After": str(max(1, exc.retry_after))}
    if isinstance(exc, InsufficientScope):  # RFC 6750, 3.1
        headers = {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
    if isinstance(exc, InvalidSeal):
        detail = "stored content failed authentication (moved or altered) and was not opened"
    elif kind.status == 500:
        detail = f"internal error ({type(exc).__name__})"
    else:
        detail = str(exc) or kind.slug.replace("-", " ")
    return problem(kind.status, detail, kind.slug, headers)


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_error(request, e) for e in exc.errors()]
    where = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
    return problem(422, f"the request is not valid: {where}", "validation", errors=errors)


def _error(request: Request, e: Mapping[str, Any]) -> dict[str, Any]:
    """Where and what, never the input: not the value ("input"), and not the name of an
    unknown field either, which is as much the caller's text as a value is."""
    loc = [str(p) for p in e.get("loc", ())]
    msg = str(e.get("msg", ""))
    if e.get("type") == "extra_forbidden" and loc:
        loc.pop()
        known = _body_fields(request)
        msg = "a field this operation does not take" + (
            f" (it takes {', '.join(known)})" if known else " (it takes none)"
        )
    return {"loc": loc, "msg": msg}


def _body_fields(request: Request) -> list[str]:
    field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    return (
        list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []
    )


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 413:  # a streamed body went over a router's max_body_size
        return problem(
            413, f"the request body is larger than {MAX_JSON_BYTES} bytes", "body-too-large"
        )
    return problem(exc.status_code, str(exc.detail), headers=exc.headers)


def register(app: FastAPI) -> None:
    """Map errors to problem details, and make the OpenAPI document say so."""
    for base in OURS:
        app.add_exception_handler(base, _ours)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _schema(*, errors: bool = False) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    }
    if errors:  # where each validation error is, never the input itself
        properties["errors"] = {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                },
            },
        }
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": properties,
    }


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem statuses a route can return."""
    return {
        s: {
            "description": HTTPStatus(s).phrase,
            "content": {MEDIA_TYPE: {"schema": _schema(errors=s == 422)}},
        }
        for s in statuses
    }


def _document_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents its own 422 body (``application/json``, ``HTTPValidationError``);
    ours is a problem. Every operation that takes a JSON body can also answer 413 (too
    large) and 400 (not text FastAPI can parse, such as bytes that are not UTF-8); every one
    that needs a token can answer 401, 403 (the token lacks the scope) and 429 (too many
    failed authentications from the caller's address)."""
    for operation in _operations(doc):
        responses = operation.setdefault("responses", {})
        if "401" in responses:  # a tenant's requests count against its quotas
            responses.setdefault("429", problem_responses(429)[429])
        if "422" in responses:
            responses["422"] = {
                "description": "the request does not match this operation's parameters or "
                "body schema; errors says where",
                "content": {MEDIA_TYPE: {"schema": _schema(errors=True)}},
            }
        if operation.get("security"):  # a token without the scope; too many failed tries
            for status in (401, 403, 429):
                responses.setdefault(str(status), problem_responses(status)[status])
        body = operation.get("requestBody", {}).get("content", {})
        if "application/json" in body:
            for status in (400, 413):
                responses.setdefault(str(status), problem_responses(status)[status])
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # now unused, unless a route says
        if json.dumps(f"#/components/schemas/{name}") not in json.dumps(doc):
            schemas.pop(name, None)
    return doc


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return [
        op
        for item in doc.get("paths", {}).values()
        for method, op in item.items()
        if method in methods
    ]
