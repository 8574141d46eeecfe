"""RunwayML answers (pure): the status table, task and organization JSON, and HTTP errors.

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
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from providers.base import (
    AuthenticationFailed,
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
)
from providers.http import parse_retry_after
from providers.runwayml.request import NAME

T = TypeVar("T")
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


def parse_answer(content: bytes, parse: Callable[[Any], T], is_create: bool) -> T:
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
