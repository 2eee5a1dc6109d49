"""Passwords, access tokens, API keys and the token-signing secret."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest

from agentguild._platform_settings import SecuritySettings
from agentguild.errors import AgentguildError, ConfigError
from agentguild.security import (
    AuthError,
    Principal,
    Role,
    ahash_password,
    averify_password,
    decode_token,
    generate_api_key,
    hash_api_key,
    hash_password,
    issue_token,
    load_or_create_jwt_secret,
    looks_like_api_key,
    verify_password,
)

SECRET = "test-secret-" + "x" * 40
ALICE = Principal(tenant_id="tnt_1", role=Role.DEVELOPER, user_id="usr_1", username="alice")


def test_password_hash_is_argon2id_and_verifies_only_the_right_password() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "wrong horse")
    assert hash_password("correct horse") != hashed  # salted


def test_unknown_user_and_malformed_hash_never_verify() -> None:
    assert not verify_password(None, "agentguild-dummy-password")
    assert not verify_password("not-a-hash", "anything")


async def test_async_password_functions_match_the_sync_ones() -> None:
    hashed = await ahash_password("pw")
    assert await averify_password(hashed, "pw")
    assert not await averify_password(hashed, "nope")


def test_token_round_trips_the_principal() -> None:
    token = issue_token(ALICE, SECRET, ttl_s=60)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert decode_token(token, SECRET) == ALICE
    assert {"sub", "tid", "role", "exp", "iat", "jti"} <= claims.keys()
    assert claims["exp"] - claims["iat"] == 60


def test_token_expires_after_its_ttl() -> None:
    token = issue_token(ALICE, SECRET, ttl_s=60, now=lambda: 1_000_000.0)
    assert decode_token(token, SECRET, now=lambda: 1_000_059.0) == ALICE
    with pytest.raises(AuthError, match="expired"):
        decode_token(token, SECRET, now=lambda: 1_000_100.0)


def test_tokens_are_unique_even_within_one_second() -> None:
    assert issue_token(ALICE, SECRET, 60, now=lambda: 5.0) != issue_token(
        ALICE, SECRET, 60, now=lambda: 5.0
    )


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (issue_token(ALICE, "another-secret-" + "y" * 40, 60), "signature"),
        ("not.a.jwt", "invalid token"),
        ("", "invalid token"),
        (jwt.encode({"sub": "usr_1", "exp": 2**40}, SECRET, algorithm="HS256"), "invalid token"),
        (
            jwt.encode(
                {"sub": "u", "tid": "t", "role": "god", "exp": 2**40, "iat": 0, "jti": "j"},
                SECRET,
                algorithm="HS256",
            ),
            "unknown role",
        ),
    ],
)
def test_bad_tokens_raise_auth_error(token: str, message: str) -> None:
    with pytest.raises(AuthError, match=message) as caught:
        decode_token(token, SECRET)
    assert isinstance(caught.value, AgentguildError)


def test_unsigned_tokens_are_refused() -> None:
    claims = {"sub": "u", "tid": "t", "role": "admin", "exp": 2**40, "iat": 0, "jti": "j"}
    forged = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(AuthError):
        decode_token(forged, SECRET)


def test_tokens_are_only_issued_to_users() -> None:
    with pytest.raises(ValueError, match="user_id"):
        issue_token(Principal(tenant_id="t", role=Role.USER, api_key_id="key_1"), SECRET, 60)


def test_generated_api_key_has_its_prefix_and_hash() -> None:
    plaintext, prefix, key_hash = generate_api_key()
    assert plaintext.startswith("ag_")
    assert plaintext.startswith(prefix)
    assert len(prefix) < len(plaintext) // 2
    assert key_hash == hash_api_key(plaintext)
    assert len(key_hash) == 64
    assert looks_like_api_key(plaintext)
    assert generate_api_key()[0] != plaintext


@pytest.mark.parametrize("token", ["eyJhbGciOi.eyJzdWIi.sig", "ag_short", "sk-abc", ""])
def test_other_tokens_do_not_look_like_api_keys(token: str) -> None:
    assert not looks_like_api_key(token)


def test_configured_jwt_secret_is_used(tmp_path: Path) -> None:
    settings = SecuritySettings(jwt_secret="z" * 40)
    assert load_or_create_jwt_secret(settings, tmp_path) == "z" * 40
    assert not (tmp_path / "jwt_secret").exists()


def test_short_configured_jwt_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        load_or_create_jwt_secret(SecuritySettings(jwt_secret="short"), tmp_path)


def test_generated_jwt_secret_is_private_and_stable(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_or_create_jwt_secret(SecuritySettings(), data_dir)
    second = load_or_create_jwt_secret(SecuritySettings(), data_dir)
    assert first == second
    assert len(first) >= 60
    assert stat.S_IMODE((data_dir / "jwt_secret").stat().st_mode) == 0o600
