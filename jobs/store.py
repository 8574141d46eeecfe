"""Firestore persistence of jobs, attempts and provider task records: reads and writes, nothing decided.

Every decision is a pure function of `jobs/rules.py` over the records of `jobs/records.py`; this
module loads, asks, and writes what changed -- each change in one batch, committed only while what
it read is unchanged (`jobs.txn.run_optimistic`: a change that lost a race runs again, so nothing
with a side effect runs inside it). An instance remembers the jobs it wrote last, at the version each
write made (`KnownJobs`), and changes such a job again without reading it: the write's precondition
confirms the version, or the change runs again, reading. Every write sets `updatedAt`
(server time) and `expireAt` (for the TTL policy): a terminal record expires `RETENTION_DAYS` after
it ended, an active one `RETENTION_DAYS` after its deadline, so TTL never removes a live job.

A job is written in one place, `_write_job` (and its creation): with every change, in the same
change, the owner's view of it (`jobs/views.user_view`) is written to `video_job_status/{jobId}`
-- the only document of a job the app may read (firestore.rules) -- with the job's `expireAt`.
Each reading of a provider task moves the job's progress and estimated finish time
(`jobs/progress.py`), even a reading that changes nothing else.

    JobStore          the changes of the life cycle (this module)
      + Queries       one-off queries and paged sweeps (`jobs/queries.py`)
      + Purge         the retention purge, in BatchWrite requests (`jobs/purge.py`)

Where a provider's task records live is its spec's (`ProviderSpec.records_collection`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from config import Settings
from errors import AppError
from jobs import lease, progress, rules, views
from jobs.purge import Purge
from jobs.queries import Queries, batch_get
from jobs.records import (
    Attempt,
    Job,
    JobRequest,
    TaskRecord,
    job_changes,
    job_from_doc,
    job_to_doc,
    task_changes,
    task_from_doc,
    task_to_doc,
)
from jobs.rules import Verdict
from jobs.txn import LOST_RACE, Change, run_optimistic, utcnow
from logs import get_logger
from providers import registry
from providers.base import TERMINAL_STATUSES, CreateResult, ProviderSnapshot, Status

Clock = Callable[[], datetime]
FINALIZE_RETRY_SLACK_S = 300.0  # per finalize try: Cloud Tasks backoff between tries, at most
log = get_logger("jobs.store")
_ENDED: ContextVar[list[Job]] = ContextVar("ended_jobs")  # jobs ended by the change running now


class StoreError(AppError):
    """Base of the store's own errors."""


class JobNotFound(StoreError):
    default_code = "job_not_found"


class IdempotencyConflict(StoreError):
    """The idempotency key was used before by the same owner for a different request."""


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
    request: JobRequest
    candidates: tuple[str, ...]
    idempotency_key: str | None = None
    prompt: Mapping[str, Any] = field(default_factory=dict)
    selection: Mapping[str, Any] = field(default_factory=dict)
    estimated_usd: float | None = None
    job_id: str | None = None  # chosen by the caller (admission records it first); default from the key


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


class KnownJobs:
    """The jobs this instance wrote last (the `limit` most recent), each with `updated_at` the update
    time its write returned: the version a change may take it at.

    A change may take a job as known instead of reading it (`jobs.txn.Change.assume`): its write is
    then conditional on that version, and a change that does not write the job runs again, reading
    it. So a stale entry costs a lost race, never a wrong decision."""

    def __init__(self, limit: int = 1024) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.limit = limit

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs.move_to_end(job_id)
            return job

    def put(self, job: Job, version: datetime) -> None:
        with self._lock:
            self._jobs[job.job_id] = replace(job, updated_at=version)
            self._jobs.move_to_end(job.job_id)
            while len(self._jobs) > self.limit:
                self._jobs.popitem(last=False)

    def drop(self, job_ids: set[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                self._jobs.pop(job_id, None)


class _JobChange(Change):
    """A change of jobs: the jobs it loaded and wrote, and the known jobs it may take as read."""

    def __init__(self, client: firestore.Client, known: KnownJobs | None) -> None:
        super().__init__(client)
        self.known = known  # None: read every job
        self.loaded: set[str] = set()
        self.wrote: dict[str, Job] = {}  # by document path


class JobStore(Queries, Purge):
    def __init__(self, client: firestore.Client, settings: Settings, clock: Clock = utcnow) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.known = KnownJobs()
        self.retention = timedelta(days=settings.retention_days)
        # With a bucket, a completed provider task is copied before the job completes (finalize step).
        self.finalize_window: timedelta | None = None
        if settings.storage_bucket is not None:
            per_try = settings.finalize_timeout_s + FINALIZE_RETRY_SLACK_S
            self.finalize_window = timedelta(seconds=settings.finalize_max_attempts * per_try)

    # -- writes ------------------------------------------------------------------------

    def _stamp(self, fields: dict[str, Any], *, terminal: bool, deadline: datetime | None) -> dict:
        base = self.clock() if terminal or deadline is None else deadline
        return {**fields, "updatedAt": firestore.SERVER_TIMESTAMP, "expireAt": base + self.retention}

    def _write_job(self, writes: _JobChange, before: Job, after: Job) -> None:
        """The one write of a job: what changed, and the owner's view of it, in `writes`."""
        changed = job_changes(before, after)
        if changed:
            terminal = rules.is_terminal(after.status)
            fields = self._stamp(changed, terminal=terminal, deadline=after.deadline_at)
            ref = self.job_ref(after.job_id)
            writes.update(ref, fields)
            writes.wrote[ref.path] = after
            writes.set(self.user_view_ref(after.job_id), self._user_doc(after, fields["expireAt"]))
            if terminal and not rules.is_terminal(before.status):
                _ENDED.get().append(after)  # logged by `_commit` once committed

    def _user_doc(self, job: Job, expire_at: datetime) -> dict[str, Any]:
        """The owner's view as stored: stamped like its job, and expiring with it."""
        return {**views.user_view(job), "updatedAt": firestore.SERVER_TIMESTAMP, "expireAt": expire_at}

    def _progressed(self, before: Job, after: Job, task: TaskRecord, now: datetime) -> Job:
        """`after` with the progress and finish time a reading of `task` implies (`jobs/progress.py`)."""
        return progress.advanced(before, after, task, now, self._typical_s(task.provider))

    def _typical_s(self, provider: str) -> float:
        return registry.spec(provider).typical_render_s

    def _commit(self, fn: Callable[[_JobChange], Any]) -> Any:
        """Run `fn` (read, decide, write into its change) and commit; again while it loses a race.
        The first run may take jobs as this instance last wrote them; a run again reads them."""
        # Contention on one job is low (a poll, a webhook, a finalize and a status check at most).
        ended: list[Job] = []  # the jobs the committed run ended (a re-run decides afresh)
        runs = 0

        def attempt() -> Any:
            nonlocal runs
            runs += 1
            ended.clear()
            writes = _JobChange(self.client, self.known if runs == 1 else None)
            try:
                answer = fn(writes)
                writes.commit()
            except LOST_RACE:
                self.known.drop(writes.loaded)
                raise
            for path, job in writes.wrote.items():
                if path in writes.versions:
                    self.known.put(job, writes.versions[path])
            return answer

        _ENDED.set(ended)  # this thread's change; set anew by each
        answer = run_optimistic(attempt)
        for job in ended:
            extra = dict(event="job_ended", jobId=job.job_id, status=job.status, provider=job.provider)
            log.info(f"job {job.status}", extra=extra)
        return answer

    def _load_job(self, writes: _JobChange, job_id: str) -> Job:
        ref = self.job_ref(job_id)
        writes.loaded.add(job_id)
        known = writes.known.get(job_id) if writes.known is not None else None
        if known is not None and known.updated_at is not None:
            writes.assume(ref, known.updated_at)
            return known
        snap = writes.get(ref)
        if not snap.exists:
            raise JobNotFound(job_id)
        return job_from_doc(snap.to_dict())

    def _update_job(self, job_id: str, change: Callable[[Job], tuple[Job | None, Any]]) -> Any:
        """Load the job, let `change` decide (None: nothing to write), write what changed; its answer."""

        def run(writes: _JobChange) -> Any:
            before = self._load_job(writes, job_id)
            after, answer = change(before)
            if after is not None:
                self._write_job(writes, before, after)
            return answer

        return self._commit(run)

    # -- jobs ---------------------------------------------------------------------------------------

    def create_job(self, new: NewJob, *, begin: bool = False) -> tuple[Job, bool]:
        """Create the job, or return the existing one for the same owner and idempotency key.
        `begin`: the job is created with its first attempt reserved (at its first candidate), as
        `begin_attempt` would reserve it, for the caller that goes on to send its create."""
        job_id = new.job_id or rules.job_id_for(new.owner_uid, new.idempotency_key)
        now = self.clock()
        job = Job(
            job_id=job_id,
            owner_uid=new.owner_uid,
            status=Status.QUEUED,
            candidates=tuple(new.candidates),
            request=new.request,
            prompt=dict(new.prompt),
            selection=dict(new.selection),
            idempotency_key=new.idempotency_key,
            request_fingerprint=new.request.fingerprint(),
            estimated_cost_usd=new.estimated_usd,
            created_at=now,
            deadline_at=now + timedelta(seconds=self.settings.job_deadline_s),
            estimated_ready_at=progress.first_estimate(now, [self._typical_s(p) for p in new.candidates[:1]]),
        )
        begun = rules.begin_attempt(job, new.candidates[0], now) if begin and new.candidates else None
        if begun is not None:
            job = begun[0]
        doc = self._stamp(job_to_doc(job), terminal=False, deadline=job.deadline_at)
        batch = self.client.batch()  # the job and its user view, both or neither
        batch.create(self.job_ref(job_id), doc)
        batch.set(self.user_view_ref(job_id), self._user_doc(job, doc["expireAt"]))
        try:
            created = batch.commit()[0]
        except gexc.Conflict:
            existing = self.get_job(job_id)
            if existing is None:  # deleted between the two calls; extremely unlikely
                raise JobNotFound(job_id) from None
            if existing.request_fingerprint != job.request_fingerprint:
                raise IdempotencyConflict(job_id) from None
            return existing, False
        self.known.put(job, created.update_time)
        return job, True

    def last_written(self, job_id: str) -> Job | None:
        """The job as this instance last wrote it, if it did lately (no read: it may be stale)."""
        return self.known.get(job_id)

    def get_job(self, job_id: str) -> Job | None:
        """The job as stored: `DocumentReference.get`'s one request, decoded from the protobuf."""
        found = batch_get(self.client, self.client._firestore_api, [self.job_ref(job_id)], first_only=True)
        return job_from_doc(found[0].fields, job_id) if found else None

    def finish_job(
        self, job_id: str, status: Status, error: Mapping[str, Any] | None = None
    ) -> tuple[Job, bool]:
        """Move a job to a terminal status (cancel, time-out, failure); a terminal job is left as is."""

        def change(job: Job) -> tuple[Job | None, tuple[Job, bool]]:
            after = rules.finished(job, status, error, self.clock())
            return after, (after or job, after is not None)

        return self._update_job(job_id, change)

    # -- attempts -----------------------------------------------------------------------------------

    def begin_attempt(self, job_id: str, provider: str) -> Attempt | None:
        """Reserve the next attempt at `provider`; None when the job is terminal or one is open.

        The reservation is what makes "at most one create per attempt" hold: only the caller that
        gets an `Attempt` back may send the provider's create, and it is sent once.
        """

        def change(job: Job) -> tuple[Job | None, Attempt | None]:
            begun = rules.begin_attempt(job, provider, self.clock())
            return (None, None) if begun is None else begun

        return self._update_job(job_id, change)

    def record_submission(
        self, job_id: str, attempt_id: str, result: CreateResult, *, can_cancel: bool = True
    ) -> bool:
        """The provider accepted the create: mark the attempt active and write its task record.

        False when the attempt was closed meanwhile: the task is recorded as a cancelled orphan
        (`rules.submitted`) and the caller must stop it at the provider.
        """

        def run(writes: _JobChange) -> bool:
            job = self._load_job(writes, job_id)
            attempt = _attempt(job, attempt_id)
            now = self.clock()
            after, task = rules.submitted(job, attempt, result, now, can_cancel=can_cancel)
            terminal = rules.is_terminal(task.status)
            record = self._stamp(task_to_doc(task), terminal=terminal, deadline=job.deadline_at)
            writes.set(self.task_ref(task.provider, task.task_id), record)
            self._write_job(writes, job, self._progressed(job, after, task, now))
            return not rules.is_orphan(task)

        return self._commit(run)

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

        def change(job: Job) -> tuple[Job | None, str | None]:
            attempt = _attempt(job, attempt_id)
            if not attempt.is_open:
                return None, None
            now = self.clock()
            return rules.attempt_failed(
                job,
                attempt,
                error,
                fallback_allowed=fallback_allowed,
                now=now,
                unknown=unknown,
                final_status=final_status,
            )

        return self._update_job(job_id, change)

    def expire_task(self, provider: str, task_id: str, error: Mapping[str, Any]) -> str | None:
        """A task ran out of polling time: close its record and attempt; the next provider or None."""
        ref = self.task_ref(provider, task_id)

        def run(writes: _JobChange) -> TaskRecord | None:
            snap = writes.get(ref)
            task = task_from_doc(snap.to_dict()) if snap.exists else None
            if task is None or rules.is_terminal(task.status):
                return None
            after = replace(task, status=Status.TIMED_OUT, failure_code=error.get("code"))
            writes.update(ref, self._stamp(task_changes(task, after), terminal=True, deadline=None))
            return task

        task = self._commit(run)
        if task is None:
            return None
        return self.record_attempt_failure(
            task.job_id, task.attempt_id, error, fallback_allowed=True, final_status=Status.TIMED_OUT
        )

    # -- provider snapshots -------------------------------------------------------------------------

    def get_task(self, provider: str, task_id: str) -> TaskRecord | None:
        snap = self.task_ref(provider, task_id).get()
        return task_from_doc(snap.to_dict()) if snap.exists else None

    def apply_snapshot(
        self, provider: str, task_id: str, snapshot: ProviderSnapshot, poll_number: int | None = None
    ) -> ApplyOutcome:
        """Apply what the provider said to the task record and its job, in one change."""
        ref = self.task_ref(provider, task_id)
        link_ttl = registry.spec(provider).link_ttl

        def run(writes: _JobChange) -> ApplyOutcome:
            task_snap = writes.get(ref)
            if not task_snap.exists:
                raise JobNotFound(f"{provider}/{task_id}")
            task = task_from_doc(task_snap.to_dict())
            job = self._load_job(writes, task.job_id)
            if rules.is_stale_poll(poll_number, task.last_poll_number):
                return ApplyOutcome(Verdict.DUPLICATE, job.job_id, task.status, job.status)
            now = self.clock()
            decision = rules.decide(task.status, task.progress, snapshot.status, snapshot.progress)
            after_task = rules.task_after(task, decision, snapshot, poll_number, now)
            terminal = rules.is_terminal(decision.status)
            writes.update(
                ref, self._stamp(task_changes(task, after_task), terminal=terminal, deadline=job.deadline_at)
            )
            if not decision.changes:  # the same reading, later: the estimate still moves
                self._write_job(writes, job, self._progressed(job, job, after_task, now))
                return ApplyOutcome(decision.verdict, job.job_id, decision.status, job.status)
            change = rules.job_after(
                job, task, decision, snapshot, now, link_ttl=link_ttl, finalize_window=self.finalize_window
            )
            self._write_job(writes, job, self._progressed(job, change.job, after_task, now))
            status = change.job.status
            return ApplyOutcome(
                Verdict.APPLY,
                job.job_id,
                decision.status,
                status,
                change.fallback_to,
                change.finalize_attempt,
            )

        return self._commit(run)

    # -- finalize (copy of the output into storage) ---------------------------------------------------

    def claim_finalize(
        self, job_id: str, attempt_id: str, *, lease_s: float, max_tries: int
    ) -> FinalizeClaim:
        """Take the finalize lease for one try (counted), or say why not (see `finalize_verdict`)."""
        now = self.clock()

        def change(job: Job) -> tuple[Job | None, FinalizeClaim]:
            verdict = lease.finalize_verdict(job, attempt_id, now, max_tries)
            tries = job.finalize.tries if job.finalize else 0
            if verdict != "go":
                return None, FinalizeClaim(verdict, job, tries)
            after = lease.finalize_claimed(job, now, lease_s)
            return after, FinalizeClaim("go", after, tries + 1)

        return self._update_job(job_id, change)

    def release_finalize(
        self, job_id: str, attempt_id: str, error: Mapping[str, Any], *, give_up: bool
    ) -> bool:
        """A try failed: free the lease and keep the error; with `give_up` the job fails. True if it did."""

        def change(job: Job) -> tuple[Job | None, bool]:
            if not lease.finalizing(job, attempt_id):
                return None, False
            return lease.finalize_released(job, error, self.clock(), give_up=give_up), give_up

        return self._update_job(job_id, change)

    def complete_finalize(self, job_id: str, attempt_id: str, output: Mapping[str, Any]) -> bool:
        """The output is stored: the job completes with it. False when the job ended meanwhile."""

        def change(job: Job) -> tuple[Job | None, bool]:
            if not lease.finalizing(job, attempt_id):
                return None, False
            return lease.finalize_completed(job, output, self.clock()), True

        return self._update_job(job_id, change)

    def note_finalize_requeued(self, job_id: str, attempt_id: str) -> bool:
        """Remember that the sweep asked for another finalize try (so the next sweep waits again)."""

        def change(job: Job) -> tuple[Job | None, bool]:
            if not lease.finalizing(job, attempt_id):
                return None, False
            return lease.finalize_requeued(job, self.clock()), True

        return self._update_job(job_id, change)


def _attempt(job: Job, attempt_id: str) -> Attempt:
    attempt = rules.find_attempt(job, attempt_id)
    if attempt is None:
        raise JobNotFound(f"{job.job_id}/{attempt_id}")
    return attempt
