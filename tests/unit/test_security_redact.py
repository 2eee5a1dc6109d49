"""Secret redaction for logs, and secret detection for input."""

from __future__ import annotations

import pytest

from agentguild.security import find_secrets, generate_api_key, redact

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c3JfMSJ9."
    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)
API_KEY = generate_api_key()[0]

CASES = [
    (f"key={API_KEY}", API_KEY, "agentguild_api_key"),
    ("using sk-proj-abcdefghijklmnop1234 now", "sk-proj-abcdefghijklmnop1234", "openai_api_key"),
    ("anthropic sk-ant-api03-abcdefghijklmnopqrst", "api03-abcdefghij", "anthropic_api_key"),
    (f"Authorization: Bearer {JWT}", JWT, "jwt"),
    ("Authorization: Bearer abcdef0123456789", "abcdef0123456789", "bearer_token"),
    ("aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
    ("ghp_" + "a" * 36, "a" * 36, "github_token"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "MIIE", "private_key"),
    ('{"password": "hunter22"}', "hunter22", "password_assignment"),
    ("login?user=bob&password=hunter22&x=1", "hunter22", "password_assignment"),
    ("api_key: abc123secret", "abc123secret", "password_assignment"),
]


@pytest.mark.parametrize(("text", "secret", "kind"), CASES)
def test_secrets_are_masked_and_detected(text: str, secret: str, kind: str) -> None:
    masked = redact(text)
    assert secret not in masked
    assert "***" in masked or "REDACTED" in masked
    assert kind in find_secrets(text)


def test_ordinary_text_is_left_alone() -> None:
    text = "Ask the skeptic about the task-runner; password reset needs an e-mail. 2+2=4"
    assert redact(text) == text
    assert find_secrets(text) == []


def test_redaction_is_idempotent_and_keeps_context() -> None:
    once = redact(f"user=bob password=hunter22 token {API_KEY}")
    assert redact(once) == once
    assert once.startswith("user=bob password=")


def test_an_anthropic_key_is_not_also_reported_as_an_openai_key() -> None:
    assert find_secrets("sk-ant-api03-abcdefghijklmnopqrst") == ["anthropic_api_key"]
