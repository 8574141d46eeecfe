"""RunwayML provider: the developer API, version 2024-11-06, behind the `Provider` protocol.

Calls (base URL and version from settings; every call sends `Authorization: Bearer <key>` and
`X-Runway-Version`, with the (connect, read) timeouts from settings)::

    create   POST   /v1/text_to_video | /v1/image_to_video  -> {"id", "estimatedCost": {"credits"}}
    get      GET    /v1/tasks/{id}        (no bulk call: `get_many` loops)
    cancel   DELETE /v1/tasks/{id}        (cancels an active task, deletes a finished one)
    health   GET    /v1/organization

Request mapping (pure functions): `choose_model` takes `request.model` when given; else 1080p ->
veo3.1 (premium) or veo3.1_fast (standard); an input image at standard quality -> gen4_turbo;
otherwise gen4.5. Aspect ratio x resolution -> `ratio` (1080p only on veo models). Camera motion
and intensity become a sentence at the end of the prompt (the API has no motion field). Veo models
take 4, 6 or 8 seconds: `wire_duration` rounds a request to the nearest of those (ties round up;
9-10 s become 8 s) rather than rejecting it; gen4.5 and gen4_turbo take 2-10 s as asked.

Status table::

    PENDING, THROTTLED -> queued           RUNNING -> processing (progress 0-1, or 0-100, -> 0-100)
    SUCCEEDED -> completed                 FAILED -> failed       CANCELLED -> cancelled
    anything else -> processing when it reports progress, else queued; logged, never terminal

Failure codes of FAILED tasks -> `ProviderSnapshot.fallback_allowed`::

    SAFETY.*, INPUT_PREPROCESSING.SAFETY.*   no    content: another provider would refuse it too
    ASSET.INVALID                            no    the input itself is bad
    INTERNAL*, INPUT_PREPROCESSING.INTERNAL  yes   the provider's own failure
    any other code, or none                  yes   an unknown cause is presumed the provider's

HTTP answers, mapped once in `error_for_response`::

    400 -> InvalidRequest (InsufficientCredits when the message says credits ran out)
    401, 403 -> AuthenticationFailed    404 -> NotFound    429 -> RateLimited(retry_after)
    5xx, 408 -> ProviderUnavailable     other 4xx -> InvalidRequest
    on a create: 500, 504 and other 5xx (not 502/503) -> OutcomeUnknown
    2xx body that is not the documented JSON -> MalformedResponse; on a create -> OutcomeUnknown

Creates carry no idempotency key (the API has none), so they are repeated only when the request
provably never arrived or was refused (`retry_unsent_or_refused`: connect failure, 429, 502, 503);
a read timeout or reset on a create is `OutcomeUnknown`. Reads and cancels use `retry_read`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests

from config import ConfigError, Settings
from logs import get_logger
from providers.base import (
    AuthenticationFailed,
    Capabilities,
    CostEstimate,
    CreateResult,
    InsufficientCredits,
    InvalidRequest,
    MalformedResponse,
    ModelLimits,
    NotFound,
    OutcomeUnknown,
    ProviderError,
    ProviderHealth,
    ProviderSnapshot,
    ProviderUnavailable,
    RateLimited,
    Status,
    VideoRequest,
)
from providers.http import (
    HttpProvider,
    parse_retry_after,
    retry_read,
    retry_unsent_or_refused,
    translate_transport_error,
)

__all__ = [
    "CAPABILITIES",
    "RunwayMLProvider",
    "choose_model",
    "error_for_response",
    "failure_allows_fallback",
    "health_from_organization",
    "request_body",
    "snapshot_from_task",
    "validation_problem",
    "wire_duration",
]

T = TypeVar("T")
NAME = "runwayml"
log = get_logger("providers.runwayml")

TEXT_TO_VIDEO, IMAGE_TO_VIDEO = "text_to_video", "image_to_video"
BOTH = frozenset({TEXT_TO_VIDEO, IMAGE_TO_VIDEO})
ENDPOINTS = {"gen4.5": BOTH, "gen4_turbo": frozenset({IMAGE_TO_VIDEO}), "veo3.1": BOTH, "veo3.1_fast": BOTH}
VEO_MODELS = frozenset({"veo3.1", "veo3.1_fast"})
PROMPT_OPTIONAL_WITH_IMAGE = frozenset({"gen4_turbo", *VEO_MODELS})
RATIOS = {
    ("16:9", "720p"): "1280:720",
    ("9:16", "720p"): "720:1280",
    ("16:9", "1080p"): "1920:1080",
    ("9:16", "1080p"): "1080:1920",
}
VEO_DURATIONS = (4, 6, 8)
GEN_DURATION_RANGE = (2, 10)
MAX_PROMPT_UNITS = 1000
MAX_SEED = 4_294_967_295
MAX_ERROR_CHARS = 300

STATUS_MAP = {
    "PENDING": Status.QUEUED,
    "THROTTLED": Status.QUEUED,
    "RUNNING": Status.PROCESSING,
    "SUCCEEDED": Status.COMPLETED,
    "FAILED": Status.FAILED,
    "CANCELLED": Status.CANCELLED,
}
NO_FALLBACK_PREFIXES = ("SAFETY", "INPUT_PREPROCESSING.SAFETY", "ASSET.INVALID")

CAPABILITIES = Capabilities(
    models=tuple(ENDPOINTS),
    min_duration_s=GEN_DURATION_RANGE[0],
    max_duration_s=GEN_DURATION_RANGE[1],
    aspect_ratios=("16:9", "9:16"),
    resolutions=("720p", "1080p"),
    formats=("mp4",),
    max_prompt_units=MAX_PROMPT_UNITS,
    supports_image_input=True,
    supports_cancel=True,
    idempotent_create=False,
    sends_webhooks=False,
)


# ---------------------------------------------------------------------------------------------------
# Request mapping (pure)


def choose_model(request: VideoRequest) -> str:
    """The model for a request: explicit, else by resolution, input image and quality."""
    if request.model is not None:
        return request.model
    if request.resolution == "1080p":
        return "veo3.1" if request.quality == "premium" else "veo3.1_fast"
    if request.image_url and request.quality == "standard":
        return "gen4_turbo"
    return "gen4.5"


def endpoint_for(request: VideoRequest) -> str:
    return IMAGE_TO_VIDEO if request.image_url else TEXT_TO_VIDEO


def prompt_units(text: str) -> int:
    """Length in UTF-16 code units, as the API counts it."""
    return len(text.encode("utf-16-le")) // 2


def wire_duration(model: str, duration_s: int) -> int:
    """Seconds sent to the API: veo models get the nearest of 4/6/8 (ties up), others as asked."""
    if model in VEO_MODELS:
        return min(VEO_DURATIONS, key=lambda allowed: (abs(allowed - duration_s), -allowed))
    return duration_s


def motion_sentence(motion: str | None, intensity: float) -> str:
    if not motion:
        return ""
    strength = "subtle" if intensity <= 0.33 else "moderate" if intensity <= 0.66 else "strong"
    return f"Camera motion: {strength} {motion.replace('_', ' ').replace('-', ' ')}."


def wire_prompt(request: VideoRequest) -> str:
    """The prompt text with the camera motion appended."""
    parts = (request.prompt_text.strip(), motion_sentence(request.camera_motion, request.camera_intensity))
    return " ".join(part for part in parts if part)


def request_body(request: VideoRequest, model: str) -> dict[str, Any]:
    """The JSON body of a create call (the request must have passed `validation_problem`)."""
    body: dict[str, Any] = {
        "model": model,
        "ratio": RATIOS[(request.aspect_ratio, request.resolution)],
        "duration": wire_duration(model, request.duration_s),
    }
    prompt = wire_prompt(request)
    if prompt:
        body["promptText"] = prompt
    if request.image_url:
        body["promptImage"] = request.image_url
    if request.seed is not None:
        body["seed"] = request.seed
    if model not in VEO_MODELS:
        body["contentModeration"] = {"publicFigureThreshold": "auto"}
    return body


def image_url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return "image_url: must be an https:// URL"
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        return None
    return "image_url: must use a domain name, not an IP address"


def _model_problem(request: VideoRequest, model: str) -> str | None:
    if model not in ENDPOINTS:
        return f"model: {model!r} is not supported; use one of {', '.join(ENDPOINTS)}"
    if endpoint_for(request) not in ENDPOINTS[model]:
        return f"image_url: {model} makes video from an image only; give image_url or another model"
    return None


def _ratio_problem(request: VideoRequest, model: str) -> str | None:
    if request.aspect_ratio not in CAPABILITIES.aspect_ratios:
        return f"aspect_ratio: {request.aspect_ratio!r} is not supported; use 16:9 or 9:16"
    if request.resolution not in CAPABILITIES.resolutions:
        return f"resolution: {request.resolution!r} is not supported; use 720p or 1080p"
    if request.resolution == "1080p" and model not in VEO_MODELS:
        return f"resolution: {model} makes 720p only; 1080p needs veo3.1 or veo3.1_fast"
    return None


def _duration_problem(request: VideoRequest, model: str) -> str | None:
    low, high = (VEO_DURATIONS[0], 10) if model in VEO_MODELS else GEN_DURATION_RANGE
    if not low <= request.duration_s <= high:
        return f"duration_s: {model} takes {low}-{high} seconds, got {request.duration_s}"
    return None


def _prompt_problem(request: VideoRequest, model: str) -> str | None:
    prompt = wire_prompt(request)
    optional = request.image_url and model in PROMPT_OPTIONAL_WITH_IMAGE
    if not prompt and not optional:
        return f"prompt_text: {model} needs a prompt"
    units = prompt_units(prompt)
    if units > MAX_PROMPT_UNITS:
        return f"prompt_text: {units} UTF-16 code units with camera motion; the limit is {MAX_PROMPT_UNITS}"
    return None


def _input_problem(request: VideoRequest, model: str) -> str | None:
    if request.image_url and (problem := image_url_problem(request.image_url)):
        return problem
    if request.seed is not None and not 0 <= request.seed <= MAX_SEED:
        return f"seed: must be between 0 and {MAX_SEED}"
    return None


def validation_problem(request: VideoRequest, model: str) -> str | None:
    """The first reason the API would refuse this request, naming the field; None when fine."""
    for check in (_model_problem, _ratio_problem, _duration_problem, _prompt_problem, _input_problem):
        if problem := check(request, model):
            return problem
    return None


def estimate(model: str, duration_s: int, settings: Settings) -> CostEstimate:
    """Credits from the configured per-second rate, and their price in USD."""
    rate = settings.runwayml_credits_per_second.get(model)
    if rate is None:
        raise ConfigError(f"RUNWAYML_CREDITS_PER_SECOND has no rate for model {model}")
    credits = rate * wire_duration(model, duration_s)
    return CostEstimate(credits=credits, usd=round(credits * settings.runwayml_usd_per_credit, 4))


# ---------------------------------------------------------------------------------------------------
# Response mapping (pure)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _credits(value: object) -> float | None:
    return _number(value.get("credits")) if isinstance(value, dict) else None


def _usd(credits: float | None, usd_per_credit: float) -> float | None:
    return None if credits is None else round(credits * usd_per_credit, 4)


def _object(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MalformedResponse("RunwayML answered with JSON that is not an object", provider=NAME)
    return data


def failure_allows_fallback(code: str | None) -> bool:
    """Whether another provider may succeed where a task failed with this code."""
    return not (code or "").startswith(NO_FALLBACK_PREFIXES)


def progress_percent(raw: object, status: Status) -> float:
    """The task's progress as 0-100 (the API reports 0-1; 0-100 is tolerated)."""
    if status == Status.COMPLETED:
        return 100.0
    value = _number(raw) or 0.0
    return max(0.0, min(100.0, value * 100 if value <= 1 else value))


def _unknown_status(data: dict[str, Any]) -> Status:
    return Status.PROCESSING if "progress" in data else Status.QUEUED


def snapshot_from_task(data: object, usd_per_credit: float) -> ProviderSnapshot:
    """A task object from `GET /v1/tasks/{id}` in the project's terms."""
    task = _object(data)
    raw_status, task_id = task.get("status"), task.get("id")
    if not isinstance(raw_status, str) or not isinstance(task_id, str):
        raise MalformedResponse("RunwayML task has no status or id", provider=NAME)
    status = STATUS_MAP.get(raw_status) or _unknown_status(task)
    code = task.get("failureCode") if status == Status.FAILED else None
    credits = _credits(task.get("cost"))
    output = task.get("output") if status == Status.COMPLETED else None
    return ProviderSnapshot(
        task_id=task_id,
        status=status,
        provider_status=raw_status,
        progress=progress_percent(task.get("progress"), status),
        output_urls=tuple(url for url in output or () if isinstance(url, str)),
        failure_code=code if isinstance(code, str) else None,
        failure_message=_failure_text(task) if status == Status.FAILED else None,
        fallback_allowed=status == Status.FAILED and failure_allows_fallback(code),
        cost_credits=credits,
        cost_usd=_usd(credits, usd_per_credit),
    )


def _failure_text(task: dict[str, Any]) -> str | None:
    failure = task.get("failure")
    return str(failure)[:MAX_ERROR_CHARS] if failure else None


def create_result(data: object, model: str, usd_per_credit: float) -> CreateResult:
    body = _object(data)
    task_id = body.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise MalformedResponse("RunwayML create answer has no task id", provider=NAME)
    credits = _credits(body.get("estimatedCost"))
    return CreateResult(task_id, model, credits, _usd(credits, usd_per_credit))


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: object) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _limits(organization: dict[str, Any]) -> dict[str, ModelLimits]:
    """Per-model limits and today's usage; a missing number means "no limit" or "not reported"."""
    tier = _dict(_dict(organization.get("tier")).get("models"))
    usage = _dict(_dict(organization.get("usage")).get("models"))
    return {
        model: ModelLimits(
            max_concurrent=_count(_dict(tier.get(model)).get("maxConcurrentGenerations")),
            max_daily=_count(_dict(tier.get(model)).get("maxDailyGenerations")),
            used_today=_count(_dict(usage.get(model)).get("dailyGenerations")),
        )
        for model in sorted({*tier, *usage})
    }


def health_from_organization(data: object, usd_per_credit: float) -> ProviderHealth:
    organization = _object(data)
    balance = _number(organization.get("creditBalance"))
    return ProviderHealth(NAME, True, None, balance, _usd(balance, usd_per_credit), _limits(organization))


def _error_text(body: bytes, status: int) -> str:
    try:
        text = json.loads(body).get("error")
    except (ValueError, AttributeError):
        text = None
    return str(text)[:MAX_ERROR_CHARS] if text else f"HTTP {status}"


def error_for_response(
    status: int, body: bytes, retry_after: str | None, *, is_create: bool
) -> ProviderError | None:
    """The error an HTTP answer means (None for 2xx); the one place statuses are interpreted."""
    if 200 <= status < 300:
        return None
    text, kw = _error_text(body, status), {"provider": NAME, "http_status": status}
    if status == 400:
        return (InsufficientCredits if "enough credits" in text.lower() else InvalidRequest)(text, **kw)
    if status in (401, 403):
        return AuthenticationFailed(f"RunwayML refused the API key (HTTP {status})", **kw)
    if status == 404:
        return NotFound(f"RunwayML: {text}", **kw)
    if status == 429:
        return RateLimited(
            f"RunwayML limit reached: {text}", retry_after=parse_retry_after(retry_after), **kw
        )
    if status >= 500 and is_create and status not in (502, 503):
        return OutcomeUnknown(f"RunwayML create answered {status}; the task may exist", **kw)
    if status >= 500 or status == 408:
        return ProviderUnavailable(f"RunwayML unavailable: {text}", **kw)
    return InvalidRequest(f"RunwayML refused the request: {text}", **kw)


# ---------------------------------------------------------------------------------------------------
# The provider


class RunwayMLProvider(HttpProvider):
    """RunwayML behind the `Provider` protocol; one lazily created HTTP session per instance."""

    name = NAME
    capabilities = CAPABILITIES

    def __repr__(self) -> str:
        return f"RunwayMLProvider(base_url={self._settings.runwayml_base_url!r})"

    def validate(self, request: VideoRequest) -> None:
        if problem := validation_problem(request, choose_model(request)):
            raise InvalidRequest(problem, provider=NAME)

    def create(self, request: VideoRequest) -> CreateResult:
        self.validate(request)
        model, usd = choose_model(request), self._settings.runwayml_usd_per_credit
        path, body = f"/v1/{endpoint_for(request)}", request_body(request, model)
        result = self._call("POST", path, lambda data: create_result(data, model, usd), body=body)
        log.info("runwayml task created", extra={**_context(request), "taskId": result.task_id})
        return result

    def get(self, task_id: str) -> ProviderSnapshot:
        usd = self._settings.runwayml_usd_per_credit
        snapshot = self._call("GET", _task_path(task_id), lambda data: snapshot_from_task(data, usd))
        if snapshot.provider_status not in STATUS_MAP:
            extra = {"provider": NAME, "taskId": task_id, "status": snapshot.provider_status}
            log.warning("runwayml reported an unknown task status", extra=extra)
        return snapshot

    def get_many(self, task_ids: Iterable[str]) -> dict[str, ProviderSnapshot]:
        snapshots = {}
        for task_id in dict.fromkeys(task_ids):
            try:
                snapshots[task_id] = self.get(task_id)
            except NotFound:
                continue
        return snapshots

    def cancel(self, task_id: str) -> None:
        self._call("DELETE", _task_path(task_id), None)

    def health(self) -> ProviderHealth:
        started = time.monotonic()
        usd = self._settings.runwayml_usd_per_credit
        try:
            health = self._call("GET", "/v1/organization", lambda d: health_from_organization(d, usd))
        except (ProviderError, ConfigError) as exc:
            return ProviderHealth(NAME, reachable=False, error=f"{type(exc).__name__}: {exc}")
        return dataclasses.replace(health, latency_ms=round((time.monotonic() - started) * 1000, 1))

    def estimate_cost(self, request: VideoRequest) -> CostEstimate:
        return estimate(choose_model(request), request.duration_s, self._settings)

    # -- plumbing -----------------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, parse: Callable[[Any], T] | None, *, body: object = None
    ) -> T | None:
        is_create = method == "POST"
        try:
            return self._http.retry(
                lambda: self._attempt(method, path, parse, body, is_create),
                retry_unsent_or_refused if is_create else retry_read,
            )
        except ProviderError as exc:
            extra = {"provider": NAME, "code": exc.code, "event": f"{method} {path}"}
            log.warning("runwayml call failed: %s", type(exc).__name__, extra=extra)
            raise

    def _attempt(
        self, method: str, path: str, parse: Callable[[Any], T] | None, body: object, is_create: bool
    ) -> T | None:
        response = self._send(method, path, body, is_create)
        retry_after = response.headers.get("Retry-After")
        error = error_for_response(response.status_code, response.content, retry_after, is_create=is_create)
        if error is not None:
            raise error
        return None if parse is None else _parse(response.content, parse, is_create)

    def _send(self, method: str, path: str, body: object, is_create: bool) -> requests.Response:
        try:
            return self._http.session().request(
                method,
                self._settings.runwayml_base_url + path,
                json=body,
                headers=self._headers(),
                timeout=self._http.timeout,
            )
        except requests.RequestException as exc:
            raise translate_transport_error(exc, provider=NAME, is_create=is_create) from exc

    def _headers(self) -> dict[str, str]:
        key = self._settings.require("runwayml_api_key").get_secret_value()
        return {
            "Authorization": f"Bearer {key}",
            "X-Runway-Version": self._settings.runwayml_api_version,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }


def _parse(content: bytes, parse: Callable[[Any], T], is_create: bool) -> T:
    """Decode and map a 2xx body; on a create any surprise means the task may exist."""
    try:
        return parse(json.loads(content))
    except (ValueError, MalformedResponse) as exc:
        if is_create:
            raise OutcomeUnknown(
                "RunwayML create answer was unreadable; the task may exist", provider=NAME
            ) from exc
        if isinstance(exc, MalformedResponse):
            raise
        raise MalformedResponse("RunwayML answered with a body that is not JSON", provider=NAME) from exc


def _task_path(task_id: str) -> str:
    if not task_id:
        raise InvalidRequest("task_id: must not be empty", provider=NAME)
    return f"/v1/tasks/{quote(task_id, safe='')}"


def _context(request: VideoRequest) -> dict[str, str]:
    return {"provider": NAME, "jobId": request.job_id, "attemptId": request.attempt_id}
