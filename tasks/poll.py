"""The poll step: fetch one provider task, apply it, schedule the next look (idempotent).

    poll n arrives --terminal / n < last applied--> 2xx, nothing else
        |            --n == last applied--> make sure poll n+1 exists (a retried delivery), 2xx
        v
    provider.get (outside any store change)
        |-- transient trouble (5xx, 429, timeout) --> poll n+1 later (Retry-After honoured), 2xx
        |-- task gone (404) / hard error ----------> attempt failed (fallback when allowed)
        v
    store.apply_snapshot (one change; the job's progress and estimated finish move with every
        |                 reading, even an unchanged one: jobs/progress.py)
        |                                    --fallback--> Runner.run: next provider's attempt
        |                                    --succeeded, bucket set--> enqueue finalize (named)
        |
        |-- terminal --> done
        `-- else next_delay(...) --None (envelope spent)--> cancel at provider, attempt timed out
                              `--delay--> enqueue poll n+1 (named: duplicates collapse)

When the handler answers 5xx: only when the project's own infrastructure fails (Firestore or
Cloud Tasks unreachable), so Cloud Tasks retries the same poll; provider trouble never does, so it
never becomes a retry storm. `refresh` is the same fetch-and-apply without scheduling, used by the
status check and the webhooks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from jobs.access import stop_task
from jobs.records import TaskRecord
from jobs.rules import Verdict
from jobs.runner import Runner
from jobs.store import ApplyOutcome, JobStore
from jobs.txn import utcnow
from logs import get_logger
from providers.base import NotFound, Provider, ProviderError, ProviderSnapshot, Status, is_terminal
from tasks.queue import TaskQueue
from tasks.renders import RenderHistory
from tasks.schedule import Envelope, Reading, envelope_for, first_look, next_delay, render_seen

log = get_logger("tasks.poll")


@dataclass(frozen=True)
class PollResult:
    """What one poll did, for the response body and the logs."""

    outcome: str  # skipped | deferred | rescheduled | applied | stopped | timed_out | missing
    job_id: str | None = None
    status: str | None = None
    next_poll: int | None = None
    delay_s: float | None = None


class FirstPoll:
    """Enqueues poll 1 of a newly created provider task (what `Runner` is handed to schedule with)."""

    def __init__(
        self,
        queue: TaskQueue,
        *,
        envelopes: Callable[[str], Envelope] = envelope_for,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.queue, self.envelopes, self.rand = queue, envelopes, rand

    def __call__(self, job_id: str, provider: str, task_id: str) -> None:
        delay = next_delay(self.envelopes(provider), elapsed_s=0.0, poll_count=0, rand=self.rand())
        self.queue.enqueue_poll(
            job_id=job_id, provider=provider, task_id=task_id, poll_number=1, delay_s=delay or 0.0
        )


class Poller:
    def __init__(
        self,
        store: JobStore,
        providers: Mapping[str, Provider],
        queue: TaskQueue,
        runner: Runner,
        *,
        clock: Callable[[], datetime] = utcnow,
        envelopes: Callable[[str], Envelope] = envelope_for,
        rand: Callable[[], float] = random.random,
        history: RenderHistory | None = None,
    ) -> None:
        self.store = store
        self.providers = providers
        self.queue = queue
        self.runner = runner
        self.clock = clock
        self.envelopes = envelopes
        self.rand = rand
        self.history = history if history is not None else RenderHistory()

    def poll(self, *, provider: str, task_id: str, poll_number: int) -> PollResult:
        task = self.store.get_task(provider, task_id)
        if task is None:
            return PollResult("missing")
        if is_terminal(task.status) or poll_number < task.last_poll_number:
            return PollResult("skipped", task.job_id, str(task.status))
        if poll_number == task.last_poll_number:  # this poll ran; its next enqueue may not have
            return self._schedule_next(task, poll_number, task.status, task.progress)
        if poll_number == 1 and task.poll_count == 0 and (wait := self._too_early(task)) is not None:
            self._enqueue(task, poll_number + 1, wait)  # no render of late is done yet: nothing to see
            return PollResult("deferred", task.job_id, str(task.status), poll_number + 1, wait)
        try:
            snapshot = self.providers[provider].get(task_id)
        except ProviderError as exc:
            return self._on_fetch_error(task, poll_number, exc)
        outcome = self.apply(provider, task_id, snapshot, poll_number)
        if outcome.job_status is not None and is_terminal(outcome.job_status) and not outcome.task_terminal:
            stop_task(self.store, self.providers[provider], provider, task_id)  # e.g. cancelled meanwhile
            return PollResult("stopped", outcome.job_id, str(outcome.job_status))
        if outcome.task_status == Status.COMPLETED and outcome.verdict is Verdict.APPLY:
            self._learn(task)
        if outcome.verdict is Verdict.DUPLICATE or outcome.task_terminal:  # a stale reading goes on
            return PollResult("applied", outcome.job_id, str(outcome.task_status))
        return self._schedule_next(task, poll_number, snapshot.status, snapshot.progress)

    def refresh(self, provider: str, task_id: str) -> ApplyOutcome | None:
        """Fetch and apply now, without scheduling (status checks, webhooks); None if unknown."""
        task = self.store.get_task(provider, task_id)
        if task is None or is_terminal(task.status):
            return None
        try:
            snapshot = self.providers[provider].get(task_id)
        except NotFound as exc:
            snapshot = self._gone(task, exc)
        return self.apply(provider, task_id, snapshot)

    def apply(
        self, provider: str, task_id: str, snapshot: ProviderSnapshot, poll_number: int | None = None
    ) -> ApplyOutcome:
        """Apply a snapshot and do what it calls for: the finalize step, or the next provider."""
        outcome = self.store.apply_snapshot(provider, task_id, snapshot, poll_number)
        self._after_apply(outcome)
        return outcome

    # -- steps --------------------------------------------------------------------------------------

    def _after_apply(self, outcome: ApplyOutcome) -> None:
        if outcome.finalize_attempt is not None:  # the output is copied to storage before completing
            self.queue.enqueue_finalize(job_id=outcome.job_id, attempt_id=outcome.finalize_attempt)
        if outcome.fallback_to is not None:
            log.info("falling back", extra={"jobId": outcome.job_id, "provider": outcome.fallback_to})
            self.runner.run(outcome.job_id)

    def _gone(self, task: TaskRecord, exc: ProviderError) -> ProviderSnapshot:
        """A task the provider no longer knows: deleted by our own cancel when its job has ended
        (a GET after a DELETE may answer 404), else vanished (failed; another provider may try)."""
        context = {"jobId": task.job_id, "provider": task.provider, "taskId": task.task_id}
        job = self.store.get_job(task.job_id)
        if job is not None and is_terminal(job.status):
            log.info("provider task deleted after its job ended", extra=context)
            return ProviderSnapshot(task_id=task.task_id, status=Status.CANCELLED, provider_status="DELETED")
        log.warning("provider task vanished", extra={**context, "code": exc.code})
        return _vanished(task.task_id, exc)

    def _on_fetch_error(self, task: TaskRecord, poll_number: int, exc: ProviderError) -> PollResult:
        context = {"jobId": task.job_id, "provider": task.provider, "taskId": task.task_id, "code": exc.code}
        if isinstance(exc, NotFound):
            outcome = self.apply(task.provider, task.task_id, self._gone(task, exc), poll_number)
            return PollResult("applied", task.job_id, str(outcome.task_status))
        if not exc.retryable:
            log.error("provider refused the status read", extra=context)
        else:
            log.warning("provider trouble; polling later", extra=context)
        return self._schedule_next(task, poll_number, task.status, task.progress, at_least=exc.retry_after)

    def _schedule_next(
        self,
        task: TaskRecord,
        poll_number: int,
        status: Status,
        progress: float,
        at_least: float | None = None,
    ) -> PollResult:
        first, _ = _readings(task)
        delay = next_delay(
            self.envelopes(task.provider),
            elapsed_s=self._elapsed(task),
            poll_count=poll_number,
            progress=progress,
            status=str(status),
            first_reading=first,
            queued_until_s=task.queued_until_s,
            prior=self.history.prior(task.provider),
            rand=self.rand(),
        )
        if delay is None:
            return self._time_out(task)
        delay = max(delay, at_least or 0.0)
        self._enqueue(task, poll_number + 1, delay)
        return PollResult("rescheduled", task.job_id, str(status), poll_number + 1, delay)

    def _enqueue(self, task: TaskRecord, poll_number: int, delay: float) -> None:
        self.queue.enqueue_poll(
            job_id=task.job_id,
            provider=task.provider,
            task_id=task.task_id,
            poll_number=poll_number,
            delay_s=delay,
        )

    def _elapsed(self, task: TaskRecord) -> float:
        return (self.clock() - task.created_at).total_seconds() if task.created_at else 0.0

    def _too_early(self, task: TaskRecord) -> float | None:
        """Seconds to wait before the first look when recent renders say none ends this soon."""
        envelope, prior = self.envelopes(task.provider), self.history.prior(task.provider)
        if prior is None:  # nothing learned yet: the envelope's first delay stands
            return None
        wait = first_look(envelope, prior) - self._elapsed(task)
        return wait if wait >= max(envelope.update_interval_s, 1.0) else None

    def _learn(self, task: TaskRecord) -> None:
        """A poll saw the task finished: what its render took goes into the provider's history."""
        first, last = _readings(task)
        envelope = self.envelopes(task.provider)
        self.history.record(
            task.provider, render_seen(envelope, first, last, task.queued_until_s, self._elapsed(task))
        )

    def _time_out(self, task: TaskRecord) -> PollResult:
        """The polling envelope is spent: cancel at the provider, close the attempt, maybe fall back."""
        context = {"jobId": task.job_id, "provider": task.provider, "taskId": task.task_id}
        try:
            self.providers[task.provider].cancel(task.task_id)
        except ProviderError as exc:  # best effort: the record is closed either way
            log.warning("cancel after time-out failed", extra={**context, "code": exc.code})
        error = {"code": "provider_timeout", "message": f"{task.provider} did not finish in time"}
        next_provider = self.store.expire_task(task.provider, task.task_id, error)
        log.warning("provider task timed out", extra=context)
        if next_provider is not None:
            self.runner.run(task.job_id)
        return PollResult("timed_out", task.job_id, str(Status.TIMED_OUT))


def _vanished(task_id: str, exc: ProviderError) -> ProviderSnapshot:
    """A task the provider no longer knows: failed, and another provider may try."""
    return ProviderSnapshot(
        task_id=task_id,
        status=Status.FAILED,
        provider_status="NOT_FOUND",
        failure_code="task_not_found",
        failure_message=exc.message,
        fallback_allowed=True,
    )


def _readings(task: TaskRecord) -> tuple[Reading | None, Reading | None]:
    """The first and the last progress figure polls saw of `task` (jobs/rules.py keeps them)."""
    first = last = None
    if task.first_reading_s is not None and task.first_progress is not None:
        first = Reading(task.first_reading_s, task.first_progress)
    if task.last_reading_s is not None and task.last_progress is not None:
        last = Reading(task.last_reading_s, task.last_progress)
    return first, last
