"""HeyGen API v3 wire mapping (pure): the request body, status table, error table, validation.

Status table (one place; unknown values are logged and treated as still running)::

    HeyGen status               project status   progress
    waiting, pending, queued    queued           0
    processing                  processing       0    HeyGen reports no progress: the job's is
                                                      estimated from the elapsed time (jobs/progress.py)
    completed                   completed        100  video_url, gif_url, thumbnail_url
    failed                      failed           0    fallback unless the code is content/moderation
    anything else               processing       0    logged as a warning, never a crash

A failed render may fall back to another provider unless its `failure_code` contains one of
`CONTENT_MARKERS` (moderation, content, policy, ...): the input itself was rejected, so another
provider would only be asked to make the same rejected video.

Error table (`error_from_response`, the only place HTTP answers become errors)::

    HTTP   HeyGen error code                      error                 retry  fallback
    400    content/moderation code                ContentRejected       no     no
    400    validation_error, invalid_parameter,   InvalidRequest        no     no
           download_failed (and other 4xx)
    401/403                                       AuthenticationFailed  no     no
    402    insufficient_credit                    InsufficientCredits   no     yes
    404    avatar_not_found, voice_not_found, ... NotFound              no     no
    409    request_in_progress                    RequestInProgress     yes    no
    429    rate_limit_exceeded, quota_exceeded    RateLimited           yes    yes  (Retry-After)
    408, 5xx; read timeouts, resets               ProviderUnavailable   yes    yes
    (no connection: refused, connect timeout)     ConnectFailed         yes    yes
    2xx    body that is not the documented JSON   MalformedResponse     yes    yes

Bulk reads use `GET /v3/videos/statuses?video_ids=...` (at most 100 ids), whose answer per the v3
OpenAPI spec is `{"data": [{"video_id", "status", "error"}], "has_more", "next_token"}` with
statuses queued/processing/completed/failed/not_found.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from providers.base import (
    AuthenticationFailed,
    Capabilities,
    ContentRejected,
    InsufficientCredits,
    InvalidRequest,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderHealth,
    ProviderSnapshot,
    ProviderUnavailable,
    RateLimited,
    RequestInProgress,
    Status,
    VideoRequest,
)

PROVIDER = "heygen"
MODEL = "avatar"
MAX_BULK_IDS = 100
WORDS_PER_MINUTE = 150
CONTENT_MARKERS = ("moderation", "content", "policy", "nsfw", "inappropriate", "violation")
# Avatar IV/V, USD per output second at 720p/1080p, by HEYGEN_AVATAR_TYPE (4K costs more: photo
# $0.0667, others $0.0833, but CAPABILITIES offers no 4K). Whether failed renders are charged: no source.
USD_PER_SECOND = {"photo_avatar": 0.05, "digital_twin": 0.0667, "studio_avatar": 0.0667}
USER_PATH = "/v3/users/me"  # HeyGen's own setup scripts use this; its CLI spec names /v3/user/me

CAPABILITIES = Capabilities(
    models=(MODEL,),
    min_duration_s=1,
    max_duration_s=600,  # a rough bound; the real limit is the 5000-character script
    aspect_ratios=("16:9", "9:16"),
    resolutions=("720p", "1080p"),
    formats=("mp4",),
    max_prompt_units=5000,  # characters of the spoken script
    supports_image_input=False,
    supports_cancel=False,
    idempotent_create=True,
)

STATUSES = {
    "waiting": Status.QUEUED,
    "pending": Status.QUEUED,
    "queued": Status.QUEUED,
    "processing": Status.PROCESSING,
    "completed": Status.COMPLETED,
    "failed": Status.FAILED,
}
_PROGRESS = {Status.QUEUED: 0.0, Status.PROCESSING: 0.0, Status.COMPLETED: 100.0, Status.FAILED: 0.0}
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_:.-]{1,255}")


def idempotency_key(attempt_id: str) -> str:
    """The attempt id itself when HeyGen accepts it as a key, else a stable hash of it."""
    if _KEY_PATTERN.fullmatch(attempt_id):
        return attempt_id
    return "sha256:" + hashlib.sha256(attempt_id.encode()).hexdigest()


def script_of(request: VideoRequest) -> str:
    return request.script if request.script.strip() else request.prompt_text


def expected_seconds(request: VideoRequest) -> float:
    """Spoken length of the script at ~150 words a minute, never below the requested duration."""
    words = len(script_of(request).split())
    return max(float(request.duration_s), words * 60.0 / WORDS_PER_MINUTE)


def validation_problem(request: VideoRequest) -> str | None:
    """The first reason HeyGen would refuse this request, naming the field; None when fine."""
    script, limit = script_of(request), CAPABILITIES.max_prompt_units
    if not script.strip():
        return "script: must not be empty"
    if len(script) > limit:
        return f"script: must be at most {limit} characters"
    if problem := CAPABILITIES.problem(request):
        return problem
    if not request.attempt_id:
        return "attempt_id: must not be empty (it is the idempotency key)"
    return None


def create_body(request: VideoRequest, avatar_id: str, voice_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "avatar",
        "avatar_id": avatar_id,
        "script": script_of(request),
        "aspect_ratio": request.aspect_ratio,
        "resolution": request.resolution,
        "callback_id": request.job_id,
        "title": request.title or request.job_id,
    }
    return body | ({"voice_id": voice_id} if voice_id is not None else {})


def is_content_failure(code: str | None) -> bool:
    code = (code or "").lower()
    return any(marker in code for marker in CONTENT_MARKERS)


def snapshot_from_video(
    video_id: str, data: Mapping[str, Any], usd_per_second: float | None = None
) -> ProviderSnapshot:
    """A `GET /v3/videos/{id}` `data` object (or a bulk status entry) in the project's terms.

    Cost: HeyGen charges per output second and not for failed renders, so a completed video costs
    `duration * usd_per_second` and a failed one nothing; unknown otherwise.
    """
    raw = str(data.get("status") or "")
    status = STATUSES.get(raw.lower(), Status.PROCESSING)
    code = _text(data.get("failure_code"))
    failure = status is Status.FAILED
    video_url = _text(data.get("video_url"))
    return ProviderSnapshot(
        task_id=video_id,
        status=status,
        provider_status=raw,
        progress=_PROGRESS[status],
        output_urls=(video_url,) if video_url and status is Status.COMPLETED else (),
        gif_url=_text(data.get("gif_url")),
        thumbnail_url=_text(data.get("thumbnail_url")),
        failure_code=(code or "render_failed") if failure else None,
        failure_message=_text(data.get("failure_message")) if failure else None,
        fallback_allowed=failure and not is_content_failure(code),
        cost_usd=_cost(status, data.get("duration"), usd_per_second),
    )


def _cost(status: Status, duration: object, usd_per_second: float | None) -> float | None:
    if usd_per_second is None:
        return None
    if status is Status.FAILED:
        return 0.0
    if status is Status.COMPLETED and isinstance(duration, int | float) and not isinstance(duration, bool):
        return round(float(duration) * usd_per_second, 4)
    return None


def error_fields(body: object) -> tuple[str | None, str]:
    """(code, message) from a v3 error body `{"error": {"code", "message"}}`, parsed defensively."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        return _text(error.get("code")), (_text(error.get("message")) or "")[:300]
    if isinstance(error, str):
        return None, error[:300]
    return None, ""


def error_from_response(status: int, body: object, retry_after: float | None = None) -> ProviderError:
    """Map one non-2xx HeyGen answer onto the error tree (the table in the module docstring)."""
    code, detail = error_fields(body)
    message = f"HeyGen answered {status}" + (f" {code}" if code else "") + (f": {detail}" if detail else "")
    kwargs: dict[str, Any] = {"provider": PROVIDER, "code": code, "http_status": status}
    if status == 400 and is_content_failure(code):
        return ContentRejected(message, **kwargs)
    if status in (401, 403):  # HeyGen's wording is not passed on: a message may quote the key sent
        return AuthenticationFailed(f"HeyGen refused the API key (HTTP {status})", **kwargs)
    if status == 402:
        return InsufficientCredits(message, **kwargs)
    if status == 404:
        return NotFound(message, **kwargs)
    if status == 409 and code in (None, "request_in_progress"):
        return RequestInProgress(message, **kwargs)
    if status == 429:
        return RateLimited(message, retry_after=retry_after, **kwargs)
    if status == 408 or status >= 500:
        return ProviderUnavailable(message, **kwargs)
    return InvalidRequest(message, **kwargs)


def data_of(body: object, kind: type = Mapping) -> Any:
    """The `data` member of a 2xx answer, which must be a `kind` (an object, or a list for bulk)."""
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, kind):
        raise MalformedResponse(f"HeyGen answered without a data {kind.__name__}", provider=PROVIDER)
    return data


def status_entries(body: object) -> list[Mapping[str, Any]]:
    """Entries of a bulk statuses answer: `{"data": [{"video_id", "status", "error"?}], ...}`."""
    return [entry for entry in data_of(body, list) if isinstance(entry, Mapping)]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(*values: object) -> float | None:
    numbers = (v for v in values if isinstance(v, int | float) and not isinstance(v, bool))
    return next((float(v) for v in numbers), None)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def created_video_id(body: object) -> str:
    """The video id of a create answer `{"data": {"video_id"}}`."""
    video_id = _text(data_of(body).get("video_id"))
    if video_id is None:
        raise MalformedResponse("HeyGen create answer has no data.video_id", provider=PROVIDER)
    return video_id


def health_from_user(body: object, latency_ms: float) -> ProviderHealth:
    """`GET /v3/users/me` as health. Credits: `usage_based.remaining_credits`, else the sum of
    `subscription.credits.*.remaining`, else a wallet kept in credits; USD only from a wallet whose
    `currency` says so (Enterprise wallets count credits: never assume USD)."""
    data = _mapping(body.get("data")) if isinstance(body, Mapping) else {}
    wallet = _mapping(data.get("wallet"))
    currency = str(wallet.get("currency") or "").lower()
    balance = _number(wallet.get("remaining_balance"))
    credits = _plan_credits(data)
    return ProviderHealth(
        provider=PROVIDER,
        reachable=True,
        latency_ms=latency_ms,
        credit_balance=credits if credits is not None else (balance if currency == "credits" else None),
        balance_usd=balance if currency == "usd" else None,
    )


def _plan_credits(data: Mapping[str, Any]) -> float | None:
    usage = _number(_mapping(data.get("usage_based")).get("remaining_credits"))
    if usage is not None:
        return usage
    buckets = _mapping(_mapping(data.get("subscription")).get("credits")).values()
    remaining = [n for n in (_number(_mapping(b).get("remaining")) for b in buckets) if n is not None]
    return sum(remaining) if remaining else None


def usd_per_second(avatar_type: str, override: float | None) -> float:
    """The price of one output second: HEYGEN_USD_PER_SECOND when set, else by avatar type."""
    return override if override is not None else USD_PER_SECOND[avatar_type]
