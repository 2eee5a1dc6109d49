"""Dead letters and jobs over HTTP: list, show, re-drive, job status, tenant walls.

Jobs fail for real: a handler registered on the app's running in-process queue raises
`PermanentJobError` (dead-lettered at once, no retries) the first time it runs for a job,
and succeeds when the job is re-driven. Waiting uses the queue's own `join`, never sleeps.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from e2e_helpers import PASSWORD, Caller, World, assert_error, login, unique

from agentguild.runtime.queue import DeadLetterView, InProcessQueue, JobContext, PermanentJobError
from agentguild.security import Principal, Role

DL = "/api/admin/dead-letters"
JOBS = "/api/admin/jobs"


class FailsOnce:
    """Fails for good on a job's first run; returns the job's payload on the next."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()

    async def __call__(self, ctx: JobContext) -> dict[str, Any]:
        self.runs[ctx.job_id] += 1
        if self.runs[ctx.job_id] == 1:
            raise PermanentJobError(f"cannot build report {ctx.payload['report']}")
        return {"built": ctx.payload["report"]}


@dataclass
class Failed:
    """A job that failed for good, and its handler."""

    job_id: str
    letter: DeadLetterView
    handler: FailsOnce


def _queue(world: World) -> InProcessQueue:
    queue = world.services.queue  # type: ignore[attr-defined]
    assert isinstance(queue, InProcessQueue)
    return queue


async def failed_job(world: World, tenant_id: str | None, report: str = "q3") -> Failed:
    """Run a job of `tenant_id` (None: a system job) to its dead letter."""
    queue = _queue(world)
    name = unique("report.build")
    handler = FailsOnce()
    queue.executor.registry.handler(name)(handler)
    job_id = await queue.enqueue(name, {"report": report}, tenant_id=tenant_id)
    await queue.join()
    letters = await queue.dead_letters(200, tenant_id=tenant_id)
    [letter] = [letter for letter in letters if letter.job_id == job_id]
    return Failed(job_id, letter, handler)


async def new_tenant_admin(world: World) -> Caller:
    """The admin of a new tenant, logged in (a tenant with no jobs yet)."""
    services = world.services
    async with services.db.system() as system:  # type: ignore[attr-defined]
        tenant = await system.create_tenant(unique("jobs"))
    async with services.db.repos(Principal(tenant.id, Role.ADMIN)) as repos:  # type: ignore[attr-defined]
        user = await repos.users.create(unique("jobs-admin"), PASSWORD, Role.ADMIN)
    caller = Caller(tenant.id, Role.ADMIN, user.username, user.id)
    caller.token = await login(world.client, user.username, PASSWORD)
    return caller


async def test_a_dead_letter_is_listed_shown_and_redriven_once(world: World) -> None:
    admin = world.home[Role.ADMIN]
    failed = await failed_job(world, admin.tenant_id)
    client, headers, letter_id = world.client, admin.headers, failed.letter.id

    listed = await client.get(DL, headers=headers)
    shown = await client.get(f"{DL}/{letter_id}", headers=headers)
    redriven = await client.post(f"{DL}/{letter_id}/redrive", headers=headers)
    await _queue(world).join()
    job = await client.get(f"{JOBS}/{failed.job_id}", headers=headers)
    again = await client.post(f"{DL}/{letter_id}/redrive", headers=headers)
    pending = await client.get(DL, headers=headers)
    everything = await client.get(DL, headers=headers, params={"include_redriven": "true"})
    after = await client.get(f"{DL}/{letter_id}", headers=headers)

    assert listed.status_code == 200, listed.text
    [item] = [d for d in listed.json()["items"] if d["id"] == letter_id]
    assert item["job_id"] == failed.job_id
    assert item["error"] == "PermanentJobError: cannot build report q3"
    assert (item["attempts"], item["redriven_at"]) == (1, None)
    assert shown.status_code == 200, shown.text
    assert shown.json()["job"]["payload"] == {"report": "q3"}
    assert shown.json()["job"]["status"] == "dead"
    assert redriven.status_code == 202, redriven.text
    assert redriven.json()["id"] == failed.job_id
    assert job.status_code == 200, job.text
    assert job.json()["status"] == "completed"
    assert (job.json()["completions"], job.json()["error"]) == (1, None)
    assert job.json()["result"] == {"built": "q3"}
    assert failed.handler.runs[failed.job_id] == 2
    assert_error(again, 409, "conflict")
    assert letter_id not in {d["id"] for d in pending.json()["items"]}
    [old] = [d for d in everything.json()["items"] if d["id"] == letter_id]
    assert old["redriven_at"] is not None
    assert after.json()["redriven_at"] == old["redriven_at"]
    assert after.json()["job"]["status"] == "completed"


async def test_another_tenants_dead_letters_and_jobs_do_not_exist_for_you(world: World) -> None:
    home, stranger = world.home[Role.ADMIN], world.foreign[Role.ADMIN]
    failed = await failed_job(world, home.tenant_id)
    client, letter_id = world.client, failed.letter.id

    listed = await client.get(DL, headers=stranger.headers, params={"include_redriven": True})
    shown = await client.get(f"{DL}/{letter_id}", headers=stranger.headers)
    redriven = await client.post(f"{DL}/{letter_id}/redrive", headers=stranger.headers)
    job = await client.get(f"{JOBS}/{failed.job_id}", headers=stranger.headers)

    assert listed.status_code == 200, listed.text
    assert letter_id not in listed.text
    assert failed.job_id not in listed.text
    assert_error(shown, 404, "not_found")
    assert_error(redriven, 404, "not_found")
    assert_error(job, 404, "not_found")
    still = await client.get(f"{DL}/{letter_id}", headers=home.headers)
    assert (still.json()["redriven_at"], still.json()["job"]["status"]) == (None, "dead")
    assert failed.handler.runs[failed.job_id] == 1


async def test_system_jobs_without_a_tenant_are_never_visible(world: World) -> None:
    admin = world.home[Role.ADMIN]
    failed = await failed_job(world, None)
    client, letter_id = world.client, failed.letter.id

    listed = await client.get(DL, headers=admin.headers, params={"include_redriven": True})
    shown = await client.get(f"{DL}/{letter_id}", headers=admin.headers)
    redriven = await client.post(f"{DL}/{letter_id}/redrive", headers=admin.headers)
    job = await client.get(f"{JOBS}/{failed.job_id}", headers=admin.headers)

    assert letter_id not in listed.text
    assert_error(shown, 404, "not_found")
    assert_error(redriven, 404, "not_found")
    assert_error(job, 404, "not_found")


@pytest.mark.parametrize("role", [Role.USER, Role.VIEWER])
async def test_roles_without_jobs_manage_are_forbidden(world: World, role: Role) -> None:
    failed = await failed_job(world, world.home[role].tenant_id)
    headers = world.home[role].headers
    letter_id = failed.letter.id

    answers = [
        await world.client.get(DL, headers=headers),
        await world.client.get(f"{DL}/{letter_id}", headers=headers),
        await world.client.post(f"{DL}/{letter_id}/redrive", headers=headers),
        await world.client.get(f"{JOBS}/{failed.job_id}", headers=headers),
    ]

    for answer in answers:
        assert_error(answer, 403, "forbidden")
    assert failed.handler.runs[failed.job_id] == 1


async def test_developers_manage_their_tenants_dead_letters(world: World) -> None:
    developer = world.home[Role.DEVELOPER]
    failed = await failed_job(world, developer.tenant_id)

    redriven = await world.client.post(
        f"{DL}/{failed.letter.id}/redrive", headers=developer.headers
    )

    assert redriven.status_code == 202, redriven.text


def _cursor(*values: object) -> str:
    raw = json.dumps(values).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type"),
    [
        ("GET", f"{DL}/no-such-letter", 404, "not_found"),
        ("POST", f"{DL}/no-such-letter/redrive", 404, "not_found"),
        ("GET", f"{JOBS}/no-such-job", 404, "not_found"),
        ("GET", f"{DL}/-bad", 422, "validation_error"),
        ("GET", f"{DL}/{'x' * 101}", 422, "validation_error"),
        ("POST", f"{DL}/bad%20id/redrive", 422, "validation_error"),
        ("GET", f"{JOBS}/%00", 422, "validation_error"),
        ("GET", f"{DL}?limit=0", 422, "validation_error"),
        ("GET", f"{DL}?limit=201", 422, "validation_error"),
        ("GET", f"{DL}?include_redriven=maybe", 422, "validation_error"),
        ("GET", f"{DL}?cursor=not%20base64", 422, "validation_error"),
        ("GET", f"{DL}?cursor=abc", 400, "invalid_cursor"),
        ("GET", f"{DL}?cursor={_cursor('yesterday', 'dlq_1')}", 400, "invalid_cursor"),
        ("GET", f"{DL}?cursor={_cursor('2026-01-01T00:00:00', 'dlq_1')}", 400, "invalid_cursor"),
        ("GET", f"{DL}?cursor={_cursor('2026-01-01T00:00:00+00:00', 5)}", 400, "invalid_cursor"),
        ("PUT", f"{DL}/no-such-letter", 405, "method_not_allowed"),
    ],
)
async def test_bad_requests_are_refused_with_a_clear_error(
    world: World, method: str, path: str, status: int, error_type: str
) -> None:
    response = await world.client.request(method, path, headers=world.home[Role.ADMIN].headers)

    assert_error(response, status, error_type)


async def test_pages_of_one_walk_every_dead_letter_newest_first(world: World) -> None:
    admin = await new_tenant_admin(world)
    letters = [(await failed_job(world, admin.tenant_id, f"r{n}")).letter.id for n in range(3)]
    redriven = await world.client.post(f"{DL}/{letters[1]}/redrive", headers=admin.headers)
    assert redriven.status_code == 202, redriven.text
    await _queue(world).join()

    async def walk(**params: Any) -> tuple[list[str], int]:
        seen: list[str] = []
        cursor, pages = None, 0
        while True:
            query = {"limit": 1, **params, **({"cursor": cursor} if cursor else {})}
            page = await world.client.get(DL, headers=admin.headers, params=query)
            assert page.status_code == 200, page.text
            assert len(page.json()["items"]) <= 1
            seen += [item["id"] for item in page.json()["items"]]
            pages += 1
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return seen, pages

    everything, pages = await walk(include_redriven=True)
    pending, _ = await walk()
    full = await world.client.get(DL, headers=admin.headers, params={"include_redriven": True})

    assert everything == [item["id"] for item in full.json()["items"]]
    assert set(everything) == set(letters)
    assert pages == len(letters)
    created = [item["created_at"] for item in full.json()["items"]]
    assert created == sorted(created, reverse=True)
    assert pending == [letter for letter in everything if letter != letters[1]]
