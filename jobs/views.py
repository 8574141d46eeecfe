"""Reading jobs for callers: ownership checks, the public shape of a job, cancel and status (pure-ish).

A job that is not the caller's is "not found" (404), never "forbidden": the answer must not reveal
that someone else's job exists.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from api import StatusQuery
from auth import Caller
from errors import ApiError, not_found
from jobs.model import Job, TaskRecord
from jobs.store import JobStore
from logs import get_logger
from providers.base import Provider, ProviderError, ProviderSnapshot, Status, is_terminal

log = get_logger("jobs.views")

# A non-terminal job is looked up at its provider when its task record is older than this.
STALE_AFTER = timedelta(seconds=5)


def visible_to(job: Job | None, caller: Caller, ops_accounts: Collection[str]) -> bool:
    if job is None:
        return False
    return caller.is_service_account(ops_accounts) or (caller.is_user and caller.uid == job.owner_uid)


def needs_refresh(job: Job, task: TaskRecord | None, now: datetime) -> bool:
    """True when a live job's task was last checked long enough ago to ask the provider again."""
    if task is None or is_terminal(job.status) or is_terminal(task.status):
        return False
    checked = task.doc.get("lastCheckedAt") or task.doc.get("createdAt")
    return checked is None or now - checked >= STALE_AFTER


Links = Callable[[str], Mapping[str, Any] | None]  # object path -> {"url", "expiresAt"} or None


def job_view(job: Job, links: Links | None = None) -> dict[str, Any]:
    """What callers see of a job (no owner internals, no prompt text, no idempotency key).

    With `links` (storage configured) a stored output carries time-limited download links.
    """
    doc = job.doc
    return {
        "jobId": job.job_id,
        "status": str(job.status),
        "progress": job.progress,
        "provider": job.provider,
        "providerTaskId": doc.get("providerTaskId"),
        "attempts": [
            {
                "number": a.number,
                "provider": a.provider,
                "status": str(a.status),
                "taskId": a.task_id,
                "error": _error(a.error),
            }
            for a in job.attempts
        ],
        "selection": doc.get("selection", {}),
        "qualityScore": doc.get("prompt", {}).get("qualityScore"),
        "output": _output(doc.get("output"), links),
        "error": _error(doc.get("error")),
        "estimatedCostUsd": doc.get("estimatedCostUsd"),
        "actualCostUsd": doc.get("actualCostUsd"),
        "createdAt": doc.get("createdAt"),
        "updatedAt": doc.get("updatedAt"),
        "deadlineAt": doc.get("deadlineAt"),
        "endedAt": doc.get("endedAt"),
    }


def _output(output: Any, links: Links | None) -> Any:
    if not output or links is None or output.get("source") != "storage":
        return output
    gif = output.get("gifPath")
    return {**output, "download": links(output["videoPath"]), "gifDownload": links(gif) if gif else None}


def _error(error: Any) -> dict[str, Any] | None:
    if not error:
        return None
    return {"code": error.get("code"), "message": error.get("message")}


def owned_job(store: JobStore, caller: Caller, job_id: str, ops_accounts: Collection[str]) -> Job:
    job = store.get_job(job_id)
    if job is None or not visible_to(job, caller, ops_accounts):
        raise not_found()
    return job


def cancel(store: JobStore, providers: Mapping[str, Provider], caller: Caller, job_id: str) -> Job:
    """Cancel the caller's job at its provider and in the store; harmless to repeat.

    A job already cancelled answers with itself; any other terminal job is a 409 with its status.
    HeyGen cannot stop a render: its record is closed and the result ignored when it arrives.
    """
    job = owned_job(store, caller, job_id, ())
    if is_terminal(job.status):
        if job.status is Status.CANCELLED:
            return job
        raise ApiError(
            409, "job_finished", f"the job has already ended: {job.status}", jobStatus=str(job.status)
        )
    job, changed = store.finish_job(job_id, Status.CANCELLED, {"code": "cancelled", "message": "cancelled"})
    attempt = job.current_attempt
    if changed and attempt is not None and attempt.task_id is not None:
        stop_task(store, providers[attempt.provider], attempt.provider, attempt.task_id)
    elif not changed and job.status is not Status.CANCELLED:
        raise ApiError(
            409, "job_finished", f"the job has already ended: {job.status}", jobStatus=str(job.status)
        )
    return job


def stop_task(store: JobStore, provider: Provider, name: str, task_id: str) -> None:
    """Cancel a task at its provider (best effort) and close its record."""
    try:
        provider.cancel(task_id)
    except ProviderError as exc:
        log.warning("provider cancel failed", extra={"provider": name, "taskId": task_id, "code": exc.code})
    snapshot = ProviderSnapshot(task_id=task_id, status=Status.CANCELLED, provider_status="CANCELLED_BY_USER")
    store.apply_snapshot(name, task_id, snapshot)


def status(
    store: JobStore,
    caller: Caller,
    query: StatusQuery,
    *,
    ops_accounts: Collection[str],
    refresh: Callable[[str, str], object],
    now: datetime,
) -> Job:
    """The caller's job, looked up at the provider first when its record is stale."""
    job_id = query.job_id
    if job_id is None:
        task = store.get_task(query.provider, query.task_id or "")
        if task is None:
            raise not_found()
        job_id = task.job_id
    job = owned_job(store, caller, job_id, ops_accounts)
    attempt = job.current_attempt
    if is_terminal(job.status) or attempt is None or attempt.task_id is None:
        return job  # one document read: a finished job is never refreshed
    task = store.get_task(attempt.provider, attempt.task_id)
    if needs_refresh(job, task, now):
        try:
            refresh(attempt.provider, attempt.task_id)
        except ProviderError as exc:  # the stored answer is still worth returning
            log.warning("status refresh failed", extra={"jobId": job.job_id, "code": exc.code})
        job = store.get_job(job_id) or job
    return job
