"""HeyGen: everything the project knows about it, and its `SPEC`.

mapping.py   create body, validation, status and error tables, `CAPABILITIES` (pure)
client.py    `HeyGenProvider`: the HTTP calls, idempotent creates, bulk reads
webhook.py   signed deliveries -> the video they name
"""

from __future__ import annotations

from datetime import timedelta

from providers.heygen.client import HeyGenProvider
from providers.heygen.mapping import (
    CAPABILITIES,
    MAX_BULK_IDS,
    PROVIDER,
    create_body,
    error_from_response,
    idempotency_key,
    snapshot_from_video,
    validation_problem,
)
from providers.heygen.webhook import HeyGenEvent, read_webhook, verify_heygen
from providers.spec import Envelope, ProviderSpec, Webhook

__all__ = [
    "CAPABILITIES",
    "SPEC",
    "HeyGenEvent",
    "HeyGenProvider",
    "create_body",
    "error_from_response",
    "idempotency_key",
    "read_webhook",
    "snapshot_from_video",
    "validation_problem",
    "verify_heygen",
]

SPEC = ProviderSpec(
    name=PROVIDER,
    priority=1,
    build=HeyGenProvider,
    enabled=lambda settings: settings.heygen_api_key is not None,
    envelope=Envelope(
        first_delay_s=10.0,
        min_delay_s=10.0,
        max_delay_s=60.0,
        factor=1.5,
        max_polls=60,
        max_elapsed_s=1200.0,
        update_interval_s=10.0,
        steps=((0.0, 10.0), (120.0, 30.0), (300.0, 60.0)),
        policy="stepped",
    ),
    link_ttl=timedelta(days=7),  # docs: v1 links live 7 days
    default_quota="20/60,200/3600,1000/86400",
    quota_field="heygen_quota",
    records="heygen_jobs",
    records_field="heygen_tasks_collection",
    traits=frozenset({"avatar"}),
    bulk_ids=MAX_BULK_IDS,
    webhook=Webhook(read=read_webhook, secrets_field="heygen_webhook_secrets"),
    typical_render_s=600.0,  # docs: renders take 5-15 minutes, sometimes over 20
)
