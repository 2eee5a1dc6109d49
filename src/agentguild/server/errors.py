"""One JSON error shape for every failure: `{"error": {"type", "message", "details"}}`.

Routes raise `ApiError` (or let an `AgentguildError` escape); `install_error_handlers`
turns those, FastAPI's validation errors and Starlette's 404/405 into that shape with the
right status. The error type is also left on `request.state.error_type` so the metrics
middleware can count errors by type without parsing bodies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    AgentguildError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConfigError,
    ContextLengthError,
    ModelError,
    ModelTimeoutError,
    RateLimitError,
    RateLimitExceeded,
    ToolError,
)
from ..security.errors import AuthError
from ..store.errors import ConflictError, InvalidCursorError, NotFoundError

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "ErrorBody",
    "ErrorDetail",
    "error_response",
    "install_error_handlers",
    "register_error",
]

STATUS_TYPES: dict[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}
"""The default error `type` of each status code."""


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine-readable `type` and a human-readable message."""

    type: str = Field(examples=["not_found"])
    message: str = Field(examples=["agent 'writer' does not exist"])
    details: Any = None
    """Extra structured information (validation errors, limits), or null."""


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": STATUS_TYPES[code].replace("_", " ").capitalize()}
    for code in (400, 401, 403, 404, 409, 413, 422, 429)
}
"""OpenAPI `responses=` documenting the error shape; the app adds it to every router."""


class ApiError(HTTPException):
    """An error to send to the client as is: status, type, message, optional details."""

    def __init__(
        self,
        status: int,
        type: str | None = None,
        message: str = "",
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.type = type or STATUS_TYPES.get(status, "error")
        self.message = message or self.type.replace("_", " ")
        self.details = details
        super().__init__(status_code=status, detail=self.message, headers=dict(headers or {}))

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self.status_code


def error_response(
    request: Request | None,
    status: int,
    type: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON response in the one error shape (and the type noted for metrics)."""
    if request is not None:
        request.state.error_type = type
    body = {"error": {"type": type, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


# ---- AgentguildError subclasses -> status --------------------------------------------

_MAPPED: dict[type[Exception], tuple[int, str]] = {}


def register_error(exc_type: type[Exception], status: int, type: str) -> None:
    """Map an exception class (and its subclasses) to a status and error type."""
    _MAPPED[exc_type] = (status, type)


for _exc, _status, _type in (
    (AgentguildError, 500, "internal_error"),
    (ConfigError, 400, "invalid_configuration"),
    (ToolError, 400, "tool_error"),
    (ModelError, 502, "model_error"),
    (AuthenticationError, 502, "model_authentication_failed"),
    (BadRequestError, 400, "model_rejected_request"),
    (ContextLengthError, 400, "context_length_exceeded"),
    (RateLimitError, 503, "model_rate_limited"),
    (RateLimitExceeded, 429, "rate_limited"),
    (CircuitOpenError, 503, "model_unavailable"),
    (ModelTimeoutError, 504, "model_timeout"),
    (AuthError, 401, "unauthenticated"),
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (InvalidCursorError, 400, "invalid_cursor"),
):
    register_error(_exc, _status, _type)


def _lookup(exc: BaseException) -> tuple[int, str]:
    for klass in type(exc).__mro__:
        if klass in _MAPPED:
            return _MAPPED[klass]
    return 500, "internal_error"


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """`Retry-After` in whole seconds (at least 1), or no header when unknown."""
    if seconds is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


# ---- handlers -------------------------------------------------------------------------


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status, exc.type, exc.message, exc.details, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    kind = STATUS_TYPES.get(status, "error")
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else kind
    if status == 404 and message == "Not Found":
        message = f"no route matches {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(request, status, kind, message, None, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Without the offending input: it may hold a password or a key.
    details = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]
    return error_response(request, 422, "validation_error", "the request is invalid", details)


async def _agentguild_error(request: Request, exc: Exception) -> JSONResponse:
    status, kind = _lookup(exc)
    if status >= 500 and kind == "internal_error":
        message = "internal server error"
    else:
        message = str(exc) or kind.replace("_", " ")
    headers = retry_after_header(getattr(exc, "retry_after", None)) if status in (429, 503) else {}
    if status == 429 and not headers:
        headers = {"Retry-After": "1"}
    return error_response(request, status, kind, message, None, headers)


def install_error_handlers(app: FastAPI) -> None:
    """Send every error raised inside `app` in the one error shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(AgentguildError, _agentguild_error)
    for exc_type in _MAPPED:
        if not issubclass(exc_type, AgentguildError):
            app.add_exception_handler(exc_type, _agentguild_error)
