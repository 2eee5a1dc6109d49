"""Provider HTTP errors map to typed errors; Retry-After in every form is understood."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from agentguild.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    ModelTimeoutError,
    RateLimitError,
    ServerError,
)
from agentguild.llm._http_errors import error_for_status, retry_after_seconds


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, b'{"error": {"message": "bad key"}}', AuthenticationError),
        (403, b"", AuthenticationError),
        (408, b"", ModelTimeoutError),
        (429, b"", RateLimitError),
        (500, b"<html>oops</html>", ServerError),
        (529, b"", ServerError),
        (
            400,
            b'{"error": {"message": "x", "code": "context_length_exceeded"}}',
            ContextLengthError,
        ),
        (400, b'{"error": {"message": "prompt is too long: 210000 tokens"}}', ContextLengthError),
        (400, b'{"error": "unknown field"}', BadRequestError),
        (404, b'{"detail": "no such model"}', BadRequestError),
    ],
)
def test_status_maps_to_typed_error(status: int, body: bytes, expected: type) -> None:
    error = error_for_status(status, {}, body)
    assert type(error) is expected
    assert error.status == status


def test_error_message_quotes_the_providers_message() -> None:
    error = error_for_status(401, {}, b'{"error": {"message": "Incorrect API key"}}')
    assert "HTTP 401: Incorrect API key" in str(error)


def test_retryable_flags_follow_the_error_kind() -> None:
    assert error_for_status(503, {}, b"").retryable
    assert error_for_status(429, {}, b"").retryable
    assert not error_for_status(400, {}, b"").retryable
    assert not error_for_status(401, {}, b"").retryable


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds


def test_retry_after_as_http_date() -> None:
    import time

    seconds = retry_after_seconds({"Retry-After": formatdate(time.time() + 60, usegmt=True)})
    assert seconds is not None
    assert 55 <= seconds <= 61
