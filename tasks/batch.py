"""`runwayml_batch_status_check`: many jobs at once, the stale live ones refreshed at their providers.

    Selection: job ids (at most web.schemas.MAX_BATCH_IDS) | filter: status, olderThanSeconds, limit
      v
    jobs in bulk: JobStore.get_jobs (batched gets) | JobStore.jobs_by_status (one query), both
                  reading only the fields a status summary needs (jobs.queries.STATUS_FIELDS)
      v
    task records of the live jobs in bulk (JobStore.get_tasks, batched gets on the task collections)
      v
    stale (views.needs_refresh)? -> status requests per provider, on a pool of REFRESH_WORKERS:
        bulk      a provider with a bulk status read (`ProviderSpec.bulk_ids`; HeyGen: GET
                  /v3/videos/statuses, 100 ids a request, Provider.get_many),
                  each snapshot applied with Poller.apply (forward-only, then the poll's own hooks),
                  a fallback it starts run as a poll would run it (Runner.run); an id the bulk answer
                  leaves out (unknown, or its full read failed) goes the single way below
        single    no bulk read (RunwayML): Poller.refresh per task (GET, apply, fallback, vanished tasks)
      v
    the refreshed jobs read again in bulk -> per-job results and a summary

Provider trouble never fails the call: the jobs concerned carry `refreshError` and keep their stored
state. A job is *stuck* when it is live and past its deadline, or its task (or, without one, the job)
has not been checked for STUCK_UNCHECKED. `firestoreReads` counts documents read (a query counts
its results, at least one; an applied snapshot reads two); `providerCalls` counts status requests
sent (HeyGen's bulk answer has no URLs, so each finished video costs one more read). Retries inside
a provider client and the reads of a fallback's new attempt are not counted.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jobs import access as views
from jobs.queries import STATUS_FIELDS
from jobs.records import Job, TaskRecord
from jobs.store import JobStore, StoreError
from logs import get_logger
from providers import registry
from providers.base import ProviderError, ProviderSnapshot, Status, is_terminal
from tasks.poll import Poller

log = get_logger("tasks.batch")

REFRESH_WORKERS = 8
DEFAULT_LIMIT = 500
STUCK_UNCHECKED = timedelta(minutes=10)


@dataclass
class Tally:
    """Cost counters, shared by the refresh workers."""

    firestore_reads: int = 0
    provider_calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, reads: int = 0, calls: int = 0) -> None:
        with self._lock:
            self.firestore_reads += reads
            self.provider_calls += calls


@dataclass(frozen=True)
class Selection:
    """Which jobs one batch looks at: `job_ids`, or the jobs in `statuses` (older than, at most `limit`)."""

    job_ids: Sequence[str] | None = None
    statuses: Sequence[str] = ()
    older_than_s: int | None = None
    limit: int = DEFAULT_LIMIT


def check_jobs(poller: Poller, selection: Selection) -> dict[str, Any]:
    """Read the jobs, refresh the stale live ones, and report each job and a summary."""
    store, tally = poller.store, Tally()
    now = store.clock()
    jobs, order = _select(store, selection, now, tally)
    tasks = read_tasks(store, _task_keys(jobs.values()), tally)
    stale = [t for job_id, t in tasks.items() if views.needs_refresh(jobs[job_id], t, now)]
    errors = refresh(poller, stale, tally)
    refreshed = [t.job_id for t in stale if errors.get(t.job_id) is None]
    if stale:
        jobs.update(store.get_jobs((t.job_id for t in stale), STATUS_FIELDS))
        tally.add(reads=len(stale))
    checked = {job_id: now for job_id in refreshed}
    results = [_result(job_id, jobs.get(job_id), tasks.get(job_id), errors, checked, now) for job_id in order]
    return {
        "jobs": results,
        "summary": summarize(results),
        "firestoreReads": tally.firestore_reads,
        "providerCalls": tally.provider_calls,
    }


def _select(
    store: JobStore, selection: Selection, now: datetime, tally: Tally
) -> tuple[dict[str, Job], list[str]]:
    if selection.job_ids is not None:
        order = list(dict.fromkeys(selection.job_ids))
        tally.add(reads=len(order))
        return store.get_jobs(order, STATUS_FIELDS), order
    older = selection.older_than_s
    before = None if older is None else now - timedelta(seconds=older)
    statuses = [Status(s) for s in selection.statuses]
    found = store.jobs_by_status(statuses, updated_before=before, limit=selection.limit, fields=STATUS_FIELDS)
    tally.add(reads=max(1, len(found)))
    return {job.job_id: job for job in found}, [job.job_id for job in found]


def _task_keys(jobs: Iterable[Job]) -> list[tuple[str, str, str]]:
    """(job id, provider, task id) of every live job's current task."""
    keys = []
    for job in jobs:
        attempt = job.current_attempt
        if not is_terminal(job.status) and attempt is not None and attempt.task_id is not None:
            keys.append((job.job_id, attempt.provider, attempt.task_id))
    return keys


def read_tasks(store: JobStore, keys: list[tuple[str, str, str]], tally: Tally) -> dict[str, TaskRecord]:
    """Task records by job id, read in bulk; missing records are left out."""
    tally.add(reads=len(keys))
    return {task.job_id: task for task in store.get_tasks((p, t) for _, p, t in keys).values()}


# -- refreshing -----------------------------------------------------------------------------------


def refresh(poller: Poller, tasks: list[TaskRecord], tally: Tally) -> dict[str, str | None]:
    """Fetch and apply every task; job id -> None when refreshed, else the error code."""
    chunks: list[tuple[str, list[TaskRecord]]] = []
    for provider in sorted({t.provider for t in tasks}):
        group = [t for t in tasks if t.provider == provider]
        size = registry.spec(provider).bulk_ids or 1
        chunks += [(provider, group[i : i + size]) for i in range(0, len(group), size)]
    results: dict[str, str | None] = {}
    if not chunks:
        return results
    with ThreadPoolExecutor(max_workers=min(REFRESH_WORKERS, len(chunks))) as pool:
        for part in pool.map(lambda chunk: _refresh_chunk(poller, *chunk, tally), chunks):
            results.update(part)
    return results


def _refresh_chunk(
    poller: Poller, provider: str, tasks: list[TaskRecord], tally: Tally
) -> dict[str, str | None]:
    if registry.spec(provider).bulk_ids is None:
        return {t.job_id: _refresh_one(poller, t, tally) for t in tasks}
    tally.add(calls=1)
    try:
        snapshots = poller.providers[provider].get_many([t.task_id for t in tasks])
    except ProviderError as exc:
        log.warning("bulk status read failed", extra={"provider": provider, "code": exc.code})
        return {t.job_id: exc.code for t in tasks}
    tally.add(calls=sum(1 for s in snapshots.values() if is_terminal(s.status)))
    return {t.job_id: _apply_or_refresh(poller, t, snapshots.get(t.task_id), tally) for t in tasks}


def _apply_or_refresh(
    poller: Poller, task: TaskRecord, snapshot: ProviderSnapshot | None, tally: Tally
) -> str | None:
    if snapshot is None:
        return _refresh_one(poller, task, tally)
    try:
        poller.apply(task.provider, task.task_id, snapshot)  # finalize or fallback as a poll would
    except StoreError:
        return "task_not_found"
    tally.add(reads=2)
    return None


def _refresh_one(poller: Poller, task: TaskRecord, tally: Tally) -> str | None:
    tally.add(reads=3, calls=1)
    try:
        poller.refresh(task.provider, task.task_id)
    except ProviderError as exc:
        log.warning("status read failed", extra={"jobId": task.job_id, "code": exc.code})
        return exc.code
    except StoreError:
        return "task_not_found"
    return None


# -- reporting ------------------------------------------------------------------------------------


def stuck_reason(job: Job, task: TaskRecord | None, now: datetime, checked_at: datetime | None) -> str | None:
    """Why a live job looks stuck (`past_deadline`, `not_checked`), or None (pure)."""
    if is_terminal(job.status):
        return None
    if job.deadline_at is not None and job.deadline_at < now:
        return "past_deadline"
    if checked_at is None and task is not None:
        checked_at = task.checked_at
    if checked_at is None:
        checked_at = job.updated_at or job.created_at
    if checked_at is None or now - checked_at >= STUCK_UNCHECKED:
        return "not_checked"
    return None


def _result(
    job_id: str,
    job: Job | None,
    task: TaskRecord | None,
    errors: Mapping[str, str | None],
    checked: Mapping[str, datetime],
    now: datetime,
) -> dict[str, Any]:
    if job is None:
        return {"jobId": job_id, "found": False, "error": {"code": "not_found", "message": "no such job"}}
    return {
        **status_view(job),
        "found": True,
        "refreshed": job_id in checked,
        "refreshError": errors.get(job_id),
        "stuck": stuck_reason(job, task, now, checked.get(job_id)),
    }


def status_view(job: Job) -> dict[str, Any]:
    """What `views.ops_view` shows of a job's state, from the fields `STATUS_FIELDS` reads (pure)."""
    error = job.error or None
    return {
        "jobId": job.job_id,
        "status": str(job.status),
        "progress": job.progress,
        "provider": job.provider,
        "error": {"code": error.get("code"), "message": error.get("message")} if error else None,
    }


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by status, the stuck jobs and the errors of a batch (pure)."""
    found = [r for r in results if r["found"]]
    return {
        "total": len(results),
        "found": len(found),
        "notFound": len(results) - len(found),
        "byStatus": dict(Counter(r["status"] for r in found)),
        "refreshed": sum(1 for r in found if r["refreshed"]),
        "refreshErrors": sum(1 for r in found if r["refreshError"] is not None),
        "stuck": [{"jobId": r["jobId"], "reason": r["stuck"]} for r in found if r["stuck"]],
    }
