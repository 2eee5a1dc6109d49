"""Password hashing with argon2id. Hashing is deliberately slow: on the event loop use the
async versions, which run in a worker thread."""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 low-memory defaults


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (self-describing: algorithm, parameters, salt)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if `password` matches `password_hash`; False for a mismatch or a malformed hash.

    Pass None for an unknown user: a dummy hash is checked instead, so the time taken does
    not reveal which usernames exist.
    """
    try:
        matched = _hasher.verify(password_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """True if the hash uses weaker parameters than the current ones (rehash at next login)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


async def ahash_password(password: str) -> str:
    """`hash_password` in a worker thread."""
    return await asyncio.to_thread(hash_password, password)


async def averify_password(password_hash: str | None, password: str) -> bool:
    """`verify_password` in a worker thread."""
    return await asyncio.to_thread(verify_password, password_hash, password)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("agentguild-dummy-password")
