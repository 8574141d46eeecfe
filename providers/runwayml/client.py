"""The RunwayML client: the developer API, version 2024-11-06, behind the `Provider` protocol.

Calls (base URL and version from settings; every call sends `Authorization: Bearer <key>` and
`X-Runway-Version`, with the (connect, read) timeouts from settings)::

    create   POST   /v1/text_to_video | /v1/image_to_video  -> {"id", "estimatedCost": {"credits"}}
    get      GET    /v1/tasks/{id}        (no bulk call: `get_many` loops)
    cancel   DELETE /v1/tasks/{id}        (cancels an active task, deletes a finished one)
    health   GET    /v1/organization

Creates carry no idempotency key (the API has none), so they are repeated only when the request
provably never arrived or was refused (`retry_unsent_or_refused`: connect failure, 429, 502, 503);
a read timeout or reset on a create is `OutcomeUnknown`. Reads and cancels use `retry_read`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from config import ConfigError
from logs import get_logger
from providers.base import (
    CostEstimate,
    CreateResult,
    InvalidRequest,
    NotFound,
    ProviderError,
    ProviderHealth,
    ProviderSnapshot,
    VideoRequest,
)
from providers.http import HttpProvider, retry_read, retry_unsent_or_refused, translate_transport_error
from providers.runwayml.answers import (
    STATUS_MAP,
    create_result,
    error_for_response,
    health_from_organization,
    parse_answer,
    snapshot_from_task,
)
from providers.runwayml.request import (
    CAPABILITIES,
    NAME,
    choose_model,
    endpoint_for,
    estimate,
    request_body,
    validation_problem,
)

T = TypeVar("T")
log = get_logger("providers.runwayml")


class RunwayMLProvider(HttpProvider):
    """RunwayML behind the `Provider` protocol; one lazily created HTTP session per instance."""

    name = NAME
    capabilities = CAPABILITIES

    def __repr__(self) -> str:
        return f"RunwayMLProvider(base_url={self._settings.runwayml_base_url!r})"

    def validate(self, request: VideoRequest) -> None:
        hosts = self._settings.image_url_hosts
        if problem := validation_problem(request, choose_model(request), hosts):
            raise InvalidRequest(problem, provider=NAME)

    def create(self, request: VideoRequest) -> CreateResult:
        self.validate(request)
        model, usd = choose_model(request), self._settings.runwayml_usd_per_credit
        body = request_body(request, model, audio=self._settings.runwayml_veo_audio)
        path = f"/v1/{endpoint_for(request)}"
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
            return self._retry(
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
        return None if parse is None else parse_answer(response.content, parse, is_create)

    def _send(self, method: str, path: str, body: object, is_create: bool) -> requests.Response:
        try:
            return self._http_session().request(
                method,
                self._settings.runwayml_base_url + path,
                json=body,
                headers=self._headers(),
                timeout=self._timeout,
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


def _task_path(task_id: str) -> str:
    if not task_id:
        raise InvalidRequest("task_id: must not be empty", provider=NAME)
    return f"/v1/tasks/{quote(task_id, safe='')}"


def _context(request: VideoRequest) -> dict[str, str]:
    return {"provider": NAME, "jobId": request.job_id, "attemptId": request.attempt_id}
