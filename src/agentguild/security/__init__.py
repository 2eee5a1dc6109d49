"""Authentication and authorisation: principals and roles, passwords, tokens, API keys,
first-start bootstrap and secret redaction."""

from .api_keys import generate_api_key, hash_api_key, looks_like_api_key
from .bootstrap import BootstrapResult, bootstrap
from .errors import AuthError
from .passwords import ahash_password, averify_password, hash_password, verify_password
from .principal import ROLE_PERMISSIONS, Permission, Principal, Role
from .redact import find_secrets, redact
from .secrets import load_or_create_jwt_secret
from .tokens import decode_token, issue_token

__all__ = [
    "ROLE_PERMISSIONS",
    "AuthError",
    "BootstrapResult",
    "Permission",
    "Principal",
    "Role",
    "ahash_password",
    "averify_password",
    "bootstrap",
    "decode_token",
    "find_secrets",
    "generate_api_key",
    "hash_api_key",
    "hash_password",
    "issue_token",
    "load_or_create_jwt_secret",
    "looks_like_api_key",
    "redact",
    "verify_password",
]
