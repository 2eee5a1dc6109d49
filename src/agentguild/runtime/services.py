"""The long-lived objects the server shares between requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import Settings
from ..llm.stack import Gateway
from ..store.db import Database
from ..store.usage_writer import UsageWriter
from ..tools.base import Tool
from .agent_factory import AgentFactory, ModelProvider
from .catalog import AgentCatalog
from .limits import RunLimits
from .runner import Runner


@dataclass(slots=True)
class Services:
    """Settings, database, agents and runner of one server process.

    ```python
    services = await Services.start(settings)   # in the app's lifespan
    ...
    await services.aclose()
    ```
    """

    settings: Settings
    db: Database
    factory: AgentFactory
    """Builds agents from stored configurations (models, tools); validates configurations."""
    catalog: AgentCatalog
    """Each tenant's agents, cached; call `catalog.invalidate(tenant_id)` after changes."""
    runner: Runner
    usage_writer: UsageWriter
    """Batched usage records (the `/v1` path and runs record usage through it)."""
    gateway: Gateway | None = None
    """The configured models' gateway stacks (cache, routing, retries, limits, metering);
    None when the models come from a custom `model_provider`."""

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        db: Database | None = None,
        model_provider: ModelProvider | None = None,
        tools: Mapping[str, Tool] | None = None,
        limits: RunLimits | None = None,
    ) -> Services:
        """Connect the database (migrating it if configured), mark runs a dead process left
        behind `interrupted`, and build the agent catalog and runner.

        `model_provider` builds models by name (default: the configured models, each in
        its gateway stack: see `agentguild.llm.stack`);
        `tools` are the tools agent configurations may name (default: the built-in ones);
        `limits` are the default per-tenant limits (a tenant's settings may override them).
        """
        db = db or Database(settings.database)
        await db.start()
        usage_writer = UsageWriter(db)
        await usage_writer.start()
        gateway = None
        if model_provider is None:
            gateway = Gateway(settings)
            model_provider = gateway.model
        factory = AgentFactory(settings, tools=tools, model_provider=model_provider)
        catalog = AgentCatalog(db, factory)
        runner = Runner(db, catalog, usage_writer=usage_writer, limits=limits)
        await runner.recover()
        return cls(settings, db, factory, catalog, runner, usage_writer, gateway)

    async def aclose(self) -> None:
        """Stop active runs (marked `interrupted`), write pending usage, close models and
        the database."""
        await self.runner.aclose()
        await self.usage_writer.close()
        await self.factory.aclose()
        if self.gateway is not None:
            await self.gateway.aclose()
        await self.db.close()
