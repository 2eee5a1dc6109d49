"""`agentguild serve` and `agentguild db ...`: the HTTP server and its database."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from ..config import Settings

db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)

_err = Console(stderr=True)


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default from settings).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default from settings).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes (each a full server).")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    config: Annotated[Path | None, typer.Option(help="Config file.", dir_okay=False)] = None,
) -> None:
    """Start the HTTP server: API, OpenAI-compatible /v1, and the web UI at /."""
    import uvicorn

    from ..config import load_settings
    from ..server import create_app
    from ..server.logging import configure_logging

    settings = load_settings(config)
    bind_host = host or settings.server.host
    bind_port = port if port is not None else settings.server.port
    _announce(settings, bind_host, bind_port)
    configure_logging(log_level.upper())
    target = "agentguild.server.app:create_app" if workers > 1 else create_app(settings)
    uvicorn.run(
        target,
        factory=workers > 1,
        workers=workers if workers > 1 else None,
        host=bind_host,
        port=bind_port,
        access_log=False,
        log_config=None,
        proxy_headers=True,
        log_level=log_level.lower(),
    )


def _announce(settings: Settings, host: str, port: int) -> None:
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    login = settings.security.admin_username
    password_hint = (
        "the password in AGENTGUILD_SECURITY__ADMIN_PASSWORD"
        if settings.security.admin_password is not None
        else "the password printed below on first start (or the one you set)"
    )
    _err.print(
        f"[bold]agentguild[/] serving on [link]http://{shown_host}:{port}/[/link]  "
        f"(API docs: /docs, OpenAI-compatible: /v1)\n"
        f"  log in as [bold]{login}[/] with {password_hint}\n"
        f"  database: {_safe_url(settings.database.url)}; default model: {settings.default_model}",
        highlight=False,
    )


def _safe_url(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    config: Annotated[Path | None, typer.Option(help="Config file.", dir_okay=False)] = None,
) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from ..config import load_settings
    from ..store import current_revision, upgrade

    url = load_settings(config).database.url
    upgrade(url, revision)
    _err.print(f"database {_safe_url(url)} is at revision {current_revision(url)}")


@db_app.command("current")
def db_current(
    config: Annotated[Path | None, typer.Option(help="Config file.", dir_okay=False)] = None,
) -> None:
    """Print the database's migration revision (nothing if it was never migrated)."""
    from ..config import load_settings
    from ..store import current_revision

    revision = current_revision(load_settings(config).database.url)
    sys.stdout.write(f"{revision or ''}\n")
