"""`generate_video`'s service: plan, prompt, provider ranking, budgets, job, first attempt.

repeat of the caller's Idempotency-Key? --yes--> the same job (200), nothing sent
    | no
the plan may never ask this (quality, clip, script length)? --> 403 not_in_plan, nothing written
    |
build prompt -> validate per provider -> none can take it? --> 400 (names the reason), nothing written
    |
rank (priority, health, quality, content, cost, tier, preference) -> none? --> 503
    |
project budget: a candidate with request budget and spend cap left? none --> 429 / 503, nothing written
    |
the user's plan allows one more now (jobs per window, live jobs, USD per day)? no --> 429 user_limit
    |                                                                              + Retry-After
create job (idempotent), its first attempt reserved with it -> Runner.run: the budget slot, then
    |                       one create per attempt, fallback
    |
submitted --> 202 {jobId, provider, estimate, where to watch}   nobody took it --> 503, job failed

Every refusal above writes nothing; the user's ledger (`jobs/admission.py`) is written only when the
job is about to be created, and the provider's budget slot only when its create is about to be sent.
The ledger is read with the repeat check, in one round trip, and today's spend with the budget
check; each is used again further on rather than read twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from google.cloud import firestore

import errors
from config import Settings
from jobs import plans
from jobs.admission import UserAdmission
from jobs.guards import HealthStore, QuotaGuard
from jobs.records import AttemptStatus, Job, JobRequest, job_from_doc
from jobs.rules import job_id_for
from jobs.runner import Runner, Submission, estimate_usd, video_request
from jobs.store import IdempotencyConflict, JobStore, NewJob
from logs import get_logger
from providers import prompts, registry, selection
from providers.base import Provider, ProviderError, Status, VideoRequest, is_terminal
from providers.circuit import CLOSED

log = get_logger("jobs.generate")
RETRY_AFTER_S = 60.0  # when to try again after a refusal that names no time of its own


@dataclass(frozen=True)
class Intake:
    """What accepting a video request works with."""

    settings: Settings
    store: JobStore
    providers: Mapping[str, Provider]
    health: HealthStore
    quota: QuotaGuard
    runner: Runner
    users: UserAdmission


@dataclass(frozen=True)
class Result:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def generate(
    intake: Intake,
    owner_uid: str,
    script: str,
    request: JobRequest,
    idempotency_key: str | None,
    tier: str = "free",
) -> Result:
    """Accept one video request from `owner_uid` (see the module docstring for the flow)."""
    key = _check_key(idempotency_key)
    store = intake.store
    job_id = job_id_for(owner_uid, key)
    existing, ledger = _read_ahead(intake, owner_uid, job_id if key is not None else None)
    if existing is not None:
        return _repeat(intake, existing, owner_uid, request)
    plan, limits = plans.limits_for(intake.settings, tier)
    plans.check_request(plan, limits, script, request)
    if request.format == "gif" and intake.settings.storage_bucket is None:
        message = "format gif needs the storage bucket (STORAGE_BUCKET), where GIFs are made; ask for mp4"
        raise errors.InvalidInput(message, code="unsupported_format", field="format")
    prompt = _prompt(script, request, intake.settings)
    draft = Job("pending", owner_uid, Status.QUEUED, request=request, prompt=prompt.to_dict())
    template = video_request(draft, "pending")
    invalid = _invalid_reasons(intake.providers, template)
    if intake.providers and len(invalid) == len(intake.providers):
        reasons = "; ".join(f"{p}: {r}" for p, r in invalid.items())
        raise errors.InvalidInput(reasons, code="unsupported_request")
    ranking = _rank(intake, request, template, invalid, tier)
    if not ranking.candidates:
        message = "no provider can take this video now"
        raise errors.Unavailable(
            message, code="no_provider", retry_after=ranking.retry_after_s, reasons=ranking.excluded
        )
    estimates = {name: estimate_usd(intake.providers[name], template) for name in ranking.candidates}
    candidates, spend = _within_budget(intake.quota, ranking.candidates, estimates)
    plans.check_cost(plan, limits, estimates[candidates[0]])
    intake.users.admit(owner_uid, plan, limits, job_id, estimates[candidates[0]], ledger)
    new = NewJob(
        owner_uid=owner_uid,
        idempotency_key=key,
        request=request,
        candidates=candidates,
        prompt=draft.prompt,
        selection=ranking.to_doc(),
        estimated_usd=estimates[candidates[0]],
        job_id=job_id,
    )
    try:
        job, created = store.create_job(new, begin=True)
    except IdempotencyConflict:
        raise _key_reused() from None
    if not created:
        return _accepted(intake, job, 200)
    submission = intake.runner.run(job.job_id, job, spend, begun=job.current_attempt)
    job = store.last_written(job.job_id) or store.get_job(job.job_id) or job  # as the attempt left it
    if not submission.submitted:
        return _rejected(job, submission)
    return _accepted(intake, replace(job, selection=ranking.to_doc()), 202)


def _read_ahead(
    intake: Intake, owner_uid: str, job_id: str | None
) -> tuple[Job | None, firestore.DocumentSnapshot | None]:
    """The job of a repeated Idempotency-Key (when `job_id`) and the user's ledger, in one read."""
    ledger_ref = intake.users.ledger_ref(owner_uid)  # None: an admission that keeps no ledger
    job_ref = intake.store.job_ref(job_id) if job_id is not None else None
    refs = [ref for ref in (ledger_ref, job_ref) if ref is not None]
    if not refs:
        return None, None
    snaps = {snap.reference.path: snap for snap in intake.store.client.get_all(refs)}
    job = snaps.get(job_ref.path) if job_ref is not None else None
    existing = job_from_doc(job.to_dict()) if job is not None and job.exists else None
    return existing, snaps.get(ledger_ref.path) if ledger_ref is not None else None


def _repeat(intake: Intake, job: Job, owner_uid: str, request: JobRequest) -> Result:
    """A request repeated with its Idempotency-Key: the same job, or 409 if the body differs.

    The job id hashes the owner with the key, so another user's job cannot be found this way; the
    owner is checked anyway, so that stays true whatever the id scheme becomes."""
    if job.owner_uid != owner_uid:
        raise _key_reused()
    if job.request_fingerprint != request.fingerprint():
        raise _key_reused()
    _resume_polling(intake, job)
    return _accepted(intake, job, 200)


def _resume_polling(intake: Intake, job: Job) -> None:
    """A repeat usually follows an answer lost with a crashed instance, which may have died between
    recording the create and enqueueing its first poll: ask for poll 1 again. The poll is named, so
    it collapses into the existing one, and a poll that already ran is a no-op."""
    attempt = job.current_attempt
    if is_terminal(job.status) or attempt is None or attempt.status is not AttemptStatus.ACTIVE:
        return
    try:
        intake.runner.schedule_poll(job.job_id, attempt.provider, attempt.task_id or "")
    except errors.AppError as exc:  # the cleanup sweep resumes it otherwise
        log.warning("could not resume polling", extra={"jobId": job.job_id, "code": exc.code})


def _key_reused() -> errors.Conflict:
    return errors.Conflict("this Idempotency-Key was used for another request", code="idempotency_key_reused")


def _check_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not 1 <= len(key) <= 255 or not key.isprintable():
        message = "Idempotency-Key must be 1-255 printable characters"
        raise errors.InvalidInput(message, code="invalid_idempotency_key")
    return key


def _prompt(script: str, request: JobRequest, settings: Settings) -> prompts.PromptResult:
    """The prompt (by Gemini when PROMPT_WRITER=gemini, checked by the rules and replaced on failure)."""
    try:
        return prompts.build_prompt(
            script, request.style, request.camera_motion, request.camera_intensity, settings=settings
        )
    except ValueError as exc:
        raise errors.InvalidInput(str(exc)) from None


def _invalid_reasons(providers: Mapping[str, Provider], request: VideoRequest) -> dict[str, str]:
    reasons = {}
    for name, provider in providers.items():
        try:
            provider.validate(request)
        except ProviderError as exc:
            reasons[name] = exc.message
    return reasons


def _rank(
    intake: Intake, request: JobRequest, template: VideoRequest, invalid: Mapping[str, str], tier: str
) -> selection.Ranking:
    circuits = intake.health.get_states(intake.providers)
    states = [
        selection.ProviderState(
            name=name,
            priority=registry.spec(name).priority,
            capabilities=provider.capabilities,
            circuit=circuits.get(name, CLOSED),
            est_cost_usd=estimate_usd(provider, template),
            invalid_reason=invalid.get(name),
            traits=registry.spec(name).traits,
        )
        for name, provider in intake.providers.items()
    ]
    wanted = selection.SelectionRequest(
        style=request.style,
        quality=request.quality,
        duration_s=request.duration_s,
        wants_avatar=request.kind == "avatar",
        user_tier=tier,
        preference=request.provider,
    )
    return selection.rank(wanted, states, now=intake.store.clock())


def _within_budget(
    quota: QuotaGuard, candidates: tuple[str, ...], estimates: Mapping[str, float | None]
) -> tuple[tuple[str, ...], dict[str, float]]:
    """Candidates reordered so the first has budget left now (read only: the slot is taken just
    before its create is sent), and today's spend as read; 429 when none has request budget, 503
    when the spend caps stop all."""
    refusals = []
    for index, name in enumerate(candidates):
        decision, spend = quota.assess(name, estimates.get(name))
        if decision.allowed:
            return (name, *candidates[:index], *candidates[index + 1 :]), spend
        refusals.append(decision)
    wait = min(d.retry_after_s if d.retry_after_s is not None else RETRY_AFTER_S for d in refusals)
    if all((d.window or "").endswith("spend") for d in refusals):
        message = "the project's spend cap for today is reached; new videos can start again tomorrow (UTC)"
        raise errors.Unavailable(message, code="spend_cap_reached", retry_after=wait)
    raise errors.OverLimit("every provider is over the request budget; retry later", retry_after=wait)


def _accepted(intake: Intake, job: Job, status: int) -> Result:
    settings = intake.settings
    body = {
        "jobId": job.job_id,
        "status": str(job.status),
        "provider": job.provider,
        "estimatedCostUsd": job.estimated_cost_usd,
        "selection": dict(job.selection),
        "statusUrl": None,
        "document": intake.store.user_view_ref(job.job_id).path,  # what the owner's rules let them read
    }
    if settings.functions_base_url is not None:
        body["statusUrl"] = f"{settings.function_url('runwayml_status_check')}?jobId={job.job_id}"
    return Result(status, body)


def _rejected(job: Job, submission: Submission) -> Result:
    """503: every provider refused the create. The job, bound to its Idempotency-Key, has failed: a
    later try is a new request, with a new key, after `Retry-After` (the earliest a refusal named)."""
    reasons = [
        {"provider": e.get("provider"), "code": e.get("code"), "message": e.get("message")}
        for e in submission.errors
    ]
    message = "no provider could take this video: " + "; ".join(
        f"{r['provider']}: {r['code']}" for r in reasons
    )
    waits = [e["retryAfter"] for e in submission.errors if e.get("retryAfter") is not None]
    return Result(
        503,
        {"error": {"code": "no_provider", "message": message, "jobId": job.job_id, "reasons": reasons}},
        {"Retry-After": str(math.ceil(min(waits, default=RETRY_AFTER_S)))},
    )
