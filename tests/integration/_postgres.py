"""Throwaway PostgreSQL databases for integration tests: created on the machine's server,
dropped afterwards; nothing else on the server is touched."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from sqlalchemy.engine import make_url


def database_url(server_url: str, database: str) -> str:
    """`server_url` (postgresql://...) pointed at `database`, with the asyncpg driver."""
    url = make_url(server_url).set(drivername="postgresql+asyncpg", database=database)
    return url.render_as_string(hide_password=False)


def admin_statement(server_url: str, statement: str) -> None:
    """Run one statement on the PostgreSQL server (CREATE/DROP DATABASE)."""

    async def run() -> None:
        connection = await asyncpg.connect(server_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def create_database(server_url: str, prefix: str) -> str:
    """A new, empty database `<prefix>_<random>`; its name."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin_statement(server_url, f'CREATE DATABASE "{name}"')
    return name


def drop_database(server_url: str, name: str) -> None:
    admin_statement(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new PostgreSQL database (its asyncpg URL), dropped afterwards."""
    name = create_database(server_url, prefix)
    try:
        yield database_url(server_url, name)
    finally:
        drop_database(server_url, name)
