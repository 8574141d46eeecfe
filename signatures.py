"""Webhook signature verifiers (pure, no I/O): HeyGen's scheme and Standard Webhooks.

Both check the raw body bytes before parsing them, compare in constant time, accept any one of
several secrets (rotation) and reject a sender timestamp outside `now` ± `tolerance_s`.

- HeyGen: `Heygen-Signature` (legacy `Signature`) is the hex HMAC-SHA256 of the raw body keyed
  with the secret's UTF-8 text (the whole `whsec_...` string). `Heygen-Timestamp` (unix seconds)
  is checked when present; HeyGen does not document it as signed, so a webhook stays a hint: dedupe
  on the event id, then confirm with `GET /v3/videos/{id}` before changing a job.
- Standard Webhooks (standardwebhooks.com): `webhook-signature` holds space-separated
  `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{raw body}">`; the key is the
  base64 text after an optional `whsec_` prefix.

One error, `SignatureError(code, message)`. Codes: `no_secret_configured`, `missing_signature`,
`bad_signature`, `stale_timestamp`, `malformed_payload`. Messages never echo secrets or signatures.
`sign_heygen` and `sign_standard` build the headers a sender would; the simulator and tests use them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


class SignatureError(Exception):
    """A delivery that must be refused; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class HeyGenEvent:
    event_id: str
    event_type: str
    video_id: str
    callback_id: str | None
    url: str | None
    message: str | None
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class StandardEvent:
    id: str
    timestamp: int
    payload: Mapping[str, Any]

    @property
    def event_type(self) -> str | None:
        value = self.payload.get("type")
        return value if isinstance(value, str) else None


def verify_heygen(
    raw_body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str | _Secret],
    *,
    now: float,
    tolerance_s: int,
) -> HeyGenEvent:
    keys = [text.encode() for text in _secret_texts(secrets)]
    found = _lower(headers)
    given = (found.get("heygen-signature") or found.get("signature") or "").strip().lower()
    if not given:
        raise SignatureError("missing_signature", "the Heygen-Signature header is missing")
    given_bytes = given.removeprefix("sha256=").encode()
    if not any(hmac.compare_digest(_mac(key, raw_body).hex().encode(), given_bytes) for key in keys):
        raise SignatureError("bad_signature", "the signature matches no configured secret")
    if "heygen-timestamp" in found:
        _check_timestamp(found["heygen-timestamp"], now, tolerance_s)
    payload = _json_object(raw_body)
    event_id = found.get("heygen-event-id") or hashlib.sha256(raw_body).hexdigest()
    return _heygen_event(payload, event_id)


def verify_standard_webhook(
    raw_body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str | _Secret],
    *,
    now: float,
    tolerance_s: int,
) -> StandardEvent:
    keys = [_standard_key(text) for text in _secret_texts(secrets)]
    found = _lower(headers)
    msg_id, stamp, signatures = (found.get(name, "").strip() for name in _STANDARD_HEADERS)
    if not (msg_id and stamp and signatures):
        raise SignatureError(
            "missing_signature", "webhook-id, webhook-timestamp or webhook-signature is missing"
        )
    timestamp = _check_timestamp(stamp, now, tolerance_s)
    signed = f"{msg_id}.{stamp}.".encode() + raw_body
    expected = [base64.b64encode(_mac(key, signed)) for key in keys]
    given = [part[3:].encode() for part in signatures.split() if part.startswith("v1,")]
    if not any(hmac.compare_digest(e, g) for e in expected for g in given):
        raise SignatureError("bad_signature", "no v1 signature matches a configured secret")
    return StandardEvent(id=msg_id, timestamp=timestamp, payload=_json_object(raw_body))


def sign_heygen(
    raw_body: bytes, secret: str, *, timestamp: int | None = None, event_id: str | None = None
) -> dict[str, str]:
    """The headers HeyGen sends with a signed delivery."""
    headers = {"Heygen-Signature": _mac(secret.encode(), raw_body).hex()}
    if timestamp is not None:
        headers["Heygen-Timestamp"] = str(int(timestamp))
    if event_id is not None:
        headers["Heygen-Event-Id"] = event_id
    return headers


def sign_standard(raw_body: bytes, secret: str, *, msg_id: str, timestamp: int) -> dict[str, str]:
    """The headers a Standard Webhooks sender sends; `secret` is `whsec_<base64>` or bare base64."""
    stamp = str(int(timestamp))
    signature = base64.b64encode(_mac(_standard_key(secret), f"{msg_id}.{stamp}.".encode() + raw_body))
    return {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": f"v1,{signature.decode()}"}


_STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def _secret_texts(secrets: Sequence[str | _Secret]) -> list[str]:
    texts = [s if isinstance(s, str) else s.get_secret_value() for s in secrets]
    texts = [text.strip() for text in texts if text.strip()]
    if not texts:
        raise SignatureError("no_secret_configured", "no webhook secret is configured")
    return texts


def _standard_key(secret: str) -> bytes:
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise SignatureError("no_secret_configured", "a configured secret is not whsec_<base64>")
    return key


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def _check_timestamp(value: str, now: float, tolerance_s: int) -> int:
    try:
        timestamp = int(value.strip())
    except ValueError:
        raise SignatureError("stale_timestamp", "the timestamp is not unix seconds") from None
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError("stale_timestamp", f"the timestamp is more than {tolerance_s} s from now")
    return timestamp


def _json_object(raw_body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw_body)
    except ValueError:
        raise SignatureError("malformed_payload", "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise SignatureError("malformed_payload", "the body is not a JSON object")
    return payload


def _heygen_event(payload: dict[str, Any], event_id: str) -> HeyGenEvent:
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
