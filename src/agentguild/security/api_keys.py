"""API keys: `ag_` + 256 random bits. Only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import re
import secrets

PREFIX = "ag_"
_PREFIX_SHOWN = 10
_KEY_RE = re.compile(r"^ag_[A-Za-z0-9_-]{43}$")


def generate_api_key() -> tuple[str, str, str]:
    """A new key as (plaintext, display prefix, SHA-256 hex). Show the plaintext once."""
    plaintext = PREFIX + secrets.token_urlsafe(32)
    return plaintext, plaintext[:_PREFIX_SHOWN], hash_api_key(plaintext)


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest a key is stored and looked up by.

    A fast hash is safe here: keys are 256-bit random, so they cannot be guessed offline.
    """
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(token: str) -> bool:
    """True if a bearer token has the shape of our API keys (else try it as a JWT)."""
    return _KEY_RE.fullmatch(token) is not None
