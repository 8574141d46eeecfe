"""The HeyGen client: API v3 behind the `Provider` protocol; an avatar speaks the CV script.

Every create carries an `Idempotency-Key` derived from `VideoRequest.attempt_id`. HeyGen answers a
replay within 24 h with the original response and a replay of a create still in flight with
409 `request_in_progress`, so a create is retried like a read (`retry_read`), and a read timeout
or reset on a create is `ProviderUnavailable`, not `OutcomeUnknown`: repeating it with the same
key cannot make a second video. The same holds for a later repeat by the caller, as long as it
keeps the `attempt_id`.

HeyGen v3 documents no cancel call (DELETE /v3/videos/{id} deletes files; it is not a cancel), so
`cancel` is a no-op and `supports_cancel` is False: the job is cancelled on our side and the
render's eventual result is ignored.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import requests

import logs
from config import ConfigError
from providers.base import (
    CostEstimate,
    CreateResult,
    InvalidRequest,
    MalformedResponse,
    ProviderError,
    ProviderHealth,
    ProviderSnapshot,
    VideoRequest,
    is_terminal,
)
from providers.heygen.mapping import (
    CAPABILITIES,
    MAX_BULK_IDS,
    MODEL,
    PROVIDER,
    STATUSES,
    USER_PATH,
    create_body,
    created_video_id,
    data_of,
    error_from_response,
    expected_seconds,
    health_from_user,
    idempotency_key,
    snapshot_from_video,
    status_entries,
    usd_per_second,
    validation_problem,
)
from providers.http import HttpProvider, parse_retry_after, retry_read, translate_transport_error

log = logs.get_logger("providers.heygen")


class HeyGenProvider(HttpProvider):
    """HeyGen v3 behind the `Provider` protocol. One lazily created session; the key stays inside."""

    name = PROVIDER
    capabilities = CAPABILITIES

    def __repr__(self) -> str:
        return f"HeyGenProvider(base_url={self._settings.heygen_base_url!r})"

    def validate(self, request: VideoRequest) -> None:
        if problem := validation_problem(request):
            raise InvalidRequest(problem, provider=PROVIDER)

    def create(self, request: VideoRequest) -> CreateResult:
        self.validate(request)
        avatar_id = self._settings.require("heygen_avatar_id")
        body = create_body(request, avatar_id, self._settings.heygen_voice_id)
        headers = {"Idempotency-Key": idempotency_key(request.attempt_id)}
        video_id = created_video_id(self._call("POST", "/v3/videos", json=body, headers=headers))
        context = {"jobId": request.job_id, "attemptId": request.attempt_id}
        log.info("heygen video created", extra={**context, "provider": PROVIDER, "taskId": video_id})
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
                video_id = entry.get("video_id")
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
        return health_from_user(answer, (time.perf_counter() - started) * 1000)

    def estimate_cost(self, request: VideoRequest) -> CostEstimate:
        return CostEstimate(credits=None, usd=expected_seconds(request) * self._usd_per_second)

    @property
    def _usd_per_second(self) -> float:
        settings = self._settings
        return usd_per_second(settings.heygen_avatar_type, settings.heygen_usd_per_second)

    # -- plumbing ---------------------------------------------------------------------------------

    def _snapshot(self, video_id: str, data: Mapping[str, Any]) -> ProviderSnapshot:
        if str(data.get("status")).lower() not in STATUSES:
            log.warning(
                "unknown HeyGen status; treating it as processing",
                extra={"provider": PROVIDER, "taskId": video_id, "status": str(data.get("status"))[:50]},
            )
        return snapshot_from_video(video_id, data, self._usd_per_second)

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
        return self._retry(lambda: self._send(method, path, **kwargs), retry_read)

    def _send(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Any:
        key = self._settings.require("heygen_api_key").get_secret_value()
        try:
            response = self._http_session().request(
                method,
                self._settings.heygen_base_url + path,
                headers={"X-Api-Key": key, **(headers or {})},
                timeout=self._timeout,
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
