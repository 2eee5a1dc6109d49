"""First-start bootstrap: default tenant, admin and assistant, exactly once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentguild._platform_settings import DatabaseSettings, SecuritySettings
from agentguild.runtime.agent_config import AssistantConfig
from agentguild.security import Principal, Role, bootstrap, verify_password
from agentguild.store import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'ag.db'}"))
    await database.start()
    yield database
    await database.close()


async def test_first_start_creates_tenant_admin_and_assistant(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    result = await bootstrap(db, SecuritySettings(admin_username="root"), "qwen-plus")

    assert result.created
    assert result.generated_password is not None
    assert result.generated_password not in caplog.text
    assert result.generated_password not in repr(result)
    assert result.tenant_id is not None
    async with db.system() as system:
        admin = await system.user_by_username("root")
        tenant = await system.get_tenant(result.tenant_id)
    assert admin is not None
    assert (admin.role, admin.tenant_id, admin.id) == (
        "admin",
        result.tenant_id,
        result.admin_user_id,
    )
    assert verify_password(admin.password_hash, result.generated_password)
    assert tenant is not None
    assert tenant.name == "default"
    async with db.repos(Principal(tenant_id=result.tenant_id, role=Role.ADMIN)) as repos:
        agent = await repos.agents.get_by_name("assistant")
    assert agent is not None
    assert agent.id == result.agent_id
    config = AssistantConfig.model_validate(agent.config)
    assert (config.model, config.tools) == ("qwen-plus", ["calculator"])
    assert config.system_prompt is not None
    assert "calculator" in config.system_prompt


async def test_later_starts_change_nothing(db: Database) -> None:
    first = await bootstrap(db, SecuritySettings(), "local")
    second = await bootstrap(db, SecuritySettings(admin_password="other"), "local")

    assert first.created
    assert not second.created
    assert second.generated_password is None
    async with db.system() as system:
        assert await system.tenant_count() == 1


async def test_configured_admin_password_is_used_and_not_returned(db: Database) -> None:
    result = await bootstrap(db, SecuritySettings(admin_password="Sup3r-secret"), "local")

    assert result.created
    assert result.generated_password is None
    async with db.system() as system:
        admin = await system.user_by_username("admin")
    assert admin is not None
    assert verify_password(admin.password_hash, "Sup3r-secret")
