"""Log redaction: credentials never reach a log line, by key name or by shape."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from agentguild.server.logging import REDACTED, configure_logging, redact, redact_event


def test_secret_keys_are_masked_whatever_their_value() -> None:
    event = {"authorization": "Bearer abc", "password": "hunter2", "api_key": 123, "user": "ann"}

    masked = redact(event)

    assert masked == {
        "authorization": REDACTED,
        "password": REDACTED,
        "api_key": REDACTED,
        "user": "ann",
    }


def test_token_counts_are_not_mistaken_for_secrets() -> None:
    assert redact({"prompt_tokens": 12, "token_type": "bearer"}) == {
        "prompt_tokens": 12,
        "token_type": "bearer",
    }


def test_keys_and_tokens_inside_text_are_masked() -> None:
    api_key = "ag_" + "A" * 43
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3IifQ.c2lnbmF0dXJl"

    text = redact(f"called with {api_key} and Bearer {jwt}")

    assert api_key not in text
    assert jwt not in text


def test_the_processor_masks_nested_fields() -> None:
    event = {"event": "login", "request": {"headers": {"Authorization": "Bearer ag_secret"}}}

    out = redact_event(None, "info", event)

    assert out["request"]["headers"]["Authorization"] == REDACTED


def test_configured_logs_are_json_lines_without_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO")
    try:
        structlog.get_logger("test").info("user.login", password="hunter2", user="ann")
        logging.getLogger("uvicorn.error").info("server started")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers = []

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert lines[0]["event"] == "user.login"
    assert lines[0]["password"] == REDACTED
    assert lines[0]["level"] == "info"
    assert "timestamp" in lines[0]
    assert lines[1]["event"] == "server started"
