"""The gateway middleware, as one pure ASGI layer (no per-request task or body copies).

For every HTTP request it

- takes the caller's `X-Request-ID` (if well-formed) or makes one, binds it to the log
  context and returns it on the response;
- refuses bodies over `max_body_bytes` with 413 (by `Content-Length`, or while streaming);
- turns an unhandled exception into a 500 in the one error shape, with no internals;
- records Prometheus metrics (`agentguild_http_requests_total{method,route,status}`,
  `agentguild_http_request_duration_seconds`, `agentguild_http_requests_in_flight`,
  `agentguild_http_errors_total{type}`) and writes one JSON access-log line (request id,
  tenant, caller, route, status, duration; never headers, query strings or bodies).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import STATUS_TYPES, ApiError

__all__ = ["REQUEST_ID_HEADER", "GatewayMiddleware", "HttpMetrics"]

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
_log = structlog.get_logger("agentguild.access")


class HttpMetrics:
    """The HTTP server's Prometheus metrics, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "agentguild_http_requests_total",
            "HTTP requests handled, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "agentguild_http_request_duration_seconds",
            "Time from request start to the end of the response, by method and route.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.in_flight = Gauge(
            "agentguild_http_requests_in_flight",
            "HTTP requests being handled now.",
            registry=registry,
        )
        self.errors = Counter(
            "agentguild_http_errors_total",
            "HTTP error responses (status >= 400), by error type.",
            ["type"],
            registry=registry,
        )


class _BodyTooLarge(ApiError):
    """Raised from `receive`: FastAPI re-raises HTTP exceptions met while reading a body,
    so this reaches the error handlers (or, outside FastAPI routes, this middleware)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"the request body exceeds {limit} bytes")


class GatewayMiddleware:
    """Request ids, body limit, last-resort 500s, metrics and access logs (see module doc)."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        response: dict[str, Any] = {"status": 500, "started": False}
        id_header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["started"] = True
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        self.metrics.in_flight.inc()
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                declared = _content_length(scope)
                if declared is not None and declared > self.max_body_bytes:
                    raise _BodyTooLarge(self.max_body_bytes)
                await self.app(scope, self._limited(receive), send_wrapper)
            except _BodyTooLarge as exc:
                await self._refuse(state, response, send_wrapper, 413, (exc.type, exc.message))
            except Exception:
                _log.exception("http.unhandled_error", path=scope.get("path"))
                await self._refuse(
                    state, response, send_wrapper, 500, ("internal_error", "internal server error")
                )
            finally:
                self.metrics.in_flight.dec()
                self._record(scope, state, response["status"], time.perf_counter() - started)

    def _limited(self, receive: Receive) -> Receive:
        limit = self.max_body_bytes
        seen = 0

        async def receive_wrapper() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge(limit)
            return message

        return receive_wrapper

    async def _refuse(
        self,
        state: dict[str, Any],
        response: dict[str, Any],
        send: Send,
        status: int,
        error: tuple[str, str],
    ) -> None:
        state["error_type"] = error[0]
        if response["started"]:
            return  # too late for an error response; the client sees a cut-off body
        details = {"request_id": state.get("request_id")}
        body = orjson.dumps({"error": {"type": error[0], "message": error[1], "details": details}})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if status == 413:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _record(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        method = scope.get("method", "")
        route = _route_label(scope)
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(seconds)
        if status >= 400:
            kind = state.get("error_type") or STATUS_TYPES.get(status, "error")
            self.metrics.errors.labels(kind).inc()
        principal = state.get("principal")
        fields: dict[str, Any] = {
            "method": method,
            "path": scope.get("path"),
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "tenant": getattr(principal, "tenant_id", None),
            "caller": getattr(principal, "caller_id", None),
        }
        if scope.get("path") in _QUIET_PATHS and status < 400:
            _log.debug("http.request", **fields)
        else:
            _log.info("http.request", **fields)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _route_label(scope: Scope) -> str:
    """The matched route's template (bounded cardinality), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "unmatched"
    return str(path) or "/"
