"""The scheduled cleanup (`runwayml_cleanup_task`, Cloud Scheduler every 15 min): nothing is lost, old
records go.

Policy, in the order a run applies it (each step pages through its query with cursors, so memory
stays bounded; a run stops paging after BUDGET_S and reports `complete: false`, the next run goes on).
Retention runs first, so the other steps' queries do not wade through a backlog of dead jobs, but
it may use only half the budget: the live jobs' steps always get their turn::

    0 retention     terminal job with `endedAt` (else `updatedAt`) older than RETENTION_DAYS -> its
                    stored objects, then the job, its user view and its task records (BatchWrites)
    1 deadline      active job past `deadlineAt` (not finalizing): its task looked at once more (a
                    task the provider finished completes the job), else `timed_out`; its provider
                    task cancelled (best effort) and its record closed
    2 crash windows active job quiet for a while (`updatedAt` old), by its current attempt:
                    submitting for > SUBMIT_GRACE        -> attempt `unknown` (never re-sent to that
                                                            provider); next provider via Runner.run, or
                                                            the job fails
                    none open for > RESUME_GRACE         -> Runner.run (next candidate), or fail (none left)
                    active, task not checked for > 3 x the provider's longest poll delay (or never
                    checked for > NEVER_CHECKED_GRACE)   -> Poller.refresh now, then a poll is enqueued
                                                            (a fresh name, so a spent one cannot block it)
    3 finalizing    lease expired and no try for > FINALIZE_STALL (never tried: NEVER_CLAIMED_GRACE)
                                                         -> finalize enqueued again (fresh name);
                    tries used up or its window passed  -> the job fails, stored objects deleted
    4 expired       webhook event ids and quota counters whose `expireAt` passed (TTL does the same
                    within about a day; this keeps the collections small between TTL runs)

Every action goes through the same store transactions as the rest of the system, so a second run,
or a duplicate Scheduler delivery, finds nothing left to do. `dryRun` classifies and counts without
changing anything (the counts say what a real run would do). Records carry `expireAt` for the
Firestore TTL policy as well; TTL is the backstop, this sweep the guarantee.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from config import Settings
from jobs import rules
from jobs.access import stop_task
from jobs.records import AttemptStatus, ExpiredJob, Job, TaskRecord
from jobs.runner import Runner
from jobs.store import JobStore
from jobs.txn import utcnow
from logs import get_logger
from providers.base import Provider, ProviderError, Status, is_terminal
from tasks.poll import Poller
from tasks.queue import TaskQueue
from tasks.storage import VideoStorage, job_prefix

log = get_logger("tasks.cleanup")

SUBMIT_GRACE = timedelta(minutes=5)
RESUME_GRACE = timedelta(minutes=5)
NEVER_CHECKED_GRACE = timedelta(minutes=2)
ORPHAN_FACTOR = 3
FINALIZE_STALL = timedelta(minutes=10)
NEVER_CLAIMED_GRACE = timedelta(minutes=2)  # a finalize is enqueued without delay
SWEEP_POLL_DELAY_S = 5.0
BUDGET_S = 420.0  # the function may run 540 s
CHUNK = 200


class Action(enum.StrEnum):
    NONE = "none"
    RESOLVE_SUBMITTING = "resolve_submitting"
    RESUME = "resume"
    FAIL = "fail"
    POLL = "poll"
    REQUEUE_FINALIZE = "requeue_finalize"
    FAIL_FINALIZE = "fail_finalize"


# ---------------------------------------------------------------------------------------------------
# Decisions (pure)


def crash_action(job: Job, task: TaskRecord | None, now: datetime, *, orphan_after: timedelta) -> Action:
    """What a quiet active job needs, judged by its current attempt (see the module docstring)."""
    if is_terminal(job.status) or job.finalizing:
        return Action.NONE
    attempt = job.current_attempt
    if attempt is None or not attempt.is_open:
        since = (attempt.started_at if attempt else None) or job.created_at
        if since is None or now - since < RESUME_GRACE:
            return Action.NONE
        return Action.RESUME if rules.next_candidate(job.candidates, job.attempts) else Action.FAIL
    if attempt.status is AttemptStatus.SUBMITTING:
        started = attempt.started_at
        return Action.RESOLVE_SUBMITTING if started is None or now - started > SUBMIT_GRACE else Action.NONE
    if task is None or is_terminal(task.status):
        return Action.NONE
    if task.last_checked_at is None:
        created = task.created_at
        return Action.POLL if created is None or now - created > NEVER_CHECKED_GRACE else Action.NONE
    return Action.POLL if now - task.last_checked_at > orphan_after else Action.NONE


def finalize_action(job: Job, now: datetime, *, max_tries: int) -> Action:
    state = job.finalize
    if is_terminal(job.status) or not job.finalizing or state is None:
        return Action.NONE
    if state.lease_until is not None and state.lease_until > now:
        return Action.NONE
    if state.tries >= max_tries or (state.deadline_at is not None and now > state.deadline_at):
        return Action.FAIL_FINALIZE
    moments = (state.requested_at, state.last_tried_at, state.requeued_at)
    last = max((m for m in moments if m is not None), default=None)
    stall = FINALIZE_STALL if state.tries else NEVER_CLAIMED_GRACE
    return Action.REQUEUE_FINALIZE if last is None or now - last > stall else Action.NONE


def _chunks(items: Iterable[Job], size: int) -> Iterator[list[Job]]:
    chunk: list[Job] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _task_key(job: Job) -> tuple[str, str] | None:
    attempt = job.current_attempt
    if attempt is None or attempt.task_id is None or attempt.status is not AttemptStatus.ACTIVE:
        return None
    return attempt.provider, attempt.task_id


# ---------------------------------------------------------------------------------------------------
# The run


class Cleanup:
    def __init__(
        self,
        store: JobStore,
        providers: Mapping[str, Provider],
        poller: Poller,
        runner: Runner,
        queue: TaskQueue,
        storage: VideoStorage | None,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        budget_s: float = BUDGET_S,
    ) -> None:
        self.store, self.providers, self.poller, self.runner = store, providers, poller, runner
        self.queue, self.storage, self.settings = queue, storage, settings
        self.clock, self.monotonic, self.budget_s = clock, monotonic, budget_s
        self._ends, self._incomplete = 0.0, False

    def run(self, *, dry_run: bool = False) -> dict[str, Any]:
        """One sweep; the counts of what it did (or, with `dry_run`, would do)."""
        now, self._ends, self._incomplete = self.clock(), self.monotonic() + self.budget_s, False
        report: dict[str, Any] = {"dryRun": dry_run, "complete": True, "errors": []}
        steps = (
            ("retention", self._retention),
            ("deadline", self._deadlines),
            ("crashWindows", self._crash_windows),
            ("finalize", self._finalizing),
            ("expired", self._expired),
        )
        for name, step in steps:
            counts: Counter[str] = Counter()
            try:
                step(counts, now, dry_run)
            except Exception as exc:  # one failing step must not keep the others from running
                log.exception("cleanup step failed", extra={"step": name})
                report["errors"].append({"step": name, "code": type(exc).__name__})
            report[name] = dict(counts)
        report["complete"] = not (self._incomplete or self.out_of_time())
        log.info("cleanup done", extra={"report": report})
        return report

    def out_of_time(self) -> bool:
        return self.monotonic() > self._ends

    # -- 1 deadline ---------------------------------------------------------------------------------

    def _deadlines(self, counts: Counter[str], now: datetime, dry_run: bool) -> None:
        error = {"code": "deadline_exceeded", "message": "the job did not finish by its deadline"}
        for job in self.store.iter_jobs_past_deadline(now):
            if self.out_of_time():
                break
            if job.finalizing:
                continue  # the finalize window bounds these (step 3)
            if dry_run:
                counts["timedOut"] += 1
                continue
            if self._finished_at_provider(job):
                counts["finishedAtProvider"] += 1
                continue
            _, changed = self.store.finish_job(job.job_id, Status.TIMED_OUT, error)
            if not changed:
                continue
            counts["timedOut"] += 1
            context = {
                "event": "stuck_job",
                "jobId": job.job_id,
                "provider": job.provider,
                "action": "timed_out",
            }
            log.warning("cleanup times out a job past its deadline", extra=context)
            attempt = job.current_attempt
            if attempt is not None and attempt.is_open and attempt.task_id is not None:
                stop_task(self.store, self.providers[attempt.provider], attempt.provider, attempt.task_id)
                counts["cancelSent"] += 1

    def _finished_at_provider(self, job: Job) -> bool:
        """Look at the job's task once more before timing it out: a task its provider finished (its
        poll chain lost with a crashed host, say) completes the job rather than being cancelled."""
        attempt = job.current_attempt
        if attempt is None or not attempt.is_open or attempt.task_id is None:
            return False
        try:
            self.poller.refresh(attempt.provider, attempt.task_id)
        except ProviderError as exc:
            log.warning("last look before the time-out failed", extra={"jobId": job.job_id, "code": exc.code})
            return False
        after = self.store.get_job(job.job_id)
        return after is not None and (is_terminal(after.status) or after.finalizing)

    # -- 2 crash windows ----------------------------------------------------------------------------

    def _crash_windows(self, counts: Counter[str], now: datetime, dry_run: bool) -> None:
        quiet = min(SUBMIT_GRACE, RESUME_GRACE, NEVER_CHECKED_GRACE, *map(self._orphan_after, self.providers))
        for chunk in _chunks(self.store.iter_stale_active_jobs(now - quiet), CHUNK):
            tasks = self.store.get_tasks(k for k in map(_task_key, chunk) if k is not None)
            for job in chunk:
                key = _task_key(job)
                task = tasks.get(key) if key else None
                orphan_after = self._orphan_after(job.provider) if job.provider else NEVER_CHECKED_GRACE
                action = crash_action(job, task, now, orphan_after=orphan_after)
                if action is not Action.NONE:
                    counts[action.value] += 1
                    if not dry_run:
                        self._resolve(job, task, action, now)
            if self.out_of_time():
                break

    def _orphan_after(self, provider: str) -> timedelta:
        return timedelta(seconds=ORPHAN_FACTOR * self.poller.envelopes(provider).max_delay_s)

    def _resolve(self, job: Job, task: TaskRecord | None, action: Action, now: datetime) -> None:
        context = {"event": "stuck_job", "jobId": job.job_id, "provider": job.provider, "action": str(action)}
        log.warning("cleanup resolves a stuck job", extra=context)
        if action is Action.RESOLVE_SUBMITTING:
            attempt = job.current_attempt
            error = {
                "code": "outcome_unknown",
                "message": "the provider create was never recorded (the process stopped); not repeated",
                "provider": job.provider,
                "fallbackAllowed": True,
            }
            fallback = self.store.record_attempt_failure(
                job.job_id, attempt.attempt_id, error, fallback_allowed=True, unknown=True
            )
            if fallback is not None:
                self.runner.run(job.job_id)
        elif action is Action.RESUME:
            self.runner.run(job.job_id)
        elif action is Action.FAIL:
            error = {"code": "no_provider", "message": "no provider is left to try"}
            self.store.finish_job(job.job_id, Status.FAILED, error)
        elif action is Action.POLL and task is not None:
            self._poll_now(task, now)

    def _poll_now(self, task: TaskRecord, now: datetime) -> None:
        """Look at the task now, then restart its poll chain under a name no earlier poll used."""
        try:
            self.poller.refresh(task.provider, task.task_id)
        except ProviderError as exc:  # the poll enqueued below deals with provider trouble
            log.warning("refresh failed", extra={"taskId": task.task_id, "code": exc.code})
        after = self.store.get_task(task.provider, task.task_id)
        if after is None or is_terminal(after.status):
            return
        self.queue.enqueue_poll(
            job_id=task.job_id,
            provider=task.provider,
            task_id=task.task_id,
            poll_number=after.last_poll_number + 1,
            delay_s=SWEEP_POLL_DELAY_S,
            renewal=f"sweep:{now:%Y%m%dT%H%M%S}",
        )

    # -- 3 finalizing -------------------------------------------------------------------------------

    def _finalizing(self, counts: Counter[str], now: datetime, dry_run: bool) -> None:
        for job in self.store.iter_finalizing_jobs():
            if self.out_of_time():
                break
            action = finalize_action(job, now, max_tries=self.settings.finalize_max_attempts)
            if action is Action.NONE:
                continue
            counts[action.value] += 1
            if not dry_run:
                self._finalize_action(job, action, now)

    def _finalize_action(self, job: Job, action: Action, now: datetime) -> None:
        attempt_id = job.finalize.attempt_id
        if action is Action.REQUEUE_FINALIZE:
            renewal = f"sweep:{now:%Y%m%dT%H%M%S}"
            self.queue.enqueue_finalize(job_id=job.job_id, attempt_id=attempt_id, renewal=renewal)
            self.store.note_finalize_requeued(job.job_id, attempt_id)
            return
        last = job.finalize.last_error or {}
        error = {
            "code": last.get("code") or "finalize_timeout",
            "message": last.get("message") or "timed out",
        }
        if not self.store.release_finalize(job.job_id, attempt_id, error, give_up=True):
            return
        context = {
            "event": "finalize_failed",
            "jobId": job.job_id,
            "provider": job.provider,
            "code": error["code"],
        }
        log.error("finalize given up by the cleanup; job failed", extra=context)
        if self.storage:
            self.storage.delete_prefix(job_prefix(job.job_id))

    # -- 0 retention, 4 expired ---------------------------------------------------------------------

    def _retention(self, counts: Counter[str], now: datetime, dry_run: bool) -> None:
        def drop_objects(page: list[ExpiredJob]) -> None:
            if self.storage is not None:
                counts["objects"] += _delete_objects(self.storage, page, dry_run)

        def half_spent() -> bool:  # the live jobs' steps keep the other half of the budget
            return self.monotonic() > self._ends - self.budget_s / 2

        cutoff = now - timedelta(days=self.settings.retention_days)
        jobs, tasks = self.store.purge_jobs(
            cutoff, dry_run=dry_run, before_delete=drop_objects, stop=half_spent
        )
        if half_spent():
            self._incomplete = True
        counts.update(jobs=jobs, taskRecords=tasks)

    def _expired(self, counts: Counter[str], now: datetime, dry_run: bool) -> None:
        for name, collection in (("webhookEvents", "webhook_events"), ("quotaCounters", "quota")):
            counts[name] += self.store.purge_expired(
                self.settings.collection(collection), now, dry_run=dry_run, stop=self.out_of_time
            )


def _delete_objects(storage: VideoStorage, page: list[ExpiredJob], dry_run: bool) -> int:
    """The stored objects of a page of expired jobs: named ones directly, unnamed ones by prefix."""
    named = [path for expired in page for path in expired.objects]
    unnamed = [expired.job_id for expired in page if expired.stored and not expired.objects]
    if dry_run:
        return len(named)
    # a StorageError propagates: the records stay until their objects are gone (next run)
    return storage.delete(named) + sum(storage.delete_prefix(job_prefix(j)) for j in unnamed)
