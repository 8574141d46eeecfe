"""Webhook receivers for HeyGen and RunwayML: verify, de-duplicate, then fetch the truth.

A delivery is only ever a hint that a task moved. Its status is never applied; the provider is
asked (`Poller.refresh`: the same fetch-and-apply as a poll, fallback included)::

    no secret configured -------------------------------> 503 webhook_not_configured
    raw body (415 not JSON, 413 too large; see main.py)
    verify signature (signatures.py) --missing/bad/stale--> 401   --malformed--> 400
    parse the task id ------------------------------------> 400 when missing or not an id
    EventLog.first_delivery(source, event id) --seen------> 200 {"duplicate": true}, nothing else
    task record for the id? --no--------------------------> 200 {"ignored": "unknown video"}
    Poller.refresh(provider, id) --provider trouble-------> 503, event forgotten (sender retries)
        `--ok--> 200 {"jobId", "status", "outcome"}

Ordering: the event is recorded *before* the work and forgotten again when the work fails (a
provider error, or any other exception, which the endpoint answers with 500). Recording first makes
two concurrent copies of one event (senders do deliver twice) cost one provider call, not two; the
delete on failure lets the sender's retry do the work. The one gap -- an instance killed between the
record and the delete -- loses a hint, not a job: polling still finds the result.

Every step before the record reads only the request, so a refused delivery writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pydantic

from api import RunwayMLWebhookEvent
from errors import ApiError
from jobs.events import EventLog
from logs import get_logger
from providers.base import ProviderError
from signatures import SignatureError, verify_heygen, verify_standard_webhook

if TYPE_CHECKING:
    from deps import Deps

log = get_logger("tasks.webhooks")

HEYGEN_HINTS = frozenset({"avatar_video.success", "avatar_video.fail"})
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_REFUSALS = {
    "no_secret_configured": (503, "webhook_not_configured"),
    "missing_signature": (401, "missing_signature"),
    "bad_signature": (401, "bad_signature"),
    "stale_timestamp": (401, "stale_timestamp"),
    "malformed_payload": (400, "malformed_payload"),
}


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


def require_secrets(secrets: Sequence[_Secret], variable: str) -> None:
    """Refuse every delivery (503) while no signing secret is configured."""
    if not any(secret.get_secret_value().strip() for secret in secrets):
        raise ApiError(
            503,
            "webhook_not_configured",
            f"this webhook is not configured: set {variable} to the signing secret; "
            "until then every delivery is refused",
        )


def receive_heygen(deps: Deps, raw: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """A verified HeyGen delivery: the video it names is looked up at HeyGen and applied."""
    settings = deps.settings
    try:
        event = verify_heygen(
            raw,
            headers,
            settings.heygen_webhook_secrets,
            now=deps.store.clock().timestamp(),
            tolerance_s=settings.webhook_tolerance_s,
        )
    except SignatureError as exc:
        raise _refusal(exc) from None
    if event.event_type not in HEYGEN_HINTS:
        return {"ignored": "event type"}
    if not _ID.fullmatch(event.video_id):
        raise ApiError(400, "malformed_payload", "event_data.video_id is not a video id")
    return _hint(deps, "heygen", event.event_id, event.video_id, "unknown video")


def receive_runwayml(deps: Deps, raw: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """A verified Standard Webhooks delivery naming a RunwayML task (`data.id`)."""
    settings = deps.settings
    try:
        event = verify_standard_webhook(
            raw,
            headers,
            settings.runwayml_webhook_secrets,
            now=deps.store.clock().timestamp(),
            tolerance_s=settings.webhook_tolerance_s,
        )
    except SignatureError as exc:
        raise _refusal(exc) from None
    try:
        body = RunwayMLWebhookEvent.model_validate(dict(event.payload))
    except pydantic.ValidationError as exc:
        field = ".".join(str(part) for part in exc.errors()[0]["loc"])
        raise ApiError(400, "malformed_payload", f"{field}: {exc.errors()[0]['msg']}") from None
    return _hint(deps, "runwayml", event.id, body.data.id, "unknown task")


def _refusal(exc: SignatureError) -> ApiError:
    status, code = _REFUSALS.get(exc.code, (401, exc.code))
    return ApiError(status, code, exc.message)


def _hint(deps: Deps, provider: str, event_id: str, task_id: str, unknown: str) -> dict[str, Any]:
    """Once per event: fetch the task from its provider and apply it; forget the event on failure."""
    events = EventLog(deps.store.client, deps.settings, deps.store.clock)
    if not events.first_delivery(provider, event_id):
        return {"duplicate": True}
    context = {"provider": provider, "taskId": task_id, "event": "webhook"}
    try:
        task = deps.store.get_task(provider, task_id)
        if task is None:
            log.info("webhook for a task we do not know", extra=context)
            return {"ignored": unknown}
        outcome = deps.poller.refresh(provider, task_id)
    except ProviderError as exc:
        events.forget(provider, event_id)
        log.warning("webhook hint could not be confirmed", extra={**context, "code": exc.code})
        raise ApiError(503, "provider_unavailable", f"{provider} could not be asked; retry later") from None
    except BaseException:
        events.forget(provider, event_id)
        raise
    if outcome is None:  # already terminal: nothing to ask
        return {"jobId": task.job_id, "status": str(task.status), "outcome": "final"}
    log.info("webhook hint applied", extra={**context, "jobId": outcome.job_id})
    return {"jobId": outcome.job_id, "status": str(outcome.job_status), "outcome": str(outcome.verdict)}
