"""HeyGen API v3 as a `Provider`: an avatar speaks the CV script.

Status table (one place; unknown values are logged and treated as still running)::

    HeyGen status               project status   progress
    waiting, pending, queued    queued           0
    processing                  processing       50   HeyGen reports no progress: a fixed midpoint
    completed                   completed        100  video_url, gif_url, thumbnail_url
    failed                      failed           0    fallback unless the code is content/moderation
    anything else               processing       50   logged as a warning, never a crash

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

Every create carries an `Idempotency-Key` derived from `VideoRequest.attempt_id`. HeyGen answers a
replay within 24 h with the original response and a replay of a create still in flight with
409 `request_in_progress`, so a create is retried like a read (`retry_read`), and a read timeout
or reset on a create is `ProviderUnavailable`, not `OutcomeUnknown`: repeating it with the same
key cannot make a second video. The same holds for a later repeat by the caller, as long as it
keeps the `attempt_id`.

Bulk reads use `GET /v3/videos/statuses?video_ids=...` (at most 100 ids), whose answer per the v3
OpenAPI spec is `{"data": [{"video_id", "status", "error"}], "has_more", "next_token"}` with
statuses queued/processing/completed/failed/not_found.

HeyGen v3 documents no cancel call (DELETE /v3/videos/{id} deletes files; it is not a cancel), so
`cancel` is a no-op and `supports_cancel` is False: the job is cancelled on our side and the
render's eventual result is ignored.
"""

from __future__ import annotations

import hashlib
import re
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import requests

import logs
from config import ConfigError
from providers.base import (
    AuthenticationFailed,
    Capabilities,
    ContentRejected,
    CostEstimate,
    CreateResult,
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
    is_terminal,
)
from providers.http import (
    HttpProvider,
    parse_retry_after,
    retry_read,
    translate_transport_error,
)

PROVIDER = "heygen"
MODEL = "avatar"
MAX_SCRIPT_CHARS = 5000
MAX_BULK_IDS = 100
WORDS_PER_MINUTE = 150
CONTENT_MARKERS = ("moderation", "content", "policy", "nsfw", "inappropriate", "violation")
USER_PATH = "/v3/users/me"  # HeyGen's own setup scripts use this; its CLI spec names /v3/user/me

CAPABILITIES = Capabilities(
    models=(MODEL,),
    min_duration_s=1,
    max_duration_s=600,  # a rough bound; the real limit is the 5000-character script
    aspect_ratios=("16:9", "9:16"),
    resolutions=("720p", "1080p"),
    formats=("mp4",),
    max_prompt_units=MAX_SCRIPT_CHARS,
    supports_image_input=False,
    supports_cancel=False,
    idempotent_create=True,
    sends_webhooks=True,
)

_STATUSES = {
    "waiting": Status.QUEUED,
    "pending": Status.QUEUED,
    "queued": Status.QUEUED,
    "processing": Status.PROCESSING,
    "completed": Status.COMPLETED,
    "failed": Status.FAILED,
}
_PROGRESS = {Status.QUEUED: 0.0, Status.PROCESSING: 50.0, Status.COMPLETED: 100.0, Status.FAILED: 0.0}
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_:.-]{1,255}")

log = logs.get_logger(__name__)


# ---------------------------------------------------------------------------------------------------
# Pure mapping functions


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
    status = _STATUSES.get(raw.lower(), Status.PROCESSING)
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


# ---------------------------------------------------------------------------------------------------
# The provider


class HeyGenProvider(HttpProvider):
    """HeyGen v3 behind the `Provider` protocol. One lazily created session; the key stays inside."""

    name = PROVIDER
    capabilities = CAPABILITIES

    def __repr__(self) -> str:
        return f"HeyGenProvider(base_url={self._settings.heygen_base_url!r})"

    def validate(self, request: VideoRequest) -> None:
        script = script_of(request)
        if not script.strip():
            raise InvalidRequest("script must not be empty", provider=PROVIDER)
        if len(script) > MAX_SCRIPT_CHARS:
            raise InvalidRequest(f"script must be at most {MAX_SCRIPT_CHARS} characters", provider=PROVIDER)
        for field, allowed in (
            ("aspect_ratio", CAPABILITIES.aspect_ratios),
            ("resolution", CAPABILITIES.resolutions),
            ("output_format", CAPABILITIES.formats),
        ):
            if getattr(request, field) not in allowed:
                raise InvalidRequest(f"{field} must be one of {', '.join(allowed)}", provider=PROVIDER)
        if not request.attempt_id:
            raise InvalidRequest(
                "attempt_id must not be empty (it is the idempotency key)", provider=PROVIDER
            )

    def create(self, request: VideoRequest) -> CreateResult:
        self.validate(request)
        avatar_id = self._settings.require("heygen_avatar_id")
        body = create_body(request, avatar_id, self._settings.heygen_voice_id)
        headers = {"Idempotency-Key": idempotency_key(request.attempt_id)}
        answer = self._call("POST", "/v3/videos", json=body, headers=headers)
        video_id = _text(data_of(answer).get("video_id"))
        if video_id is None:
            raise MalformedResponse("HeyGen create answer has no data.video_id", provider=PROVIDER)
        log.info(
            "heygen video created",
            extra={
                "jobId": request.job_id,
                "provider": PROVIDER,
                "taskId": video_id,
                "attemptId": request.attempt_id,
            },
        )
        return CreateResult(task_id=video_id, model=MODEL, estimated_usd=self.estimate_cost(request).usd)

    def get(self, task_id: str) -> ProviderSnapshot:
        answer = self._call("GET", "/v3/videos/" + urllib.parse.quote(task_id, safe=""))
        return self._snapshot(task_id, data_of(answer))

    def get_many(self, task_ids: Iterable[str]) -> dict[str, ProviderSnapshot]:
        """Bulk statuses in chunks of 100 (`not_found` ids are omitted).

        The bulk answer carries no URLs or failure codes, so terminal entries are re-read singly.
        """
        ids = list(dict.fromkeys(task_ids))
        snapshots: dict[str, ProviderSnapshot] = {}
        for start in range(0, len(ids), MAX_BULK_IDS):
            chunk = ids[start : start + MAX_BULK_IDS]
            answer = self._call("GET", "/v3/videos/statuses", params={"video_ids": ",".join(chunk)})
            for entry in status_entries(answer):
                video_id = _text(entry.get("video_id"))
                if video_id in chunk and entry.get("status") != "not_found":
                    snapshots[video_id] = self._snapshot(video_id, entry)
        for video_id in [v for v, snap in snapshots.items() if is_terminal(snap.status)]:
            self._refresh(video_id, snapshots)
        return snapshots

    def cancel(self, task_id: str) -> None:
        """No-op: HeyGen v3 has no cancel; the result is ignored when it arrives."""
        log.info("heygen has no cancel; ignoring the render", extra={"provider": PROVIDER, "taskId": task_id})

    def health(self) -> ProviderHealth:
        started = time.perf_counter()
        try:
            answer = self._send("GET", USER_PATH)
        except (ProviderError, ConfigError) as exc:
            return ProviderHealth(provider=PROVIDER, reachable=False, error=str(exc))
        except Exception as exc:  # a health check must never raise
            return ProviderHealth(provider=PROVIDER, reachable=False, error=type(exc).__name__)
        latency_ms = (time.perf_counter() - started) * 1000
        data = _mapping(answer.get("data")) if isinstance(answer, Mapping) else {}
        wallet = _mapping(data.get("wallet"))
        return ProviderHealth(
            provider=PROVIDER,
            reachable=True,
            latency_ms=latency_ms,
            credit_balance=_number(data.get("remaining_credits"), wallet.get("remaining_credits")),
            balance_usd=_number(wallet.get("remaining_balance"), data.get("remaining_balance")),
        )

    def estimate_cost(self, request: VideoRequest) -> CostEstimate:
        return CostEstimate(
            credits=None, usd=expected_seconds(request) * self._settings.heygen_usd_per_second
        )

    # -- plumbing ---------------------------------------------------------------------------------

    def _snapshot(self, video_id: str, data: Mapping[str, Any]) -> ProviderSnapshot:
        if str(data.get("status")).lower() not in _STATUSES:
            log.warning(
                "unknown HeyGen status; treating it as processing",
                extra={"provider": PROVIDER, "taskId": video_id, "status": str(data.get("status"))[:50]},
            )
        return snapshot_from_video(video_id, data, self._settings.heygen_usd_per_second)

    def _refresh(self, video_id: str, snapshots: dict[str, ProviderSnapshot]) -> None:
        """Replace a bulk entry by the full video; drop it (the caller polls it singly) on failure."""
        try:
            snapshots[video_id] = self.get(video_id)
        except ProviderError as exc:
            snapshots.pop(video_id)
            log.warning(
                "heygen video read failed", extra={"provider": PROVIDER, "taskId": video_id, "code": exc.code}
            )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._http.retry(lambda: self._send(method, path, **kwargs), retry_read)

    def _send(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Any:
        key = self._settings.require("heygen_api_key").get_secret_value()
        try:
            response = self._http.session().request(
                method,
                self._settings.heygen_base_url + path,
                headers={"X-Api-Key": key, **(headers or {})},
                timeout=self._http.timeout,
                **kwargs,
            )
        except requests.RequestException as exc:
            # Creates carry an Idempotency-Key, so a lost answer is safe to repeat: never OutcomeUnknown.
            raise translate_transport_error(exc, provider=PROVIDER, is_create=False) from exc
        return _parse(response)


def _parse(response: requests.Response) -> Any:
    if not 200 <= response.status_code < 300:
        try:
            body = response.json()
        except ValueError:
            body = None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise error_from_response(response.status_code, body, retry_after)
    try:
        return response.json()
    except ValueError:
        raise MalformedResponse(
            "HeyGen answered 2xx with a body that is not JSON", provider=PROVIDER
        ) from None
