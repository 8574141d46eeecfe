"""Running a job's attempts: one provider create per attempt, fallback down the ranking.

    next candidate --admit?--> begin_attempt (reserve) --> provider.create (once) --> record_submission
                               (the first: reserved with the job's creation)
         ^            |no                                        | error                  |
         |            v                                          v                        v
         `---- record_attempt_failure (fallback allowed?) <------'                 schedule poll 1

Only the caller that reserved an attempt sends the create, and it never sends it twice: a
create whose outcome is unknown closes the attempt as `unknown` (the job may fall back to another
provider, never repeat on the same one). A provider that is misconfigured (`ConfigError`, e.g.
HEYGEN_AVATAR_ID missing) fails its attempt like a refused create: closed, fallback allowed, never
left `submitting`. The queue and the quota check are handed in, so this module never imports `tasks/`.

Log events (the log-based metrics of docs/OPERATIONS.md): `fallback` (`provider` the one given up,
`toProvider` the next) when a job's next attempt goes to another provider, whatever sent it there
(a failed create, a failed or timed-out task, the cleanup); `limit_refused` when the project's
budget refuses an attempt.

Crash windows and what resolves them (`tasks/cleanup.py`): a process that dies after reserving an
attempt but before recording the create leaves it `submitting`; a sweep closes it as `unknown` after
a grace period and the job falls back or fails. One that dies after recording but before the first
poll leaves an active task that no poll looks at; the sweep polls it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from config import ConfigError
from jobs import rules
from jobs.records import Attempt, Job
from jobs.store import JobStore
from logs import get_logger
from providers.base import (
    ContentRejected,
    InvalidRequest,
    OutcomeUnknown,
    Provider,
    ProviderError,
    RateLimited,
    VideoRequest,
)
from providers.quota import ALLOWED, QuotaDecision

log = get_logger("jobs.runner")

SchedulePoll = Callable[[str, str, str], None]  # (job id, provider, task id) -> enqueue poll 1


class Admission(Protocol):
    """May this provider take one more request costing `usd` now? (the project's own budget;
    `spend`: today's spend per provider, when the caller has just read it)."""

    def __call__(
        self, provider: str, usd: float | None, spend: Mapping[str, float] | None = None
    ) -> QuotaDecision: ...


class Observer(Protocol):
    """Told about each provider call's outcome (feeds the circuit breaker)."""

    def __call__(self, provider: str, error: ProviderError | None, latency_ms: float) -> None: ...


def admit_all(provider: str, usd: float | None, spend: Mapping[str, float] | None = None) -> QuotaDecision:
    return ALLOWED


def observe_nothing(provider: str, error: ProviderError | None, latency_ms: float) -> None:
    return None


@dataclass(frozen=True)
class Submission:
    """How a run of attempts ended: submitted to `provider`, or not (see `errors`)."""

    job_id: str
    provider: str | None = None
    task_id: str | None = None
    errors: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    @property
    def submitted(self) -> bool:
        return self.task_id is not None


def video_request(job: Job, attempt_id: str) -> VideoRequest:
    """The provider-neutral request for one attempt, from what the job holds (pure; the one builder)."""
    req = job.request
    return VideoRequest(
        job_id=job.job_id,
        attempt_id=attempt_id,
        prompt_text=job.runway_prompt,
        script=job.heygen_script,
        title=req.title or f"CV video {job.job_id[:8]}",
        style=req.style,
        quality=req.quality,
        duration_s=req.duration_s,
        aspect_ratio=req.aspect_ratio,
        resolution=req.resolution,
        output_format="mp4",  # a GIF is made from the MP4 by the finalize step (tasks/finalize.py)
        image_url=req.image_url,
        seed=req.seed,
        camera_motion=job.camera_motion,
        camera_intensity=req.camera_intensity,
    )


def estimate_usd(provider: Provider, request: VideoRequest) -> float | None:
    """What the provider would charge for this request, or None when it cannot say."""
    try:
        return provider.estimate_cost(request).usd
    except ProviderError:
        return None


def over_quota_error(provider: str, decision: QuotaDecision) -> dict[str, Any]:
    """The attempt's error when the project's budget refuses it (fallback allowed)."""
    if decision.window is not None and decision.window.endswith("spend"):
        message, code = f"the project's {decision.window} cap for today is reached", "spend_cap_reached"
    else:
        message, code = f"{provider} is over the project's request budget", "over_quota"
    error = RateLimited(message, provider=provider)
    return {**error.to_dict(), "code": code, "retryAfter": decision.retry_after_s}


class Runner:
    """Runs attempts for jobs with the providers, store, queue and guards it is given."""

    def __init__(
        self,
        store: JobStore,
        providers: Mapping[str, Provider],
        schedule_poll: SchedulePoll,
        *,
        admit: Admission = admit_all,
        observe: Observer = observe_nothing,
    ) -> None:
        self.store = store
        self.providers = providers
        self.schedule_poll = schedule_poll
        self.admit = admit
        self.observe = observe

    def run(
        self,
        job_id: str,
        job: Job | None = None,
        spend: Mapping[str, float] | None = None,
        begun: Attempt | None = None,
    ) -> Submission:
        """Submit the job to its next untried candidate, falling back until one takes it (`job`: the
        record as just created, `spend`: today's spend as just read, and `begun`: the attempt its
        creation reserved, when the caller has them, so they are not read or reserved again)."""
        job = job if job is not None else self.store.get_job(job_id)
        errors: list[Mapping[str, Any]] = []
        provider = rules.next_candidate(job.candidates, job.attempts) if job else None
        previous = job.attempts[-1].provider if job and job.attempts else None
        if begun is not None:
            provider, previous = begun.provider, None
        while job is not None and provider is not None:
            attempt, begun = begun or self.store.begin_attempt(job_id, provider), None
            if attempt is None:  # terminal, or another caller holds the open attempt
                break
            if previous is not None and previous != provider:
                context = {"event": "fallback", "jobId": job_id, "provider": previous, "toProvider": provider}
                log.info(f"falling back from {previous} to {provider}", extra=context)
            previous = provider
            outcome = self._attempt(job, provider, attempt.attempt_id, spend)
            spend = None  # a fallback's budget check reads today's spend afresh
            if isinstance(outcome, Submission):
                return Submission(job_id, outcome.provider, outcome.task_id, tuple(errors))
            errors.append(outcome)
            provider = self.store.record_attempt_failure(
                job_id,
                attempt.attempt_id,
                outcome,
                fallback_allowed=bool(outcome.get("fallbackAllowed")),
                unknown=outcome.get("code") == OutcomeUnknown.default_code,
            )
        return Submission(job_id, errors=tuple(errors))

    def _attempt(
        self, job: Job, provider: str, attempt_id: str, spend: Mapping[str, float] | None
    ) -> Submission | dict[str, Any]:
        """One attempt: the budget slot (taken only for a create about to be sent), then exactly one
        create; an error dict on failure."""
        request = video_request(job, attempt_id)
        decision = self.admit(provider, estimate_usd(self.providers[provider], request), spend)
        if not decision.allowed:
            context = {"event": "limit_refused", "jobId": job.job_id, "provider": provider}
            log.info("the project's budget refused an attempt", extra=context)
            return over_quota_error(provider, decision)
        started = time.monotonic()
        try:
            self.providers[provider].validate(request)
            result = self.providers[provider].create(request)
        except ProviderError as exc:
            if not isinstance(exc, InvalidRequest | ContentRejected):
                self.observe(provider, exc, (time.monotonic() - started) * 1000)
            log.warning(
                "provider create failed",
                extra={"jobId": job.job_id, "provider": provider, "attemptId": attempt_id, "code": exc.code},
            )
            return exc.to_dict()
        except ConfigError as exc:  # the provider cannot work here; another one may
            context = {"event": "provider_misconfigured", "jobId": job.job_id, "provider": provider}
            log.error(f"provider misconfigured: {exc.message}", extra={**context, "code": exc.code})
            return {**exc.to_dict(), "provider": provider, "fallbackAllowed": True}
        self.observe(provider, None, (time.monotonic() - started) * 1000)
        client = self.providers[provider]
        can_cancel = client.capabilities.supports_cancel
        if not self.store.record_submission(job.job_id, attempt_id, result, can_cancel=can_cancel):
            self._stop_orphan(job.job_id, provider, result.task_id, can_cancel)
            return Submission(job.job_id, provider, result.task_id)
        log.info(
            "provider task created",
            extra={
                "jobId": job.job_id,
                "provider": provider,
                "taskId": result.task_id,
                "attemptId": attempt_id,
            },
        )
        self.schedule_poll(job.job_id, provider, result.task_id)
        return Submission(job.job_id, provider, result.task_id)

    def _stop_orphan(self, job_id: str, provider: str, task_id: str, can_cancel: bool) -> None:
        """A task created after its attempt was closed (a cancel during the create): stop it."""
        context = {"jobId": job_id, "provider": provider, "taskId": task_id, "event": "orphan_task"}
        log.warning("provider task created after its attempt was closed; stopping it", extra=context)
        if not can_cancel:
            return
        try:
            self.providers[provider].cancel(task_id)
        except ProviderError as exc:
            log.warning("cancel of an orphan task failed", extra={**context, "code": exc.code})
