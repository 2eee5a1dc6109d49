"""The queue job a background run becomes when runs go to queue workers."""

from __future__ import annotations

from typing import Any

from ..security import Principal

RUN_JOB = "run.execute"
"""The job name of a background run; payload `{"run_id", "tenant_id", "role", "user_id"}`."""


def run_job_payload(principal: Principal, run_id: str) -> dict[str, Any]:
    """The `run.execute` payload of a run started by `principal`."""
    return {
        "run_id": run_id,
        "tenant_id": principal.tenant_id,
        "role": principal.role.value,
        "user_id": principal.user_id,
    }


def run_job_key(run_id: str) -> str:
    """The idempotency key of a run's job: one job per run, however often it is sent."""
    return f"run:{run_id}"
