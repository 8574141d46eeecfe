"""HeyGen webhook deliveries: verify the signature, then read the video they name (pure).

`Heygen-Signature` (legacy `Signature`) is the hex HMAC-SHA256 of the raw body keyed with the
secret's UTF-8 text (the whole `whsec_...` string). `Heygen-Timestamp` (unix seconds) is checked
when present; HeyGen does not document it or `Heygen-Event-Id` as signed, so a captured delivery
could be replayed with fresh headers: the event id is a hash of the signed body (`event_id_of`), so
a replay is a duplicate whatever headers it carries, and a delivery stays a hint, confirmed with
`GET /v3/videos/{id}`.

    event_type                              hint
    avatar_video.success, avatar_video.fail  task_id = event_data.video_id (must be an id)
    anything else                           task_id None: acknowledged, ignored
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from providers.signatures import (
    SignatureError,
    check_timestamp,
    json_object,
    lower_headers,
    mac,
    provider_id,
    secret_texts,
)
from providers.spec import WebhookHint

HINTS = frozenset({"avatar_video.success", "avatar_video.fail"})


@dataclass(frozen=True)
class HeyGenEvent:
    event_id: str
    event_type: str
    video_id: str
    callback_id: str | None
    url: str | None
    message: str | None
    payload: Mapping[str, Any]


def verify_heygen(
    raw_body: bytes, headers: Mapping[str, str], secrets: Sequence[Any], *, now: float, tolerance_s: int
) -> HeyGenEvent:
    """The event of a delivery signed with one of `secrets`; `SignatureError` when it must be refused."""
    keys = [text.encode() for text in secret_texts(secrets)]
    found = lower_headers(headers)
    given = (found.get("heygen-signature") or found.get("signature") or "").strip().lower()
    if not given:
        raise SignatureError("missing_signature", "the Heygen-Signature header is missing")
    given_bytes = given.removeprefix("sha256=").encode()
    if not any(hmac.compare_digest(mac(key, raw_body).hex().encode(), given_bytes) for key in keys):
        raise SignatureError("bad_signature", "the signature matches no configured secret")
    if "heygen-timestamp" in found:
        check_timestamp(found["heygen-timestamp"], now, tolerance_s)
    payload = json_object(raw_body)
    return _event(payload, event_id_of(raw_body))


def event_id_of(raw_body: bytes) -> str:
    """The dedupe key: a hash of the signed bytes. `Heygen-Event-Id` is not signed, so a replayer
    could change it at will; a replay of the same signed body is a duplicate whatever it carries."""
    return hashlib.sha256(raw_body).hexdigest()


def read_webhook(
    raw_body: bytes, headers: Mapping[str, str], secrets: Sequence[Any], now: float, tolerance_s: int
) -> WebhookHint:
    """`ProviderSpec.webhook.read`: the event id, and the video it names for a finished render."""
    event = verify_heygen(raw_body, headers, secrets, now=now, tolerance_s=tolerance_s)
    if event.event_type not in HINTS:
        return WebhookHint(event.event_id, None)
    return WebhookHint(event.event_id, provider_id(event.video_id, "event_data.video_id", "video id"))


def _event(payload: dict[str, Any], event_id: str) -> HeyGenEvent:
    data = payload.get("event_data")
    data = data if isinstance(data, dict) else {}
    event_type, video_id = payload.get("event_type"), data.get("video_id")
    if not isinstance(event_type, str) or not isinstance(video_id, str) or not video_id:
        raise SignatureError("malformed_payload", "event_type or event_data.video_id is missing")
    return HeyGenEvent(
        event_id=event_id,
        event_type=event_type,
        video_id=video_id,
        callback_id=_first_text(data, "callback_id"),
        url=_first_text(data, "url", "video_url"),
        message=_first_text(data, "msg", "message", "error"),
        payload=payload,
    )


def _first_text(data: Mapping[str, Any], *names: str) -> str | None:
    return next((v for v in map(data.get, names) if isinstance(v, str) and v), None)
