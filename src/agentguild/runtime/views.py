"""How runs look in API responses."""

from __future__ import annotations

from datetime import UTC, datetime

from ..store.models import Run
from ..types import JSONObject


def run_view(run: Run) -> JSONObject:
    """A stored run as the API shows it (`GET /api/runs/{id}` and every `run` field)."""
    return {
        "id": run.id,
        "conversation_id": run.conversation_id,
        "agent_id": run.agent_id,
        "agent_version": run.agent_version,
        "status": run.status,
        "mode": run.mode,
        "error": run.error,
        "usage": {
            "prompt_tokens": run.prompt_tokens or 0,
            "completion_tokens": run.completion_tokens or 0,
        },
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }


def iso(moment: datetime | None) -> str | None:
    """An ISO-8601 UTC timestamp (`...Z`); SQLite's naive datetimes are UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
