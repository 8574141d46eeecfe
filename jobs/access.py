"""Reading jobs for callers: ownership checks, cancel and the status refresh (what a caller sees of a
job: `jobs/views.py`).

A job that is not the caller's is "not found" (404), never "forbidden": the answer must not reveal
that someone else's job exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from google.api_core import exceptions as gexc

import errors
from errors import not_found
from jobs.records import Job, TaskRecord
from jobs.store import JobStore
from logs import get_logger
from providers.base import Provider, ProviderError, ProviderSnapshot, Status, is_terminal

log = get_logger("jobs.access")

# A non-terminal job is looked up at its provider when its task record is older than this.
STALE_AFTER = timedelta(seconds=5)


@dataclass(frozen=True)
class Viewer:
    """Who asks about a job: a user (`uid`), or an operator, who may see every job."""

    uid: str | None = None
    operator: bool = False


def visible_to(job: Job | None, viewer: Viewer) -> bool:
    if job is None:
        return False
    return viewer.operator or (viewer.uid is not None and viewer.uid == job.owner_uid)


def needs_refresh(job: Job, task: TaskRecord | None, now: datetime) -> bool:
    """True when a live job's task was last checked long enough ago to ask the provider again."""
    if task is None or is_terminal(job.status) or is_terminal(task.status):
        return False
    return task.checked_at is None or now - task.checked_at >= STALE_AFTER


def owned_job(store: JobStore, viewer: Viewer, job_id: str) -> Job:
    job = store.get_job(job_id)
    if job is None or not visible_to(job, viewer):
        raise not_found()
    return job


def cancel(store: JobStore, providers: Mapping[str, Provider], owner_uid: str, job_id: str) -> Job:
    """Cancel the caller's job at its provider and in the store; harmless to repeat.

    A job already cancelled answers with itself; any other terminal job is a 409 with its status.
    HeyGen cannot stop a render: its record is closed and the result ignored when it arrives.
    """
    job = owned_job(store, Viewer(uid=owner_uid), job_id)
    if is_terminal(job.status):
        if job.status is Status.CANCELLED:
            return job
        raise _finished(job)
    job, changed = store.finish_job(job_id, Status.CANCELLED, {"code": "cancelled", "message": "cancelled"})
    attempt = job.current_attempt
    if changed and attempt is not None and attempt.task_id is not None:
        stop_task(store, providers[attempt.provider], attempt.provider, attempt.task_id)
    elif not changed and job.status is not Status.CANCELLED:
        raise _finished(job)
    return job


def _finished(job: Job) -> errors.Conflict:
    message = f"the job has already ended: {job.status}"
    return errors.Conflict(message, code="job_finished", jobStatus=str(job.status))


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
    viewer: Viewer,
    job_id: str | None,
    task: tuple[str, str] | None = None,
    *,
    refresh: Callable[[str, str], object],
    now: datetime,
    gate: Callable[[str], bool] = lambda job_id: True,
) -> Job:
    """The viewer's job (by id, or by its (provider, task id)), looked up at the provider first when
    its record is stale.

    Only the caller that `gate` lets through (one per job and refresh interval across instances:
    `jobs.guards.RefreshGate`) asks the provider; the others answer with the stored state at once.
    A refresh that fails (the provider, or the store under contention) also answers with the
    stored state: a status check never fails because its refresh did."""
    if job_id is None:
        record = store.get_task(*task) if task is not None else None
        if record is None:
            raise not_found()
        job_id = record.job_id
    job = owned_job(store, viewer, job_id)
    attempt = job.current_attempt
    if is_terminal(job.status) or attempt is None or attempt.task_id is None:
        return job  # one document read: a finished job is never refreshed
    task = store.get_task(attempt.provider, attempt.task_id)
    if needs_refresh(job, task, now) and gate(job.job_id):
        try:
            refresh(attempt.provider, attempt.task_id)
        except (errors.AppError, gexc.GoogleAPICallError) as exc:  # the stored answer is still worth it
            code = getattr(exc, "code", None)  # "busy" when the store lost the race for the job
            log.warning("status refresh failed", extra={"jobId": job.job_id, "code": str(code)})
            return job
        job = store.get_job(job_id) or job
    return job
