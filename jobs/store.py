"""Firestore persistence of jobs, attempts and provider task records.

The only module that sees Firestore documents. Every decision is delegated to `jobs.model`; this
module reads, asks, and writes -- each multi-document change in one transaction, with no side
effect inside it (a transaction may run up to five times). Every write sets `updatedAt` (server
time) and `expireAt` (for the TTL policy): a terminal record expires `RETENTION_DAYS` after it
ended, an active one `RETENTION_DAYS` after its deadline, so TTL never removes a live job.

Queries and the composite indexes they need (`firestore.indexes.json`):

    jobs_for_owner        ownerUid ==, [status ==], order by createdAt desc
    jobs_by_status        status in, updatedAt <, order by updatedAt
    jobs_past_deadline    status in, deadlineAt <, order by deadlineAt
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import tenacity
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from config import Settings
from jobs import model
from jobs.model import Attempt, AttemptStatus, Job, TaskRecord, Verdict
from providers.base import ACTIVE_STATUSES, TERMINAL_STATUSES, CreateResult, ProviderSnapshot, Status

Clock = Callable[[], datetime]
GET_ALL_CHUNK = 300
# Contention on one document is low in practice (a poll, a webhook and a status check at most). The
# client retries an aborted transaction at once; when a burst exhausts those tries, the whole
# transaction is run again after a jittered backoff (it has no side effects, so that is safe).
TXN_ATTEMPTS = 5
_retry_contention = tenacity.retry(
    retry=tenacity.retry_if_exception(
        lambda exc: isinstance(exc, ValueError) and isinstance(exc.__cause__, gexc.Aborted)
    ),
    wait=tenacity.wait_random_exponential(multiplier=0.05, max=1.0),
    stop=tenacity.stop_after_attempt(6),
    reraise=True,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreError(Exception):
    """Base of the store's own errors."""


class JobNotFound(StoreError):
    pass


class IdempotencyConflict(StoreError):
    """The idempotency key was used before by the same owner for a different request."""


@dataclass(frozen=True)
class NewJob:
    """Everything known about a job before its first attempt."""

    owner_uid: str
    request: Mapping[str, Any]
    candidates: tuple[str, ...]
    idempotency_key: str | None = None
    prompt: Mapping[str, Any] = field(default_factory=dict)
    selection: Mapping[str, Any] = field(default_factory=dict)
    estimated_usd: float | None = None
    estimated_credits: float | None = None

    def fingerprint(self) -> str:
        return hashlib.sha256(repr(sorted(self.request.items())).encode()).hexdigest()


@dataclass(frozen=True)
class ApplyOutcome:
    """What applying one provider snapshot did."""

    verdict: Verdict
    job_id: str
    task_status: Status
    job_status: Status | None
    fallback_to: str | None = None

    @property
    def task_terminal(self) -> bool:
        return self.task_status in TERMINAL_STATUSES


def job_id_for(owner_uid: str, idempotency_key: str | None) -> str:
    """Same owner and key -> same job id, so a repeated create collides instead of duplicating."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{owner_uid}\x00{idempotency_key}".encode()).hexdigest()[:32]


class JobStore:
    def __init__(self, client: firestore.Client, settings: Settings, clock: Clock = utcnow) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.retention = timedelta(days=settings.retention_days)

    # -- references -------------------------------------------------------------------------------

    def _job_ref(self, job_id: str) -> firestore.DocumentReference:
        return self.client.collection(self.settings.jobs_collection).document(job_id)

    def task_collection(self, provider: str) -> str:
        names = {
            "runwayml": self.settings.runwayml_tasks_collection,
            "heygen": self.settings.heygen_tasks_collection,
        }
        return names[provider]

    def _task_ref(self, provider: str, task_id: str) -> firestore.DocumentReference:
        return self.client.collection(self.task_collection(provider)).document(task_id)

    def _stamp(self, fields: dict[str, Any], *, terminal: bool, deadline: datetime | None) -> dict:
        base = self.clock() if terminal or deadline is None else deadline
        return {**fields, "updatedAt": firestore.SERVER_TIMESTAMP, "expireAt": base + self.retention}

    @_retry_contention
    def _transact(self, fn: Callable[[firestore.Transaction], Any]) -> Any:
        return firestore.transactional(fn)(self.client.transaction(max_attempts=TXN_ATTEMPTS))

    # -- jobs ---------------------------------------------------------------------------------------

    def create_job(self, new: NewJob) -> tuple[Job, bool]:
        """Create the job, or return the existing one for the same owner and idempotency key."""
        job_id = job_id_for(new.owner_uid, new.idempotency_key)
        now = self.clock()
        deadline = now + timedelta(seconds=self.settings.job_deadline_s)
        doc = {
            "jobId": job_id,
            "ownerUid": new.owner_uid,
            "idempotencyKey": new.idempotency_key,
            "requestFingerprint": new.fingerprint(),
            "request": dict(new.request),
            "prompt": dict(new.prompt),
            "selection": dict(new.selection),
            "candidates": list(new.candidates),
            "status": str(Status.QUEUED),
            "progress": 0.0,
            "attempts": [],
            "estimatedCostUsd": new.estimated_usd,
            "estimatedCredits": new.estimated_credits,
            "createdAt": now,
            "deadlineAt": deadline,
        }
        try:
            self._job_ref(job_id).create(self._stamp(doc, terminal=False, deadline=deadline))
        except gexc.Conflict:
            existing = self.get_job(job_id)
            if existing is None:  # deleted between the two calls; extremely unlikely
                raise JobNotFound(job_id) from None
            if existing.doc.get("requestFingerprint") != doc["requestFingerprint"]:
                raise IdempotencyConflict(job_id) from None
            return existing, False
        return Job.from_doc(doc), True

    def get_job(self, job_id: str) -> Job | None:
        snap = self._job_ref(job_id).get()
        return Job.from_doc(snap.to_dict()) if snap.exists else None

    def get_jobs(self, job_ids: Iterable[str]) -> dict[str, Job]:
        """Many jobs by id with batched reads (`get_all`), missing ones omitted."""
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, Job] = {}
        for start in range(0, len(ids), GET_ALL_CHUNK):
            refs = [self._job_ref(i) for i in ids[start : start + GET_ALL_CHUNK]]
            for snap in self.client.get_all(refs):
                if snap.exists:
                    found[snap.id] = Job.from_doc(snap.to_dict())
        return found

    def finish_job(
        self, job_id: str, status: Status, error: Mapping[str, Any] | None = None
    ) -> tuple[Job, bool]:
        """Move a job to a terminal status (cancel, time-out, failure); a terminal job is left as is."""
        ref = self._job_ref(job_id)

        def run(txn: firestore.Transaction) -> tuple[Job, bool]:
            job = self._load_job(txn, ref)
            if not model.can_transition(job.status, status):
                return job, False
            updates = {"status": str(status), "endedAt": self.clock()}
            if error is not None:
                updates["error"] = dict(error)
            attempt = job.current_attempt
            if attempt is not None and attempt.is_open:
                ended = AttemptStatus.CANCELLED if status is not Status.FAILED else AttemptStatus.FAILED
                attempts = model.replace_attempt(job.attempts, replace(attempt, status=ended))
                updates["attempts"] = [a.to_doc() for a in attempts]
            txn.update(ref, self._stamp(updates, terminal=True, deadline=None))
            return Job.from_doc({**job.doc, **updates}), True

        return self._transact(run)

    def _load_job(self, txn: firestore.Transaction, ref: firestore.DocumentReference) -> Job:
        snap = ref.get(transaction=txn)
        if not snap.exists:
            raise JobNotFound(ref.id)
        return Job.from_doc(snap.to_dict())

    # -- attempts -----------------------------------------------------------------------------------

    def begin_attempt(self, job_id: str, provider: str) -> Attempt | None:
        """Reserve the next attempt at `provider`; None when the job is terminal or one is open.

        The reservation is what makes "at most one create per attempt" hold: only the caller that
        gets an `Attempt` back may send the provider's create, and it is sent once.
        """
        ref = self._job_ref(job_id)

        def run(txn: firestore.Transaction) -> Attempt | None:
            job = self._load_job(txn, ref)
            current = job.current_attempt
            if model.is_terminal(job.status) or (current is not None and current.is_open):
                return None
            number = len(job.attempts) + 1
            attempt = Attempt(
                attempt_id=model.attempt_id_for(job_id, number),
                number=number,
                provider=provider,
                status=AttemptStatus.SUBMITTING,
                started_at=self.clock(),
            )
            attempts = [a.to_doc() for a in (*job.attempts, attempt)]
            updates = {"attempts": attempts, "provider": provider, "attemptCount": number}
            txn.update(ref, self._stamp(updates, terminal=False, deadline=job.deadline_at))
            return attempt

        return self._transact(run)

    def record_submission(self, job_id: str, attempt_id: str, result: CreateResult) -> None:
        """The provider accepted the create: mark the attempt active and write its task record."""
        ref = self._job_ref(job_id)

        def run(txn: firestore.Transaction) -> None:
            job = self._load_job(txn, ref)
            attempt = _find_attempt(job, attempt_id)
            active = replace(attempt, status=AttemptStatus.ACTIVE, task_id=result.task_id)
            attempts = model.replace_attempt(job.attempts, active)
            task_doc = {
                "taskId": result.task_id,
                "provider": attempt.provider,
                "jobId": job_id,
                "attemptId": attempt_id,
                "model": result.model,
                "status": str(Status.QUEUED),
                "providerStatus": None,
                "progress": 0.0,
                "pollCount": 0,
                "lastPollNumber": 0,
                "estimatedCredits": result.estimated_credits,
                "createdAt": self.clock(),
            }
            task_ref = self._task_ref(attempt.provider, result.task_id)
            txn.set(task_ref, self._stamp(task_doc, terminal=False, deadline=job.deadline_at))
            updates = {"attempts": [a.to_doc() for a in attempts], "providerTaskId": result.task_id}
            if result.estimated_usd is not None:
                updates["estimatedCostUsd"] = result.estimated_usd
                updates["estimatedCredits"] = result.estimated_credits
            terminal = model.is_terminal(job.status)
            txn.update(ref, self._stamp(updates, terminal=terminal, deadline=job.deadline_at))

        self._transact(run)

    def record_attempt_failure(
        self,
        job_id: str,
        attempt_id: str,
        error: Mapping[str, Any],
        *,
        fallback_allowed: bool,
        unknown: bool = False,
        final_status: Status = Status.FAILED,
    ) -> str | None:
        """Close a failed attempt; return the next provider to try, or None (the job has ended).

        Without a next provider the job ends in `final_status` (`failed`, or `timed_out` when the
        attempt ran out of time); a closed attempt is left as it is (a repeated call is harmless).
        """
        ref = self._job_ref(job_id)

        def run(txn: firestore.Transaction) -> str | None:
            job = self._load_job(txn, ref)
            attempt = _find_attempt(job, attempt_id)
            if not attempt.is_open:
                return None
            ended = AttemptStatus.UNKNOWN if unknown else AttemptStatus.FAILED
            attempts = model.replace_attempt(job.attempts, replace(attempt, status=ended, error=error))
            updates, next_provider = _after_failure(
                job, attempts, error, fallback_allowed, self.clock(), final_status
            )
            terminal = model.is_terminal(Status(updates.get("status", job.status)))
            txn.update(ref, self._stamp(updates, terminal=terminal, deadline=job.deadline_at))
            return next_provider

        return self._transact(run)

    def expire_task(self, provider: str, task_id: str, error: Mapping[str, Any]) -> str | None:
        """A task ran out of polling time: close its record and attempt; the next provider or None."""
        task_ref = self._task_ref(provider, task_id)

        def run(txn: firestore.Transaction) -> TaskRecord | None:
            snap = task_ref.get(transaction=txn)
            task = TaskRecord.from_doc(snap.to_dict()) if snap.exists else None
            if task is None or model.is_terminal(task.status):
                return None
            updates = {"status": str(Status.TIMED_OUT), "failureCode": error.get("code")}
            txn.update(task_ref, self._stamp(updates, terminal=True, deadline=None))
            return task

        task = self._transact(run)
        if task is None:
            return None
        return self.record_attempt_failure(
            task.job_id, task.attempt_id, error, fallback_allowed=True, final_status=Status.TIMED_OUT
        )

    # -- provider snapshots -------------------------------------------------------------------------

    def get_task(self, provider: str, task_id: str) -> TaskRecord | None:
        snap = self._task_ref(provider, task_id).get()
        return TaskRecord.from_doc(snap.to_dict()) if snap.exists else None

    def apply_snapshot(
        self, provider: str, task_id: str, snapshot: ProviderSnapshot, poll_number: int | None = None
    ) -> ApplyOutcome:
        """Apply what the provider said to the task record and its job, in one transaction."""
        task_ref = self._task_ref(provider, task_id)

        def run(txn: firestore.Transaction) -> ApplyOutcome:
            task_snap = task_ref.get(transaction=txn)
            if not task_snap.exists:
                raise JobNotFound(f"{provider}/{task_id}")
            task = TaskRecord.from_doc(task_snap.to_dict())
            job_ref = self._job_ref(task.job_id)
            job = self._load_job(txn, job_ref)
            if model.is_stale_poll(poll_number, task.last_poll_number):
                return ApplyOutcome(Verdict.STALE, job.job_id, task.status, job.status)
            decision = model.decide(task.status, task.progress, snapshot.status, snapshot.progress)
            task_updates = _task_updates(task, decision, snapshot, poll_number, self.clock())
            terminal = model.is_terminal(decision.status)
            txn.update(task_ref, self._stamp(task_updates, terminal=terminal, deadline=job.deadline_at))
            if not decision.changes:
                return ApplyOutcome(decision.verdict, job.job_id, decision.status, job.status)
            job_updates, fallback_to = _job_updates(job, task, decision, snapshot, self.clock())
            job_status = Status(job_updates.get("status", job.status))
            if job_updates:
                job_terminal = model.is_terminal(job_status)
                txn.update(job_ref, self._stamp(job_updates, terminal=job_terminal, deadline=job.deadline_at))
            return ApplyOutcome(Verdict.APPLY, job.job_id, decision.status, job_status, fallback_to)

        return self._transact(run)

    # -- queries ------------------------------------------------------------------------------------

    def _jobs(self) -> firestore.CollectionReference:
        return self.client.collection(self.settings.jobs_collection)

    def jobs_for_owner(self, owner_uid: str, *, status: Status | None = None, limit: int = 50) -> list[Job]:
        query = self._jobs().where(filter=FieldFilter("ownerUid", "==", owner_uid))
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", str(status)))
        query = query.order_by("createdAt", direction=firestore.Query.DESCENDING).limit(limit)
        return [Job.from_doc(s.to_dict()) for s in query.stream()]

    def jobs_by_status(
        self, statuses: Iterable[Status], *, updated_before: datetime | None = None, limit: int = 500
    ) -> list[Job]:
        query = self._jobs().where(filter=FieldFilter("status", "in", [str(s) for s in statuses]))
        if updated_before is not None:
            query = query.where(filter=FieldFilter("updatedAt", "<", updated_before))
        query = query.order_by("updatedAt").limit(limit)
        return [Job.from_doc(s.to_dict()) for s in query.stream()]

    def jobs_past_deadline(self, now: datetime, *, limit: int = 500) -> list[Job]:
        query = self._jobs().where(filter=FieldFilter("status", "in", [str(s) for s in ACTIVE_STATUSES]))
        query = query.where(filter=FieldFilter("deadlineAt", "<", now)).order_by("deadlineAt").limit(limit)
        return [Job.from_doc(s.to_dict()) for s in query.stream()]


# -------------------------------------------------------------------------------------------------
# Pure helpers that turn decisions into document updates


def _find_attempt(job: Job, attempt_id: str) -> Attempt:
    for attempt in job.attempts:
        if attempt.attempt_id == attempt_id:
            return attempt
    raise JobNotFound(f"{job.job_id}/{attempt_id}")


def _after_failure(
    job: Job,
    attempts: tuple[Attempt, ...],
    error: Mapping[str, Any],
    fallback_allowed: bool,
    now: datetime,
    final_status: Status = Status.FAILED,
) -> tuple[dict[str, Any], str | None]:
    updates: dict[str, Any] = {
        "attempts": [a.to_doc() for a in attempts],
        "lastError": dict(error),
        "actualCostUsd": model.total_cost(attempts),
    }
    next_provider = model.next_candidate(job.candidates, attempts) if fallback_allowed else None
    if next_provider is None and not model.is_terminal(job.status):
        updates.update({"status": str(final_status), "error": dict(error), "endedAt": now})
    return updates, next_provider


def _task_updates(
    task: TaskRecord, decision: model.Decision, snap: ProviderSnapshot, poll_number: int | None, now: datetime
) -> dict[str, Any]:
    updates: dict[str, Any] = {"pollCount": task.poll_count + 1, "lastCheckedAt": now}
    if poll_number is not None:
        updates["lastPollNumber"] = poll_number
    if decision.changes:
        updates.update(
            {
                "status": str(decision.status),
                "progress": decision.progress,
                "providerStatus": snap.provider_status,
                "outputUrls": list(snap.output_urls),
                "gifUrl": snap.gif_url,
                "thumbnailUrl": snap.thumbnail_url,
                "failureCode": snap.failure_code,
                "failureMessage": snap.failure_message,
                "costCredits": snap.cost_credits,
                "costUsd": snap.cost_usd,
            }
        )
    return updates


def _job_updates(
    job: Job, task: TaskRecord, decision: model.Decision, snap: ProviderSnapshot, now: datetime
) -> tuple[dict[str, Any], str | None]:
    """Job fields to write after a task moved; empty when the task no longer drives the job."""
    attempt = job.current_attempt
    if model.is_terminal(job.status) or attempt is None or attempt.attempt_id != task.attempt_id:
        return {}, None
    updates: dict[str, Any] = {"providerStatus": snap.provider_status}
    if decision.status is Status.FAILED:
        error = {"code": snap.failure_code or "provider_failed", "message": snap.failure_message or ""}
        failed = replace(attempt, status=AttemptStatus.FAILED, error=error, cost_usd=snap.cost_usd)
        attempts = model.replace_attempt(job.attempts, failed)
        more, next_provider = _after_failure(job, attempts, error, snap.fallback_allowed, now)
        return {**updates, **more}, next_provider
    job_decision = model.decide(job.status, job.progress, decision.status, decision.progress)
    if job_decision.changes:
        updates.update({"status": str(job_decision.status), "progress": job_decision.progress})
    if model.is_terminal(decision.status):
        ended = AttemptStatus.SUCCEEDED if decision.status is Status.COMPLETED else AttemptStatus.CANCELLED
        attempts = model.replace_attempt(job.attempts, replace(attempt, status=ended, cost_usd=snap.cost_usd))
        updates.update({"attempts": [a.to_doc() for a in attempts], "endedAt": now})
        updates["actualCostUsd"] = model.total_cost(attempts)
        updates["actualCredits"] = snap.cost_credits
    if decision.status is Status.COMPLETED:
        updates["output"] = {
            "videoUrls": list(snap.output_urls),
            "gifUrl": snap.gif_url,
            "thumbnailUrl": snap.thumbnail_url,
            "source": "provider",
        }
    return updates, None
