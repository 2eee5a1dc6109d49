"""Maps a provider's HTTP error response to the matching typed `ModelError`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import orjson

from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    ModelError,
    ModelTimeoutError,
    RateLimitError,
    ServerError,
)

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "maximum context",
    "context window",
    "too many tokens",
    "prompt is too long",
)


def error_for_status(status: int, headers: Mapping[str, str], body: bytes) -> ModelError:
    """The typed error for a non-200 response (`body` is kept, truncated, for debugging)."""
    text = body[:2000].decode(errors="replace")
    detail, code = _error_detail(body)
    message = f"HTTP {status}: {detail or text[:200] or 'no body'}"
    if status in (401, 403):
        return AuthenticationError(
            f"{message} (check the API key configured for this model)", status=status, body=text
        )
    if status == 429:
        return RateLimitError(message, retry_after=retry_after_seconds(headers), body=text)
    if status == 408:
        return ModelTimeoutError(message, status=status, body=text)
    if status >= 500:
        return ServerError(message, status=status, body=text)
    haystack = f"{code} {detail}".lower()
    if any(marker in haystack for marker in _CONTEXT_MARKERS):
        return ContextLengthError(message, status=status, body=text)
    return BadRequestError(message, status=status, body=text)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait per `retry-after-ms` or `Retry-After` (delta seconds or HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _error_detail(body: bytes) -> tuple[str, str]:
    """(message, code) from an OpenAI-style `{"error": {...}}` body, or ('', '')."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or ""), str(error.get("code") or error.get("type") or "")
    if isinstance(error, str):
        return error, ""
    return "", ""
