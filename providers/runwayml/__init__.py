"""RunwayML: everything the project knows about it, and its `SPEC`.

request.py   model choice, create body, local validation, cost, `CAPABILITIES` (pure)
answers.py   status table, task/organization JSON, HTTP answers -> errors (pure)
client.py    `RunwayMLProvider`: the HTTP calls and their retry rules
webhook.py   Standard Webhooks deliveries -> the task they name
"""

from __future__ import annotations

from datetime import timedelta

from providers.runwayml.answers import (
    STATUS_MAP,
    error_for_response,
    failure_allows_fallback,
    health_from_organization,
    snapshot_from_task,
)
from providers.runwayml.client import RunwayMLProvider
from providers.runwayml.request import (
    CAPABILITIES,
    NAME,
    choose_model,
    request_body,
    validation_problem,
    wire_duration,
)
from providers.runwayml.webhook import read_webhook
from providers.spec import Envelope, ProviderSpec, Webhook

__all__ = [
    "CAPABILITIES",
    "SPEC",
    "STATUS_MAP",
    "RunwayMLProvider",
    "choose_model",
    "error_for_response",
    "failure_allows_fallback",
    "health_from_organization",
    "read_webhook",
    "request_body",
    "snapshot_from_task",
    "validation_problem",
    "wire_duration",
]

SPEC = ProviderSpec(
    name=NAME,
    priority=2,
    build=RunwayMLProvider,
    enabled=lambda settings: settings.runwayml_api_key is not None,
    envelope=Envelope(
        first_delay_s=16.0,  # no render is done sooner (queue ~2 s + 15 s at least); 1 s after a 5 s tick
        min_delay_s=5.0,
        max_delay_s=30.0,
        factor=1.5,
        max_polls=180,
        max_elapsed_s=360.0,
        update_interval_s=5.0,  # "do not expect updates more often than once every five seconds"
        steps=((0.0, 15.0),),  # while PENDING/THROTTLED: no render ends within 15 s of its start
        queue_s=2.0,
        render_range_s=(15.0, 45.0),  # before any history: the renders the simulators and docs suggest
    ),
    link_ttl=timedelta(hours=24),  # docs: output URLs live 24-48 h
    default_quota="25/60,100/3600,500/86400",
    quota_field="runwayml_quota",
    records="runwayml_jobs",
    records_field="runwayml_tasks_collection",
    traits=frozenset({"premium", "creative", "short_clips"}),
    webhook=Webhook(read=read_webhook, secrets_field="runwayml_webhook_secrets"),
    typical_render_s=60.0,  # a 5-10 s clip; RUNNING tasks report their own progress
)
