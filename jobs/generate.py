"""`generate_video`'s service: prompt, provider ranking, budget, job, first attempt.

repeat of an Idempotency-Key? --yes--> the same job (200), nothing sent
    | no
build prompt -> validate per provider -> none can take it? --> 400 (names the reason), nothing written
    |
rank (priority, health, load, quality, content, cost, tier, preference) -> none? --> 503
    |
budget: first candidate within the project's quota? none --> 429 + Retry-After, nothing written
    |
create job (idempotent) -> Runner.run: one create per attempt, fallback down the ranking
    |
submitted --> 202 {jobId, provider, estimate, where to watch}   nobody took it --> 503, job failed
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from api import GenerateRequest
from errors import ApiError
from jobs.model import Job
from jobs.service import Runner, Submission, video_request
from jobs.store import IdempotencyConflict, JobStore, NewJob, job_id_for
from providers import PRIORITY, prompts, selection
from providers.base import Provider, ProviderError, VideoRequest
from providers.circuit import CLOSED


@dataclass(frozen=True)
class Result:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def generate(
    deps: Any, owner_uid: str, req: GenerateRequest, idempotency_key: str | None, user_tier: str = "free"
) -> Result:
    """Accept one video request from `owner_uid` (see the module docstring for the flow)."""
    key = _check_key(idempotency_key)
    store: JobStore = deps.store
    if key is not None:
        existing = store.get_job(job_id_for(owner_uid, key))
        if existing is not None:
            return _repeat(existing, req, deps)
    if req.format == "gif" and deps.settings.storage_bucket is None:
        message = "format gif needs the storage bucket (STORAGE_BUCKET), where GIFs are made; ask for mp4"
        raise ApiError(400, "unsupported_format", message, field="format")
    prompt = _prompt(req)
    template = VideoRequest(
        job_id="pending",
        attempt_id="pending",
        prompt_text=prompt.runway_prompt,
        script=prompt.heygen_script,
        **_options(req),
    )
    invalid = _invalid_reasons(deps.providers, template)
    if deps.providers and len(invalid) == len(deps.providers):
        raise ApiError(400, "unsupported_request", "; ".join(f"{p}: {r}" for p, r in invalid.items()))
    ranking = _rank(deps, req, template, invalid, user_tier)
    if not ranking.candidates:
        retry = ranking.retry_after_s
        headers = {"Retry-After": str(math.ceil(retry))} if retry is not None else None
        message = "no provider can take this video now"
        raise ApiError(503, "no_provider", message, headers=headers, reasons=ranking.excluded)
    candidates = _within_budget(deps.quota, ranking.candidates)
    new = NewJob(
        owner_uid=owner_uid,
        idempotency_key=key,
        request=req.stored(),
        candidates=candidates,
        prompt=prompt.to_dict(),
        selection=ranking.to_doc(),
        estimated_usd=_estimate(deps.providers[candidates[0]], template),
    )
    try:
        job, created = store.create_job(new)
    except IdempotencyConflict:
        raise ApiError(
            409, "idempotency_key_reused", "this Idempotency-Key was used for another request"
        ) from None
    if not created:
        return _accepted(job, job.doc.get("selection", {}), 200, deps)
    runner: Runner = deps.runner
    submission = runner.run(job.job_id, admitted=candidates[0])
    job = store.get_job(job.job_id) or job
    if not submission.submitted:
        return _rejected(job, submission)
    return _accepted(job, ranking.to_doc(), 202, deps)


def _repeat(job: Job, req: GenerateRequest, deps: Any) -> Result:
    """A request repeated with its Idempotency-Key: the same job, or 409 if the body differs."""
    fingerprint = NewJob(owner_uid=job.owner_uid, request=req.stored(), candidates=()).fingerprint()
    if job.doc.get("requestFingerprint") != fingerprint:
        raise _key_reused()
    return _accepted(job, job.doc.get("selection", {}), 200, deps)


def _key_reused() -> ApiError:
    return ApiError(409, "idempotency_key_reused", "this Idempotency-Key was used for another request")


def _check_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 printable characters")
    return key


def _prompt(req: GenerateRequest) -> prompts.PromptResult:
    try:
        return prompts.build_prompt(req.script, req.style, req.camera_motion, req.camera_intensity)
    except ValueError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None


def _options(req: GenerateRequest) -> dict[str, Any]:
    return {
        "title": req.title or "",
        "style": req.style,
        "quality": req.quality,
        "duration_s": req.duration_s,
        "aspect_ratio": req.aspect_ratio,
        "resolution": req.resolution,
        "output_format": "mp4",  # providers make MP4; a GIF is made from it by the finalize step
        "image_url": req.image_url,
        "seed": req.seed,
        "camera_motion": req.camera_motion,
        "camera_intensity": req.camera_intensity,
    }


def _invalid_reasons(providers: Mapping[str, Provider], request: VideoRequest) -> dict[str, str]:
    reasons = {}
    for name, provider in providers.items():
        try:
            provider.validate(request)
        except ProviderError as exc:
            reasons[name] = exc.message
    return reasons


def _rank(
    deps: Any, req: GenerateRequest, template: VideoRequest, invalid: Mapping[str, str], tier: str
) -> selection.Ranking:
    circuits = deps.health.get_states()
    states = [
        selection.ProviderState(
            name=name,
            priority=PRIORITY.index(name) + 1,
            capabilities=provider.capabilities,
            circuit=circuits.get(name, CLOSED),
            est_cost_usd=_estimate(provider, template),
            invalid_reason=invalid.get(name),
        )
        for name, provider in deps.providers.items()
    ]
    wanted = selection.SelectionRequest(
        style=req.style,
        quality=req.quality,
        duration_s=req.duration_s,
        wants_avatar=req.kind == "avatar",
        user_tier=tier,
        preference=req.provider,
    )
    return selection.rank(wanted, states, now=deps.store.clock())


def _estimate(provider: Provider, request: VideoRequest) -> float | None:
    try:
        return provider.estimate_cost(request).usd
    except ProviderError:
        return None


def _within_budget(quota: Any, candidates: tuple[str, ...]) -> tuple[str, ...]:
    """Candidates reordered so the first is within budget (its slot taken); 429 when none is."""
    waits = []
    for index, name in enumerate(candidates):
        decision = quota.try_acquire(name)
        if decision.allowed:
            return (name, *candidates[:index], *candidates[index + 1 :])
        waits.append(decision.retry_after_s if decision.retry_after_s is not None else 60.0)
    retry = str(math.ceil(min(waits)))
    raise ApiError(
        429,
        "over_quota",
        "every provider is over the request budget; retry later",
        headers={"Retry-After": retry},
    )


def _accepted(job: Job, chosen: Mapping[str, Any], status: int, deps: Any) -> Result:
    body = {
        "jobId": job.job_id,
        "status": str(job.status),
        "provider": job.provider,
        "estimatedCostUsd": job.doc.get("estimatedCostUsd"),
        "selection": dict(chosen),
        "statusUrl": _status_url(deps, job.job_id),
        "document": f"{deps.settings.jobs_collection}/{job.job_id}",
    }
    return Result(status, body)


def _status_url(deps: Any, job_id: str) -> str | None:
    if deps.settings.functions_base_url is None:
        return None
    return f"{deps.settings.function_url('runwayml_status_check')}?jobId={job_id}"


def _rejected(job: Job, submission: Submission) -> Result:
    reasons = [
        {"provider": e.get("provider"), "code": e.get("code"), "message": e.get("message")}
        for e in submission.errors
    ]
    message = "no provider could take this video: " + "; ".join(
        f"{r['provider']}: {r['code']}" for r in reasons
    )
    return Result(
        503, {"error": {"code": "no_provider", "message": message, "jobId": job.job_id, "reasons": reasons}}
    )


__all__ = ["Result", "generate", "video_request"]
