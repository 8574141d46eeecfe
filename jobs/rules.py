"""The job life cycle as pure decisions over records (no I/O; `jobs/store.py` reads and writes).

A *job* is what the user asked for; an *attempt* is one try at one provider; a *task record* is
what that provider's task last looked like. Statuses (`providers.base.Status`)::

    queued ----> processing ----> completed
      |              |-----------> failed
      |              |-----------> cancelled
      `--------------+-----------> timed_out        (terminal states are final)

Rules every write obeys, decided here:

- a terminal status never changes; `processing -> queued` is a backward move and is refused;
- progress never decreases (a lower reading is stale; a status advance keeps the higher progress);
- a poll numbered at or below the last applied one is a duplicate delivery: a no-op, and the chain
  is left to the delivery that applied it; a *reading* older than the record (lower progress, an
  eventually consistent API) is stale: ignored, and the chain goes on, since the provider is still
  working and only a later look can see it finish;
- a failed attempt whose failure another provider could fix starts the next untried candidate,
  and the job stays `queued` meanwhile; otherwise the job fails.

Attempt statuses: `submitting` (create about to be sent) -> `active` (task id known) ->
`succeeded | failed | cancelled`; or `submitting -> unknown` when the create's outcome is unknown
(never re-sent to the same provider).

Completion with the finalize step (a bucket is configured; `tasks/finalize.py` copies)::

    provider task succeeded --no bucket--> job completed, output {source: "provider", expiresAt}
        | bucket
        v
    job processing at 99 %, finalizing, providerOutput, FinalizeState(attempt, tries, lease, ...)
        |-- claim       one try: lease + tries + 1 (or done / busy / exhausted; `jobs/lease.py`)
        |-- release     the try failed: lease freed, error kept; give_up -> job failed
        `-- complete    job completed, output {source: "storage", ...}
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from jobs.records import Attempt, AttemptStatus, FinalizeState, Job, TaskRecord
from providers.base import CreateResult, ProviderSnapshot, Status, is_terminal

_RANK = {Status.QUEUED: 0, Status.PROCESSING: 1}
FINALIZING_PROGRESS = 99.0


class Verdict(enum.StrEnum):
    APPLY = "apply"
    NOOP = "noop"  # nothing new (same status and progress)
    STALE = "stale"  # a reading older than what is recorded (ignored; the poll chain goes on)
    DUPLICATE = "duplicate"  # a poll numbered at or below the last applied one (a repeated delivery)
    FINAL = "final"  # the record is already terminal
    BACKWARD = "backward"  # the move would go back (processing -> queued)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    status: Status
    progress: float

    @property
    def changes(self) -> bool:
        return self.verdict is Verdict.APPLY


def can_transition(old: Status, new: Status) -> bool:
    """True when `old -> new` is allowed (staying in a non-terminal status counts as allowed)."""
    if is_terminal(old):
        return False
    if is_terminal(new):
        return True
    return _RANK[new] >= _RANK[old]


def decide(old: Status, old_progress: float, new: Status, new_progress: float) -> Decision:
    """What applying a reading (`new`, `new_progress`) to a record (`old`, `old_progress`) does."""
    if is_terminal(old):
        return Decision(Verdict.FINAL, old, old_progress)
    if not can_transition(old, new):
        return Decision(Verdict.BACKWARD, old, old_progress)
    progress = 100.0 if new is Status.COMPLETED else clamp_progress(new_progress)
    if new == old:
        if progress < old_progress:
            return Decision(Verdict.STALE, old, old_progress)
        if progress == old_progress:
            return Decision(Verdict.NOOP, old, old_progress)
    return Decision(Verdict.APPLY, new, max(progress, old_progress))


def clamp_progress(value: float) -> float:
    return min(100.0, max(0.0, float(value)))


def is_stale_poll(poll_number: int | None, last_poll_number: int) -> bool:
    """A numbered poll at or below the last applied one is a duplicate or arrived out of order."""
    return poll_number is not None and poll_number <= last_poll_number


# ---------------------------------------------------------------------------------------------------
# Ids, attempts and fallback


def job_id_for(owner_uid: str, idempotency_key: str | None) -> str:
    """Same owner and key -> same job id, so a repeated create collides instead of duplicating."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{owner_uid}\x00{idempotency_key}".encode()).hexdigest()[:32]


def attempt_id_for(job_id: str, number: int) -> str:
    """Deterministic: the same job and attempt number always give the same id (idempotency)."""
    return f"{job_id}-a{number}"


def next_candidate(candidates: Sequence[str], attempts: Sequence[Attempt]) -> str | None:
    """The first ranked provider not tried yet by this job, or None."""
    tried = {a.provider for a in attempts}
    return next((p for p in candidates if p not in tried), None)


def replace_attempt(attempts: Sequence[Attempt], updated: Attempt) -> tuple[Attempt, ...]:
    return tuple(updated if a.attempt_id == updated.attempt_id else a for a in attempts)


def find_attempt(job: Job, attempt_id: str) -> Attempt | None:
    return next((a for a in job.attempts if a.attempt_id == attempt_id), None)


def total_cost(attempts: Sequence[Attempt]) -> float | None:
    costs = [a.cost_usd for a in attempts if a.cost_usd is not None]
    return round(sum(costs), 6) if costs else None


def begin_attempt(job: Job, provider: str, now: datetime) -> tuple[Job, Attempt] | None:
    """Reserve the next attempt at `provider`; None when the job is terminal, one is open, or the
    job's deadline has passed (a create then could only be cancelled again)."""
    current = job.current_attempt
    if is_terminal(job.status) or (current is not None and current.is_open):
        return None
    if job.deadline_at is not None and now >= job.deadline_at:
        return None
    number = len(job.attempts) + 1
    attempt = Attempt(attempt_id_for(job.job_id, number), number, provider, AttemptStatus.SUBMITTING)
    attempt = replace(attempt, started_at=now)
    return replace(job, attempts=(*job.attempts, attempt)), attempt


def submitted(
    job: Job, attempt: Attempt, result: CreateResult, now: datetime, *, can_cancel: bool = True
) -> tuple[Job, TaskRecord]:
    """The provider accepted the create: the attempt is active, and its task record begins.

    An attempt closed meanwhile (the job was cancelled, or the cleanup gave the create up) is not
    reopened: the task is recorded as an orphan, cancelled here, and the caller stops it at the
    provider where the provider can (`can_cancel`), so it is neither polled nor left running.
    """
    if not attempt.is_open:
        return _orphan(job, attempt, result, now, can_cancel)
    active = replace(attempt, status=AttemptStatus.ACTIVE, task_id=result.task_id)
    after = replace(job, attempts=replace_attempt(job.attempts, active), provider_task_id=result.task_id)
    if result.estimated_usd is not None:
        after = replace(
            after, estimated_cost_usd=result.estimated_usd, estimated_credits=result.estimated_credits
        )
    return after, _new_task(job, attempt, result, now)


def _orphan(
    job: Job, attempt: Attempt, result: CreateResult, now: datetime, can_cancel: bool
) -> tuple[Job, TaskRecord]:
    named = replace(attempt, task_id=result.task_id)  # its status (cancelled, unknown) stays
    after = replace(job, attempts=replace_attempt(job.attempts, named))
    stop = "stopped at the provider" if can_cancel else "the provider has no cancel: it runs to its end"
    message = f"created after its attempt was closed ({attempt.status}); {stop}"
    task = replace(
        _new_task(job, attempt, result, now),
        status=Status.CANCELLED,
        provider_status="CREATED_AFTER_CLOSE",
        failure_code="attempt_closed",
        failure_message=message,
    )
    return after, task


def is_orphan(task: TaskRecord) -> bool:
    """A task created after its attempt was closed (see `submitted`)."""
    return task.failure_code == "attempt_closed"


def _new_task(job: Job, attempt: Attempt, result: CreateResult, now: datetime) -> TaskRecord:
    return TaskRecord(
        task_id=result.task_id,
        provider=attempt.provider,
        job_id=job.job_id,
        attempt_id=attempt.attempt_id,
        model=result.model,
        status=Status.QUEUED,
        estimated_credits=result.estimated_credits,
        created_at=now,
    )


def finished(job: Job, status: Status, error: Mapping[str, Any] | None, now: datetime) -> Job | None:
    """The job moved to a terminal status (cancel, time-out, failure); None when it may not."""
    if not can_transition(job.status, status):
        return None
    after = replace(job, status=status, ended_at=now, finalizing=False)
    if error is not None:
        after = replace(after, error=dict(error))
    attempt = job.current_attempt
    if attempt is not None and attempt.is_open:
        ended = AttemptStatus.CANCELLED if status is not Status.FAILED else AttemptStatus.FAILED
        after = replace(after, attempts=replace_attempt(job.attempts, replace(attempt, status=ended)))
    return after


def attempt_failed(
    job: Job,
    attempt: Attempt,
    error: Mapping[str, Any],
    *,
    fallback_allowed: bool,
    now: datetime,
    unknown: bool = False,
    final_status: Status = Status.FAILED,
) -> tuple[Job, str | None]:
    """Close a failed attempt: (the job after it, the next provider to try or None)."""
    ended = AttemptStatus.UNKNOWN if unknown else AttemptStatus.FAILED
    closed = replace(attempt, status=ended, error=error)
    return _after_failure(
        job, replace_attempt(job.attempts, closed), error, fallback_allowed, now, final_status
    )


def _after_failure(
    job: Job,
    attempts: tuple[Attempt, ...],
    error: Mapping[str, Any],
    fallback_allowed: bool,
    now: datetime,
    final_status: Status = Status.FAILED,
) -> tuple[Job, str | None]:
    after = replace(job, attempts=attempts, last_error=dict(error), actual_cost_usd=total_cost(attempts))
    next_provider = next_candidate(job.candidates, attempts) if fallback_allowed else None
    if next_provider is None and not is_terminal(job.status):
        after = replace(after, status=final_status, error=dict(error), ended_at=now)
    return after, next_provider


# ---------------------------------------------------------------------------------------------------
# Provider snapshots


def task_after(
    task: TaskRecord, decision: Decision, snap: ProviderSnapshot, poll_number: int | None, now: datetime
) -> TaskRecord:
    """The task record after one reading (counted and timed even when it changes nothing)."""
    after = replace(task, poll_count=task.poll_count + 1, last_checked_at=now)
    if poll_number is not None:
        after = replace(after, last_poll_number=poll_number, **_polled(task, snap, now))
    if not decision.changes:
        return after
    return replace(
        after,
        status=decision.status,
        progress=decision.progress,
        provider_status=snap.provider_status,
        output_urls=tuple(snap.output_urls),
        gif_url=snap.gif_url,
        thumbnail_url=snap.thumbnail_url,
        failure_code=snap.failure_code,
        failure_message=snap.failure_message,
        cost_credits=snap.cost_credits,
        cost_usd=snap.cost_usd,
    )


def _polled(task: TaskRecord, snap: ProviderSnapshot, now: datetime) -> dict[str, float]:
    """What the polling schedule keeps of a poll's reading (tasks/schedule.py): the last time the
    task was seen queued, and the first and the last progress figure with their times (seconds since
    created). Only polls count: they sit whole refresh intervals apart, a status check's do not."""
    if task.created_at is None:
        return {}
    elapsed = (now - task.created_at).total_seconds()
    if snap.status == Status.QUEUED:
        return {"queued_until_s": elapsed}
    if snap.status != Status.PROCESSING or snap.progress <= 0:
        return {}
    last = {"last_reading_s": elapsed, "last_progress": snap.progress}
    if task.first_reading_s is None:
        return {**last, "first_reading_s": elapsed, "first_progress": snap.progress}
    return last


@dataclass(frozen=True)
class JobChange:
    """The job after its task moved, and what the caller must do next."""

    job: Job
    fallback_to: str | None = None
    finalize_attempt: str | None = None  # the attempt whose output must now be stored


def job_after(
    job: Job,
    task: TaskRecord,
    decision: Decision,
    snap: ProviderSnapshot,
    now: datetime,
    *,
    link_ttl: timedelta,
    finalize_window: timedelta | None = None,
) -> JobChange:
    """The job after its task moved; unchanged when the task no longer drives the job."""
    attempt = job.current_attempt
    if is_terminal(job.status) or attempt is None or attempt.attempt_id != task.attempt_id:
        return JobChange(job)
    job = replace(job, provider_status=snap.provider_status)
    if decision.status is Status.FAILED:
        error = {"code": snap.failure_code or "provider_failed", "message": snap.failure_message or ""}
        failed = replace(attempt, status=AttemptStatus.FAILED, error=error, cost_usd=snap.cost_usd)
        after, next_provider = _after_failure(
            job, replace_attempt(job.attempts, failed), error, snap.fallback_allowed, now
        )
        return JobChange(after, fallback_to=next_provider)
    output = provider_output(snap, now, link_ttl)
    if decision.status is Status.COMPLETED and finalize_window is not None:
        return JobChange(
            _finalizing(job, attempt, snap, output, now, finalize_window), None, attempt.attempt_id
        )
    job_decision = decide(job.status, job.progress, decision.status, decision.progress)
    if job_decision.changes:
        job = replace(job, status=job_decision.status, progress=job_decision.progress)
    if is_terminal(decision.status):
        job = replace(_closed_attempt(job, attempt, decision.status, snap), ended_at=now)
    if decision.status is Status.COMPLETED:
        job = replace(job, output=output)
    return JobChange(job)


def _closed_attempt(job: Job, attempt: Attempt, status: Status, snap: ProviderSnapshot) -> Job:
    ended = AttemptStatus.SUCCEEDED if status is Status.COMPLETED else AttemptStatus.CANCELLED
    attempts = replace_attempt(job.attempts, replace(attempt, status=ended, cost_usd=snap.cost_usd))
    return replace(
        job, attempts=attempts, actual_cost_usd=total_cost(attempts), actual_credits=snap.cost_credits
    )


def provider_output(snap: ProviderSnapshot, now: datetime, link_ttl: timedelta) -> dict[str, Any]:
    """The provider's own links, marked as such, with the moment they stop working."""
    return {
        "videoUrls": list(snap.output_urls),
        "gifUrl": snap.gif_url,
        "thumbnailUrl": snap.thumbnail_url,
        "source": "provider",
        "expiresAt": now + link_ttl,
    }


def _finalizing(
    job: Job,
    attempt: Attempt,
    snap: ProviderSnapshot,
    output: Mapping[str, Any],
    now: datetime,
    window: timedelta,
) -> Job:
    """The provider finished: the job stays `processing` at 99 % until the finalize step stored it."""
    decision = decide(job.status, job.progress, Status.PROCESSING, FINALIZING_PROGRESS)
    state = FinalizeState(attempt.attempt_id, requested_at=now, deadline_at=now + window)
    return replace(
        _closed_attempt(job, attempt, Status.COMPLETED, snap),
        status=decision.status,
        progress=decision.progress,
        finalizing=True,
        provider_output=dict(output),
        finalize=state,
    )
