"""The webhook receiver shared by every provider's endpoint: verify, de-duplicate, fetch the truth.

A delivery is only ever a hint that a task moved. Its status is never applied; the provider is
asked (`Poller.refresh`: the same fetch-and-apply as a poll, fallback included)::

    no secret configured -------------------------------> 503 webhook_not_configured
    raw body (415 not JSON, 413 too large; see main.py)
    spec.webhook.read (the provider's own verifier) --missing/bad/stale--> 401  --malformed--> 400
        `--an event that names no task-------------------> 200 {"ignored": "event type"}
    EventLog.first_delivery(source, event id) --seen------> 200 {"duplicate": true}, nothing else
    task record for the id? --no, first seen < 60 s ago---> 503 + Retry-After 5, event forgotten (its
                                                            record may be written a moment after create)
                            --no, first seen earlier------> 200 {"ignored": "unknown task"}
    Poller.refresh(provider, id) --provider trouble-------> 503, event forgotten (sender retries)
        `--ok--> 200 {"jobId", "status", "outcome"}

Ordering: the event is recorded *before* the work and forgotten again when the work fails (a
provider error, or any other exception, which the endpoint answers with 500). Recording first makes
two concurrent copies of one event (senders do deliver twice) cost one provider call, not two; the
delete on failure lets the sender's retry do the work. The one gap -- an instance killed between the
record and the delete -- loses a hint, not a job: polling still finds the result.

Every step before the record reads only the request, so a refused delivery writes nothing; a refused
signature is logged with `event: webhook_signature_failed` (a metric counts them).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from config import ENV_VARS
from jobs.events import EventLog
from logs import get_logger
from providers import registry
from providers.base import ProviderError
from providers.signatures import SignatureError
from providers.spec import Webhook
from web.deps import Deps
from web.http import ApiError

log = get_logger("web.webhooks")
EARLY_WINDOW = timedelta(seconds=60)  # senders retry within seconds (Standard Webhooks: 5 s, then 5 min)
EARLY_RETRY_S = 5

_REFUSALS = {
    "no_secret_configured": (503, "webhook_not_configured"),
    "missing_signature": (401, "missing_signature"),
    "bad_signature": (401, "bad_signature"),
    "stale_timestamp": (401, "stale_timestamp"),
    "malformed_payload": (400, "malformed_payload"),
}


def webhook_of(provider: str) -> Webhook:
    webhook = registry.spec(provider).webhook
    if webhook is None:
        raise ValueError(f"{provider} sends no webhooks")
    return webhook


def require_secrets(deps: Deps, provider: str) -> None:
    """Refuse every delivery (503) while no signing secret is configured."""
    field = webhook_of(provider).secrets_field
    if not any(secret.get_secret_value().strip() for secret in getattr(deps.settings, field)):
        variable = ENV_VARS[field][0]
        raise ApiError(
            503,
            "webhook_not_configured",
            f"this webhook is not configured: set {variable} to the signing secret; "
            "until then every delivery is refused",
        )


def receive(deps: Deps, provider: str, raw: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    """A delivery from `provider`: verified by its spec's reader, then its task looked up and applied."""
    webhook, settings = webhook_of(provider), deps.settings
    secrets = getattr(settings, webhook.secrets_field)
    now = deps.store.clock().timestamp()
    try:
        hint = webhook.read(raw, headers, secrets, now, settings.webhook_tolerance_s)
    except SignatureError as exc:
        status, code = _REFUSALS.get(exc.code, (401, exc.code))
        context = {"event": "webhook_signature_failed", "provider": provider, "code": exc.code}
        log.warning("webhook delivery refused", extra=context)
        raise ApiError(status, code, exc.message) from None
    if hint.task_id is None:
        return {"ignored": "event type"}
    return _hint(deps, provider, hint.event_id, hint.task_id)


def _unknown(
    deps: Deps, events: EventLog, provider: str, event_id: str, context: dict[str, Any]
) -> dict[str, Any]:
    """A task we have no record of: just created (its record not written yet), so the sender is
    asked to retry for EARLY_WINDOW after the first delivery; after that, acknowledged and ignored."""
    first = events.unknown_since(provider, event_id)
    if deps.store.clock() - first < EARLY_WINDOW:
        log.info("webhook for a task not recorded yet; asking for a retry", extra=context)
        message = "the task is not recorded yet (it was created a moment ago); retry shortly"
        raise ApiError(503, "task_not_recorded_yet", message, headers={"Retry-After": str(EARLY_RETRY_S)})
    log.info("webhook for a task we do not know", extra=context)
    return {"ignored": "unknown task"}


def _hint(deps: Deps, provider: str, event_id: str, task_id: str) -> dict[str, Any]:
    """Once per event: fetch the task from its provider and apply it; forget the event on failure."""
    events = EventLog(deps.store.client, deps.settings, deps.store.clock)
    if not events.first_delivery(provider, event_id):
        return {"duplicate": True}
    context = {"provider": provider, "taskId": task_id, "event": "webhook"}
    try:
        task = deps.store.get_task(provider, task_id)
        if task is None:
            return _unknown(deps, events, provider, event_id, context)
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
