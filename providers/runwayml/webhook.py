"""RunwayML webhook deliveries: Standard Webhooks, naming a task in `data.id` (pure).

    {"type": "task.updated", "data": {"id": "<task id>", ...}}   -> task_id = data.id (must be an id)

The status a delivery carries is never applied: it is a hint to read the task (`GET /v1/tasks/{id}`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from providers.signatures import SignatureError, provider_id, verify_standard_webhook
from providers.spec import WebhookHint


def read_webhook(
    raw_body: bytes, headers: Mapping[str, str], secrets: Sequence[Any], now: float, tolerance_s: int
) -> WebhookHint:
    """`ProviderSpec.webhook.read`: the Standard Webhooks message id, and the task in `data.id`."""
    event = verify_standard_webhook(raw_body, headers, secrets, now=now, tolerance_s=tolerance_s)
    data = event.payload.get("data")
    if not isinstance(data, dict):
        raise SignatureError("malformed_payload", "data is not an object naming the task")
    return WebhookHint(event.id, provider_id(data.get("id"), "data.id", "task id"))
