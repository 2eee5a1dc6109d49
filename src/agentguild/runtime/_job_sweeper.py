"""Sending again the jobs whose broker send never happened.

A job is stored before its id goes to the broker. If the send fails (the broker is down)
or the sender dies in between, the job would wait `queued` forever; the sweeper of every
server finds such jobs (queued, not sent since they were queued, for a grace period) and
sends them. A claim in the database lets one sweeper send each job, and a sweeper dying
between its claim and its send leaves the job to the next sweep after the grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .._aio import unbroken
from .._platform_settings import QueueSettings
from ..store.queue_models import QueueJob
from ._job_store import JobStore

logger = logging.getLogger(__name__)

SendJob = Callable[[QueueJob], Awaitable[bool]]
"""Sends one job's id to the broker and records it; False if the broker refused."""


class UnsentSweeper:
    """Finds and sends unsent jobs, every `settings.sweep_interval_s` while `run` runs."""

    def __init__(self, store: JobStore, send: SendJob, settings: QueueSettings) -> None:
        self.store = store
        self.send = send
        self.settings = settings

    async def sweep(self) -> int:
        """Send the jobs unsent for `settings.resend_after_s`; how many were sent."""
        jobs = await self.store.claim_unsent(self.settings.resend_after_s)
        for sent, job in enumerate(jobs):
            if not await self.send(job):
                # The broker is down: the rest are claimed again after the grace period.
                return sent
            logger.info("queue.job_resent", extra={"job_id": job.id, "queue": job.queue})
        return len(jobs)

    async def run(self) -> None:
        """Sweep until cancelled; a failed sweep (the database is down) is logged and the
        next one tries again."""
        while True:
            try:
                await unbroken(self.sweep())  # not cut off mid-commit by a shutdown
            except Exception:
                logger.exception("queue.sweep_failed")
            await asyncio.sleep(self.settings.sweep_interval_s)
