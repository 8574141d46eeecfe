"""The finalize step's lease, as pure decisions over a job (no I/O; `jobs/store.py` writes).

A completed attempt whose output must be copied leaves the job `finalizing` with a `FinalizeState`
(`rules.job_after`). Each delivery of its finalize task then::

    finalize_verdict   go | done (nothing left) | busy (the lease is held) | exhausted (tries used)
    finalize_claimed   one try: the lease taken, the try counted
    finalize_released  the try failed: the lease freed, the error kept; give_up -> the job fails
    finalize_completed the output is stored: the job completes with it
    finalize_requeued  the cleanup asked for another try (so the next sweep waits again)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from jobs.records import Job
from providers.base import Status, is_terminal


def finalizing(job: Job, attempt_id: str) -> bool:
    """True while `attempt_id`'s output still waits to be stored."""
    alive = not is_terminal(job.status) and job.finalizing and job.finalize is not None
    return alive and job.finalize.attempt_id == attempt_id


def finalize_verdict(job: Job, attempt_id: str, now: datetime, max_tries: int) -> str:
    """go | done | busy | exhausted, for a finalize delivery of `attempt_id` arriving at `now`."""
    if not finalizing(job, attempt_id):
        return "done"
    state = job.finalize
    if state.lease_until is not None and state.lease_until > now:
        return "busy"
    if state.tries >= max_tries:
        return "exhausted"
    return "go"


def finalize_claimed(job: Job, now: datetime, lease_s: float) -> Job:
    state = replace(
        job.finalize,
        tries=job.finalize.tries + 1,
        lease_until=now + timedelta(seconds=lease_s),
        last_tried_at=now,
    )
    return replace(job, finalize=state)


def finalize_released(job: Job, error: Mapping[str, Any], now: datetime, *, give_up: bool) -> Job:
    after = replace(job, finalize=replace(job.finalize, lease_until=None, last_error=dict(error)))
    if not give_up:
        return after
    message = f"the finished video could not be stored: {error.get('message') or error.get('code')}"
    failure = {"code": "finalize_failed", "message": message, "cause": error.get("code")}
    return replace(after, status=Status.FAILED, error=failure, finalizing=False, ended_at=now)


def finalize_completed(job: Job, output: Mapping[str, Any], now: datetime) -> Job:
    state = replace(job.finalize, lease_until=None, finalized_at=now)
    return replace(
        job,
        status=Status.COMPLETED,
        progress=100.0,
        finalizing=False,
        finalize=state,
        output=dict(output),
        ended_at=now,
    )


def finalize_requeued(job: Job, now: datetime) -> Job:
    return replace(job, finalize=replace(job.finalize, requeued_at=now))
