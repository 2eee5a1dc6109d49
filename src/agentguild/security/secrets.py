"""The key that signs access tokens: configured, or generated once and kept on disk."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .._platform_settings import SecuritySettings
from ..errors import ConfigError

SECRET_FILE = "jwt_secret"


def load_or_create_jwt_secret(settings: SecuritySettings, data_dir: Path) -> str:
    """`settings.jwt_secret` if set, else the secret in `data_dir/jwt_secret`.

    The file is created on first use (48 random bytes, URL-safe, mode 0600). Set the
    secret explicitly when several instances must accept each other's tokens.
    """
    if settings.jwt_secret is not None:
        value = settings.jwt_secret.get_secret_value()
        if len(value) < 32:
            raise ConfigError(
                "security.jwt_secret is too short: use at least 32 random characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        return value
    path = Path(data_dir) / SECRET_FILE
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # O_EXCL: if another process created it meanwhile, use theirs.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value
