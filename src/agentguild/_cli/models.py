"""The `agentguild models` table: what is configured, and whether it is usable."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from ..config import ModelConfig, Settings


def models_table(settings: Settings) -> Table:
    """A table of the configured models: name, provider, model, base URL, API key source.

    Shows where each key comes from and whether it is set, never the key itself.
    """
    source = str(settings.config_file) if settings.config_file else "no config file"
    table = Table(title="Configured models", caption=f"* default model · {source}")
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("provider", no_wrap=True)
    table.add_column("model", overflow="fold")
    table.add_column("base URL", overflow="fold")
    table.add_column("API key", overflow="fold")
    for name, config in settings.models.items():
        marker = " *" if name == settings.default_model else ""
        table.add_row(name + marker, config.provider, *_describe(config))
    return table


def _describe(config: ModelConfig) -> tuple[str, str, Text]:
    """The model, base URL and API-key cells for one model."""
    if config.provider == "openai":
        return config.model, config.base_url, _key_status(config.api_key_env, config.api_key)
    if config.provider == "local":
        from ..llm.registry import local_model_available

        model = config.model_path or "SmolLM2-135M-Instruct (bundled)"
        if not local_model_available():
            model += " — not installed"
        return model, "(in-process)", Text("-", style="dim")
    return f"{len(config.replies)} scripted replies", "(in-process)", Text("-", style="dim")


def _key_status(variable: str | None, inline: object | None) -> Text:
    if inline is not None:
        return Text("from AGENTGUILD_MODELS__…__API_KEY", style="green")
    if variable is None:
        return Text("none", style="dim")
    if os.environ.get(variable, "").strip():
        return Text(f"${variable} (set)", style="green")
    return Text(f"${variable} (not set)", style="red")
