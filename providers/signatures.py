"""Webhook signatures (pure, no I/O): the shared checks, Standard Webhooks, and signing helpers.

Each provider's spec reads its deliveries (`spec.webhook.read`, `providers/spec.py`): HeyGen's own
scheme in `providers/heygen/webhook.py`, Standard Webhooks (RunwayML) in `providers/runwayml/webhook.py`
on top of `verify_standard_webhook` here.

Both check the raw body bytes before parsing them, compare in constant time, accept any one of
several secrets (rotation) and reject a sender timestamp outside `now` ± `tolerance_s`.

- HeyGen: hex HMAC-SHA256 of the raw body in `Heygen-Signature` (see `providers/heygen/webhook.py`;
  `sign_heygen` below builds it).
- Standard Webhooks (standardwebhooks.com): `webhook-signature` holds space-separated
  `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{raw body}">`; the key is the
  base64 text after an optional `whsec_` prefix.

One error, `SignatureError(code, message)`. Codes: `no_secret_configured`, `missing_signature`,
`bad_signature`, `stale_timestamp`, `malformed_payload`. Messages never echo secrets or signatures.
`sign_heygen` and `sign_standard` build the headers a sender would; the simulator and tests use them.
`provider_id` checks the task id a delivery names (`^[A-Za-z0-9_-]{1,128}$`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from errors import AppError
from providers.base import is_reserved_id

_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


class SignatureError(AppError):
    """A delivery that must be refused; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True)
class StandardEvent:
    id: str
    timestamp: int
    payload: Mapping[str, Any]

    @property
    def event_type(self) -> str | None:
        value = self.payload.get("type")
        return value if isinstance(value, str) else None


def verify_standard_webhook(
    raw_body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str | _Secret],
    *,
    now: float,
    tolerance_s: int,
) -> StandardEvent:
    keys = [_standard_key(text) for text in secret_texts(secrets)]
    found = lower_headers(headers)
    msg_id, stamp, signatures = (found.get(name, "").strip() for name in _STANDARD_HEADERS)
    if not (msg_id and stamp and signatures):
        raise SignatureError(
            "missing_signature", "webhook-id, webhook-timestamp or webhook-signature is missing"
        )
    timestamp = check_timestamp(stamp, now, tolerance_s)
    signed = f"{msg_id}.{stamp}.".encode() + raw_body
    expected = [base64.b64encode(mac(key, signed)) for key in keys]
    given = [part[3:].encode() for part in signatures.split() if part.startswith("v1,")]
    if not any(hmac.compare_digest(e, g) for e in expected for g in given):
        raise SignatureError("bad_signature", "no v1 signature matches a configured secret")
    return StandardEvent(id=msg_id, timestamp=timestamp, payload=json_object(raw_body))


def sign_heygen(
    raw_body: bytes, secret: str, *, timestamp: int | None = None, event_id: str | None = None
) -> dict[str, str]:
    """The headers HeyGen sends with a signed delivery."""
    headers = {"Heygen-Signature": mac(secret.encode(), raw_body).hex()}
    if timestamp is not None:
        headers["Heygen-Timestamp"] = str(int(timestamp))
    if event_id is not None:
        headers["Heygen-Event-Id"] = event_id
    return headers


def sign_standard(raw_body: bytes, secret: str, *, msg_id: str, timestamp: int) -> dict[str, str]:
    """The headers a Standard Webhooks sender sends; `secret` is `whsec_<base64>` or bare base64."""
    stamp = str(int(timestamp))
    signature = base64.b64encode(mac(_standard_key(secret), f"{msg_id}.{stamp}.".encode() + raw_body))
    return {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": f"v1,{signature.decode()}"}


_STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def secret_texts(secrets: Sequence[str | _Secret]) -> list[str]:
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


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def check_timestamp(value: str, now: float, tolerance_s: int) -> int:
    try:
        timestamp = int(value.strip())
    except ValueError:
        raise SignatureError("stale_timestamp", "the timestamp is not unix seconds") from None
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError("stale_timestamp", f"the timestamp is more than {tolerance_s} s from now")
    return timestamp


def json_object(raw_body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw_body)
    except (ValueError, RecursionError):
        raise SignatureError("malformed_payload", "the body is not JSON (or nested too deeply)") from None
    if not isinstance(payload, dict):
        raise SignatureError("malformed_payload", "the body is not a JSON object")
    return payload


def provider_id(value: object, field: str, what: str) -> str:
    """`value` when it is a provider id; else `malformed_payload` naming the field."""
    if not isinstance(value, str) or not _ID.fullmatch(value) or is_reserved_id(value):
        raise SignatureError("malformed_payload", f"{field} is not a {what}")
    return value
