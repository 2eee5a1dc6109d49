"""Find and mask secrets in text: for logs (never log a secret) and for flagging input."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    mask: Callable[[re.Match[str]], str]


def _fixed(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: text


def _keep_group(group: int, suffix: str = "***") -> Callable[[re.Match[str]], str]:
    return lambda match: match.group(group) + suffix


_RULES: tuple[_Rule, ...] = (
    _Rule(
        "private_key",
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        _fixed("[REDACTED PRIVATE KEY]"),
    ),
    _Rule(
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
        _fixed("[REDACTED JWT]"),
    ),
    _Rule(
        "bearer_token",
        re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
        _keep_group(1),
    ),
    _Rule("agentguild_api_key", re.compile(r"\bag_[A-Za-z0-9_-]{16,}"), _fixed("ag_***")),
    _Rule("anthropic_api_key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{16,}"), _fixed("sk-ant-***")),
    _Rule("openai_api_key", re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), _fixed("sk-***")),
    _Rule("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), _fixed("AKIA***")),
    _Rule("github_token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), _fixed("gh_***")),
    _Rule("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), _fixed("xox-***")),
    _Rule("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}"), _fixed("AIza***")),
    _Rule(
        "password_assignment",
        re.compile(
            r"(?i)\b((?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)"
            r"[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*)[^\s\"'&,;}]{3,}"
        ),
        _keep_group(1),
    ),
)


def redact(text: str) -> str:
    """`text` with anything that looks like a secret masked (keys, tokens, passwords)."""
    for rule in _RULES:
        text = rule.pattern.sub(rule.mask, text)
    return text


def find_secrets(text: str) -> list[str]:
    """The kinds of secrets `text` appears to contain, e.g. `["openai_api_key"]`.

    For flagging user input; a match is a heuristic, not proof.
    """
    found: list[str] = []
    for rule in _RULES:
        if rule.pattern.search(text):
            found.append(rule.kind)
            text = rule.pattern.sub("", text)  # an sk-ant- key is not also an sk- key
    return found
