"""Firestore persistence of jobs, attempts and provider task records.

The only module that sees Firestore documents. Every decision is delegated to `jobs.model`; this
module reads, asks, and writes -- each multi-document change in one transaction, with no side
effect inside it (a transaction may run up to five times). Every write sets `updatedAt` (server
time) and `expireAt` (for the TTL policy): a terminal record expires `RETENTION_DAYS` after it
ended, an active one `RETENTION_DAYS` after its deadline, so TTL never removes a live job.

Completion and the finalize step (with STORAGE_BUCKET set; `tasks/finalize.py` does the copying)::

    provider task succeeded --no bucket--> job completed, output {source: "provider", expiresAt}
        | bucket
        v
    job processing, progress 99, finalizing: true, providerOutput, finalize {attemptId, tries,
        leaseUntil, lastError, requestedAt, deadlineAt}; ApplyOutcome.finalize_attempt set
        |-- claim_finalize     one try: lease + tries + 1 (or done / busy / exhausted)
        |-- release_finalize   the try failed: lease freed, error kept; give_up -> job failed
        `-- complete_finalize  job completed, output {source: "storage", ...}, finalizing: false

Queries, paged sweeps and the composite indexes they need (`firestore.indexes.json`):

    jobs_for_owner                ownerUid ==, [status ==], order by createdAt desc
    jobs_by_status                status in, updatedAt <, order by updatedAt
    jobs_past_deadline (+ iter_)  status in, deadlineAt <, order by deadlineAt
    iter_stale_active_jobs        status in, updatedAt <, order by updatedAt
    iter_finalizing_jobs          finalizing ==, order by __name__ (single-field index)
    purge_jobs                    endedAt <, order by endedAt (single-field); then status in,
                                  updatedAt < (jobs without endedAt); projection; one BulkWriter
    purge_expired                 expireAt < (any supporting collection), order by expireAt
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.bulk_writer import BulkWriterOptions

from config import Settings
from jobs import model
from jobs.model import Attempt, AttemptStatus, Job, TaskRecord, Verdict
from jobs.txn import run_transaction, utcnow
from providers.base import ACTIVE_STATUSES, TERMINAL_STATUSES, CreateResult, ProviderSnapshot, Status

Clock = Callable[[], datetime]
GET_ALL_CHUNK = 300
# How long provider links keep working (docs: RunwayML 24-48 h, HeyGen 7 days in v1): the lower bound.
PROVIDER_LINK_TTL = {"runwayml": timedelta(hours=24), "heygen": timedelta(days=7)}
FINALIZING_PROGRESS = 99.0
FINALIZE_RETRY_SLACK_S = 300.0  # per finalize try: Cloud Tasks backoff between tries, at most
SWEEP_PAGE = 200
PURGE_PAGE = 500
PURGE_STREAM = 10_000
# What the purge reads of each job: few, flat fields (decoding whole attempts costs more than the
# emulator's own work); jobs with several attempts have theirs read in a second, batched get.
PURGE_FIELDS = (
    "status",
    "endedAt",
    "attemptCount",
    "provider",
    "providerTaskId",
    "output.videoPath",
    "output.gifPath",
    "finalize.attemptId",
)
BULK_OPS_PER_SECOND = 10_000
BULK_BATCH = 250
BULK_MAX_ATTEMPTS = 5


class StoreError(Exception):
    """Base of the store's own errors."""


class JobNotFound(StoreError):
    pass


class IdempotencyConflict(StoreError):
    """The idempotency key was used before by the same owner for a different request."""


@dataclass(frozen=True)
class ExpiredJob:
    """A terminal job past retention: its task records, and its stored objects (known or possible)."""

    job_id: str
    tasks: tuple[tuple[str, str], ...] | None  # (provider, task id); None: not read yet
    objects: tuple[str, ...]  # object paths named by the job's output
    stored: bool  # a finalize step ran: objects may exist under jobs/{jobId}/ even without output


class BulkDeleter:
    """Deletes through one BulkWriter, faster than its defaults, counting writes that finally failed.

    Use one per pass and `close()` it: after a `flush()` the client's BulkWriter sends nothing more
    until 20 operations are queued, and its `close()` then returns without sending them.

    The BulkWriter sends its batches in parallel. Two defaults are raised: batches of BULK_BATCH
    deletes instead of 20 (BatchWrite takes up to 500; fewer requests halve the time against the
    emulator), and the 500 ops/s ceiling (Google's ramp-up advice for writes into new key ranges):
    a sweep every 15 minutes normally deletes one 15-minute slice of old jobs, so the ceiling only
    shapes the first sweep over a backlog, and deletes of random job ids do not hotspot.
    """

    def __init__(self, client: firestore.Client, ops_per_second: int = BULK_OPS_PER_SECOND) -> None:
        options = BulkWriterOptions(initial_ops_per_second=ops_per_second, max_ops_per_second=ops_per_second)
        self.writer = client.bulk_writer(options)
        self.writer.batch_size = BULK_BATCH
        self.failed = 0
        self.writer.on_write_error(self._on_error)

    def _on_error(self, failure: Any, writer: Any) -> bool:
        if failure.attempts < BULK_MAX_ATTEMPTS:
            return True
        self.failed += 1
        return False

    def delete(self, ref: firestore.DocumentReference) -> None:
        self.writer.delete(ref)

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True)
class FinalizeClaim:
    """The answer to "may this delivery store the output now?"."""

    verdict: str  # go | done (nothing left to do) | busy (another try holds the lease) | exhausted
    job: Job
    tries: int


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
    finalize_attempt: str | None = None  # the attempt whose output must now be stored (finalize step)

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
        # With a bucket, a completed provider task is copied before the job completes (finalize step).
        self.finalize_window: timedelta | None = None
        if settings.storage_bucket is not None:
            per_try = settings.finalize_timeout_s + FINALIZE_RETRY_SLACK_S
            self.finalize_window = timedelta(seconds=settings.finalize_max_attempts * per_try)

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

    def _transact(self, fn: Callable[[firestore.Transaction], Any]) -> Any:
        # Contention on one job is low (a poll, a webhook and a status check at most).
        return run_transaction(self.client, fn)

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
            updates: dict[str, Any] = {"status": str(status), "endedAt": self.clock()}
            if error is not None:
                updates["error"] = dict(error)
            if job.doc.get("finalizing"):
                updates["finalizing"] = False
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
            change = _job_updates(job, task, decision, snapshot, self.clock(), self.finalize_window)
            job_status = Status(change.updates.get("status", job.status))
            if change.updates:
                stamped = self._stamp(
                    change.updates, terminal=model.is_terminal(job_status), deadline=job.deadline_at
                )
                txn.update(job_ref, stamped)
            return ApplyOutcome(
                Verdict.APPLY,
                job.job_id,
                decision.status,
                job_status,
                change.fallback_to,
                change.finalize_attempt,
            )

        return self._transact(run)

    # -- finalize (copy of the output into storage) ---------------------------------------------------

    def claim_finalize(
        self, job_id: str, attempt_id: str, *, lease_s: float, max_tries: int
    ) -> FinalizeClaim:
        """Take the finalize lease for one try (counted), or say why not (see `finalize_verdict`)."""
        ref, now = self._job_ref(job_id), self.clock()

        def run(txn: firestore.Transaction) -> FinalizeClaim:
            job = self._load_job(txn, ref)
            verdict = finalize_verdict(job, attempt_id, now, max_tries)
            state = dict(job.doc.get("finalize") or {})
            if verdict != "go":
                return FinalizeClaim(verdict, job, int(state.get("tries", 0)))
            tries = int(state.get("tries", 0)) + 1
            state.update(tries=tries, leaseUntil=now + timedelta(seconds=lease_s), lastTriedAt=now)
            txn.update(ref, self._stamp({"finalize": state}, terminal=False, deadline=job.deadline_at))
            return FinalizeClaim("go", Job.from_doc({**job.doc, "finalize": state}), tries)

        return self._transact(run)

    def release_finalize(
        self, job_id: str, attempt_id: str, error: Mapping[str, Any], *, give_up: bool
    ) -> bool:
        """A try failed: free the lease and keep the error; with `give_up` the job fails. True if it did."""
        ref, now = self._job_ref(job_id), self.clock()

        def run(txn: firestore.Transaction) -> bool:
            job = self._load_job(txn, ref)
            state = dict(job.doc.get("finalize") or {})
            if not _finalizing(job, attempt_id):
                return False
            state.update(leaseUntil=None, lastError=dict(error))
            updates: dict[str, Any] = {"finalize": state}
            if give_up:
                updates.update(_finalize_failed(error, now))
            txn.update(ref, self._stamp(updates, terminal=give_up, deadline=job.deadline_at))
            return give_up

        return self._transact(run)

    def complete_finalize(self, job_id: str, attempt_id: str, output: Mapping[str, Any]) -> bool:
        """The output is stored: the job completes with it. False when the job ended meanwhile."""
        ref, now = self._job_ref(job_id), self.clock()

        def run(txn: firestore.Transaction) -> bool:
            job = self._load_job(txn, ref)
            if not _finalizing(job, attempt_id):
                return False
            state = {**(job.doc.get("finalize") or {}), "leaseUntil": None, "finalizedAt": now}
            updates = {
                "status": str(Status.COMPLETED),
                "progress": 100.0,
                "finalizing": False,
                "finalize": state,
                "output": dict(output),
                "endedAt": now,
            }
            txn.update(ref, self._stamp(updates, terminal=True, deadline=None))
            return True

        return self._transact(run)

    def note_finalize_requeued(self, job_id: str, attempt_id: str) -> bool:
        """Remember that the sweep asked for another finalize try (so the next sweep waits again)."""
        ref, now = self._job_ref(job_id), self.clock()

        def run(txn: firestore.Transaction) -> bool:
            job = self._load_job(txn, ref)
            if not _finalizing(job, attempt_id):
                return False
            state = {**(job.doc.get("finalize") or {}), "requeuedAt": now}
            txn.update(ref, self._stamp({"finalize": state}, terminal=False, deadline=job.deadline_at))
            return True

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

    # -- sweeps (the scheduled cleanup): cursor pages, bounded memory ---------------------------------

    def iter_jobs_past_deadline(self, now: datetime, *, page_size: int = SWEEP_PAGE) -> Iterator[Job]:
        query = self._jobs().where(filter=FieldFilter("status", "in", _names(ACTIVE_STATUSES)))
        query = query.where(filter=FieldFilter("deadlineAt", "<", now)).order_by("deadlineAt")
        return _jobs_of(_pages(query, page_size))

    def iter_stale_active_jobs(
        self, updated_before: datetime, *, page_size: int = SWEEP_PAGE
    ) -> Iterator[Job]:
        """Active jobs whose record has not changed since `updated_before` (crash-window candidates)."""
        query = self._jobs().where(filter=FieldFilter("status", "in", _names(ACTIVE_STATUSES)))
        query = query.where(filter=FieldFilter("updatedAt", "<", updated_before)).order_by("updatedAt")
        return _jobs_of(_pages(query, page_size))

    def iter_finalizing_jobs(self, *, page_size: int = SWEEP_PAGE) -> Iterator[Job]:
        query = self._jobs().where(filter=FieldFilter("finalizing", "==", True)).order_by("__name__")
        return _jobs_of(_pages(query, page_size))

    def get_tasks(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TaskRecord]:
        """Many task records by (provider, task id) with batched reads, missing ones omitted."""
        refs = [self._task_ref(provider, task_id) for provider, task_id in dict.fromkeys(keys)]
        found: dict[tuple[str, str], TaskRecord] = {}
        for start in range(0, len(refs), GET_ALL_CHUNK):
            for snap in self.client.get_all(refs[start : start + GET_ALL_CHUNK]):
                if snap.exists:
                    task = TaskRecord.from_doc(snap.to_dict())
                    found[(task.provider, task.task_id)] = task
        return found

    def purge_jobs(
        self,
        ended_before: datetime,
        *,
        dry_run: bool = False,
        before_delete: Callable[[list[ExpiredJob]], None] | None = None,
        stop: Callable[[], bool] = lambda: False,
        page_size: int = PURGE_PAGE,
    ) -> tuple[int, int]:
        """Delete terminal jobs that ended before `ended_before` with their task records.

        Page by page: `before_delete(page)` runs first (the stored objects go before the records that
        name them), then the page's deletes go to a BulkWriter. Returns (jobs, task records).
        """
        jobs = tasks = 0
        for query, only_unended in self._expired_queries(ended_before):
            # one writer per query: it is closed (all sent) before the next query looks
            deleter = None if dry_run else BulkDeleter(self.client)
            for page in _streamed(query, page_size):
                picked = self._with_all_tasks(_pick_expired(page, only_unended))
                if picked and before_delete is not None:
                    before_delete(picked)
                for expired in picked:
                    jobs, tasks = jobs + 1, tasks + len(expired.tasks)
                    if deleter is not None:
                        deleter.delete(self._job_ref(expired.job_id))
                        for provider, task_id in expired.tasks:
                            deleter.delete(self._task_ref(provider, task_id))
                if stop():
                    break
            if deleter is not None:
                deleter.close()
            if stop():
                break
        return jobs, tasks

    def _with_all_tasks(self, picked: list[ExpiredJob]) -> list[ExpiredJob]:
        """Fill in the task records of jobs that made more than one attempt (read their attempts)."""
        ids = [e.job_id for e in picked if e.tasks is None]
        if not ids:
            return picked
        refs = [self._job_ref(job_id) for job_id in ids]
        attempts = {
            s.id: (s.to_dict() or {}).get("attempts", ()) for s in self.client.get_all(refs, ["attempts"])
        }
        return [
            e if e.tasks is not None else replace(e, tasks=_task_keys(attempts.get(e.job_id, ())))
            for e in picked
        ]

    def _expired_queries(self, before: datetime) -> tuple[tuple[firestore.Query, bool], ...]:
        """Terminal jobs with `endedAt` < before, then terminal jobs without `endedAt` by `updatedAt`.

        The first query is one range on a single-field index (the status is checked here): the
        emulator answers it three times faster than `status in` plus the range, and production
        needs no composite index for it. Only terminal writes set `endedAt`.
        """
        fields = list(PURGE_FIELDS)
        by_end = self._jobs().where(filter=FieldFilter("endedAt", "<", before)).order_by("endedAt")
        by_update = self._jobs().where(filter=FieldFilter("status", "in", _names(TERMINAL_STATUSES)))
        by_update = by_update.where(filter=FieldFilter("updatedAt", "<", before)).order_by("updatedAt")
        return (by_end.select(fields), False), (by_update.select([*fields, "updatedAt"]), True)

    def purge_expired(
        self,
        collection: str,
        now: datetime,
        *,
        dry_run: bool = False,
        stop: Callable[[], bool] = lambda: False,
        page_size: int = PURGE_PAGE,
    ) -> int:
        """Delete the documents of a supporting collection whose `expireAt` has passed."""
        query = self.client.collection(collection).where(filter=FieldFilter("expireAt", "<", now))
        query = query.order_by("expireAt").select(["expireAt"])
        deleter = None if dry_run else BulkDeleter(self.client)
        count = 0
        for page in _streamed(query, page_size):
            count += len(page)
            if deleter is not None:
                for snap in page:
                    deleter.delete(snap.reference)
            if stop():
                break
        if deleter is not None:
            deleter.close()
        return count


# -------------------------------------------------------------------------------------------------
# Pure helpers that turn decisions into document updates


def _names(statuses: Iterable[Status]) -> list[str]:
    return sorted(str(s) for s in statuses)


def _pages(query: firestore.Query, page_size: int) -> Iterator[list[firestore.DocumentSnapshot]]:
    """A query's results page by page, each page starting after the last one (a cursor, no offset)."""
    cursor = None
    while True:
        page_query = query.limit(page_size)
        if cursor is not None:
            page_query = page_query.start_after(cursor)
        page = list(page_query.stream())
        if page:
            yield page
        if len(page) < page_size:
            return
        cursor = page[-1]


def _streamed(
    query: firestore.Query, chunk: int, per_query: int = PURGE_STREAM
) -> Iterator[list[firestore.DocumentSnapshot]]:
    """A query's results in chunks of `chunk`, read lazily from streams of at most `per_query`
    documents, each starting after the last one seen (a cursor). Few, long streams: the emulator
    (like a cold production index scan) pays a fixed cost per query, the chunks keep memory flat."""
    cursor = None
    while True:
        bounded = query.limit(per_query)
        if cursor is not None:
            bounded = bounded.start_after(cursor)
        seen, batch = 0, []
        for snap in bounded.stream():
            seen, cursor = seen + 1, snap
            batch.append(snap)
            if len(batch) == chunk:
                yield batch
                batch = []
        if batch:
            yield batch
        if seen < per_query:
            return


def _jobs_of(pages: Iterable[list[firestore.DocumentSnapshot]]) -> Iterator[Job]:
    for page in pages:
        yield from (Job.from_doc(s.to_dict()) for s in page)


def _pick_expired(page: list[firestore.DocumentSnapshot], only_unended: bool) -> list[ExpiredJob]:
    picked = []
    for snap in page:
        doc = snap.to_dict() or {}
        if model.is_terminal(doc.get("status", "")) and not (only_unended and doc.get("endedAt")):
            picked.append(_expired(snap.id, doc))
    return picked


def _expired(job_id: str, doc: Mapping[str, Any]) -> ExpiredJob:
    """From the purge projection. One attempt: its task is the job's `provider`/`providerTaskId`;
    more than one: `tasks` is None and the attempts are read (`JobStore._with_all_tasks`)."""
    count = int(doc.get("attemptCount") or 0)
    tasks: tuple[tuple[str, str], ...] | None = ()
    if count > 1:
        tasks = None
    elif count == 1 and doc.get("provider") and doc.get("providerTaskId"):
        tasks = ((doc["provider"], doc["providerTaskId"]),)
    output = doc.get("output") or {}
    paths = tuple(p for p in (output.get("videoPath"), output.get("gifPath")) if p)
    return ExpiredJob(job_id, tasks, paths, stored=bool(doc.get("finalize")))


def _task_keys(attempts: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    return tuple((a["provider"], a["taskId"]) for a in attempts if a.get("taskId") and a.get("provider"))


def _finalizing(job: Job, attempt_id: str) -> bool:
    state = job.doc.get("finalize") or {}
    alive = not model.is_terminal(job.status) and bool(job.doc.get("finalizing"))
    return alive and state.get("attemptId") == attempt_id


def finalize_verdict(job: Job, attempt_id: str, now: datetime, max_tries: int) -> str:
    """go | done | busy | exhausted, for a finalize delivery of `attempt_id` arriving at `now`."""
    if not _finalizing(job, attempt_id):
        return "done"
    state = job.doc.get("finalize") or {}
    lease = state.get("leaseUntil")
    if lease is not None and lease > now:
        return "busy"
    if int(state.get("tries", 0)) >= max_tries:
        return "exhausted"
    return "go"


def _finalize_failed(error: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    message = f"the finished video could not be stored: {error.get('message') or error.get('code')}"
    return {
        "status": str(Status.FAILED),
        "error": {"code": "finalize_failed", "message": message, "cause": error.get("code")},
        "finalizing": False,
        "endedAt": now,
    }


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


@dataclass(frozen=True)
class JobChange:
    """Job fields to write after a task moved, and what the caller must do next."""

    updates: dict[str, Any]
    fallback_to: str | None = None
    finalize_attempt: str | None = None


def _job_updates(
    job: Job,
    task: TaskRecord,
    decision: model.Decision,
    snap: ProviderSnapshot,
    now: datetime,
    finalize_window: timedelta | None = None,
) -> JobChange:
    """Job fields to write after a task moved; empty when the task no longer drives the job."""
    attempt = job.current_attempt
    if model.is_terminal(job.status) or attempt is None or attempt.attempt_id != task.attempt_id:
        return JobChange({})
    updates: dict[str, Any] = {"providerStatus": snap.provider_status}
    if decision.status is Status.FAILED:
        error = {"code": snap.failure_code or "provider_failed", "message": snap.failure_message or ""}
        failed = replace(attempt, status=AttemptStatus.FAILED, error=error, cost_usd=snap.cost_usd)
        attempts = model.replace_attempt(job.attempts, failed)
        more, next_provider = _after_failure(job, attempts, error, snap.fallback_allowed, now)
        return JobChange({**updates, **more}, fallback_to=next_provider)
    if decision.status is Status.COMPLETED and finalize_window is not None:
        more = _finalizing_updates(job, attempt, task.provider, snap, now, finalize_window)
        return JobChange({**updates, **more}, finalize_attempt=attempt.attempt_id)
    job_decision = model.decide(job.status, job.progress, decision.status, decision.progress)
    if job_decision.changes:
        updates.update({"status": str(job_decision.status), "progress": job_decision.progress})
    if model.is_terminal(decision.status):
        updates.update(_closed_attempt(job, attempt, decision.status, snap))
        updates["endedAt"] = now
    if decision.status is Status.COMPLETED:
        updates["output"] = provider_output(task.provider, snap, now)
    return JobChange(updates)


def _closed_attempt(job: Job, attempt: Attempt, status: Status, snap: ProviderSnapshot) -> dict[str, Any]:
    ended = AttemptStatus.SUCCEEDED if status is Status.COMPLETED else AttemptStatus.CANCELLED
    attempts = model.replace_attempt(job.attempts, replace(attempt, status=ended, cost_usd=snap.cost_usd))
    return {
        "attempts": [a.to_doc() for a in attempts],
        "actualCostUsd": model.total_cost(attempts),
        "actualCredits": snap.cost_credits,
    }


def provider_output(provider: str, snap: ProviderSnapshot, now: datetime) -> dict[str, Any]:
    """The provider's own links, marked as such, with the moment they stop working."""
    return {
        "videoUrls": list(snap.output_urls),
        "gifUrl": snap.gif_url,
        "thumbnailUrl": snap.thumbnail_url,
        "source": "provider",
        "expiresAt": now + PROVIDER_LINK_TTL.get(provider, min(PROVIDER_LINK_TTL.values())),
    }


def _finalizing_updates(
    job: Job, attempt: Attempt, provider: str, snap: ProviderSnapshot, now: datetime, window: timedelta
) -> dict[str, Any]:
    """The provider finished: the job stays `processing` at 99 % until the finalize step stored it."""
    decision = model.decide(job.status, job.progress, Status.PROCESSING, FINALIZING_PROGRESS)
    return {
        **_closed_attempt(job, attempt, Status.COMPLETED, snap),
        "status": str(decision.status),
        "progress": decision.progress,
        "finalizing": True,
        "providerOutput": provider_output(provider, snap, now),
        "finalize": {
            "attemptId": attempt.attempt_id,
            "tries": 0,
            "leaseUntil": None,
            "lastError": None,
            "requestedAt": now,
            "deadlineAt": now + window,
        },
    }
