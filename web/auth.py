"""Who is calling: Firebase users (ID tokens) and service accounts (Google-signed OIDC tokens).

Tokens are verified with google-auth (`google.oauth2.id_token.verify_token`: signature, expiry,
audience) and then the issuer is checked here. Google's public certificates change about daily,
so they are fetched through `CachedCertsRequest`, which keeps each URL's answer for its
`Cache-Control: max-age` (one hour when absent) -- no network round trip per request.

An app asks again and again with the same token (a status check every few seconds), so the
verifier remembers what google-auth found for a token: the same token bytes, for the same
audience, under the same certificates answer, verify the same way, so that result is reused while
that answer is in force and the token is within its `iat`..`exp`; anything else (another answer,
an expired token) goes through google-auth again. Only successes are remembered, at most
`REMEMBERED` tokens at a time.

Callers and what identifies them:

    Firebase user     iss = https://securetoken.google.com/<firebase project>, aud = <firebase project>
    service account   iss = https://accounts.google.com, aud = <the function's URL>, email verified

Locally and in tests the certificate URLs point at a loopback server holding a test key
(`FIREBASE_CERTS_URL`, `GOOGLE_CERTS_URL`); nothing else changes. Webhook signatures live in
`providers/signatures.py`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import google.auth.exceptions
import google.auth.transport.requests
from google.oauth2 import id_token

from errors import Forbidden, Unauthenticated

if TYPE_CHECKING:
    from jobs.access import Viewer

FIREBASE_ISSUER_PREFIX = "https://securetoken.google.com/"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
DEFAULT_MAX_AGE_S = 3600.0
REMEMBERED = 1024  # verified tokens kept, about 1 KiB each (the table is emptied when full)
_BEARER = re.compile(r"^Bearer\s+(\S+)$", re.IGNORECASE)


class AuthError(Unauthenticated):
    """No identity, or one that does not verify; the message is safe to show (no token in it)."""


@dataclass(frozen=True)
class Caller:
    """A verified caller: a Firebase user (`uid`) or a service account (`email`)."""

    kind: str  # "user" or "service_account"
    uid: str | None = None
    email: str | None = None
    tier: str = "free"  # a user's plan, from the Firebase custom claim `tier`

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    def is_service_account(self, allowed: Collection[str]) -> bool:
        return self.kind == "service_account" and self.email in allowed

    def viewer(self, ops_accounts: Collection[str]) -> Viewer:
        """How the job life cycle sees this caller: its own jobs, or every job for an operator."""
        from jobs.access import Viewer  # the job store with it: a caller refused at the edge never loads it

        return Viewer(uid=self.uid if self.is_user else None, operator=self.is_service_account(ops_accounts))


class CachedCertsRequest:
    """A google-auth transport that caches GET answers per URL for their max-age."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._inner = google.auth.transport.requests.Request()
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def current(self, url: str) -> Any:
        """The answer kept for `url` while its max-age lasts; None when there is none."""
        with self._lock:
            cached = self._cache.get(url)
        return cached[1] if cached is not None and cached[0] > self._clock() else None

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> Any:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(url)
            if method == "GET" and cached is not None and cached[0] > now:
                return cached[1]
        response = self._inner(url, method=method, timeout=kwargs.pop("timeout", 10), **kwargs)
        if method == "GET" and response.status == 200:
            with self._lock:
                self._cache[url] = (now + _max_age(response.headers), response)
        return response


def _max_age(headers: Mapping[str, str]) -> float:
    match = re.search(r"max-age=(\d+)", headers.get("Cache-Control", "") or "")
    return float(match.group(1)) if match else DEFAULT_MAX_AGE_S


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an `Authorization: Bearer ...` header, or `AuthError`."""
    header = headers.get("Authorization") or ""
    match = _BEARER.match(header.strip())
    if match is None:
        raise AuthError("missing or malformed Authorization header; send 'Bearer <ID token>'")
    return match.group(1)


class Verifier:
    """Verifies bearer tokens against configured certificate URLs and audiences."""

    def __init__(
        self,
        *,
        firebase_project: str,
        firebase_certs_url: str,
        google_certs_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.firebase_project = firebase_project
        self.firebase_certs_url = firebase_certs_url
        self.google_certs_url = google_certs_url
        self.request = CachedCertsRequest()
        self.clock = clock
        # (token, audience, certs URL) -> (the certificates answer it was verified with, its claims)
        self._verified: dict[tuple[str, str, str], tuple[Any, Mapping[str, Any]]] = {}

    def _decode(self, token: str, audience: str, certs_url: str) -> Mapping[str, Any]:
        key = (token, audience, certs_url)
        remembered = self._verified.get(key)
        if remembered is not None and self._still_valid(*remembered, certs_url):
            return remembered[1]
        used: list[Any] = []

        def request(url: str, method: str = "GET", **kwargs: Any) -> Any:
            used.append(self.request(url, method=method, **kwargs))
            return used[-1]

        try:
            claims = id_token.verify_token(token, request, audience=audience, certs_url=certs_url)
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            raise AuthError(f"invalid token: {_reason(exc)}") from None
        if len(self._verified) >= REMEMBERED:
            self._verified.clear()
        self._verified[key] = (used[-1], claims)
        return claims

    def _still_valid(self, answer: Any, claims: Mapping[str, Any], certs_url: str) -> bool:
        """The certificates answer is still the one in force and the token is within its lifetime
        (google-auth's own test: whole seconds, no clock skew)."""
        now = int(self.clock())
        return self.request.current(certs_url) is answer and claims["iat"] <= now <= claims["exp"]

    def user(self, token: str) -> Caller:
        """A Firebase user from an ID token issued for the configured project."""
        claims = self._decode(token, self.firebase_project, self.firebase_certs_url)
        if claims.get("iss") != FIREBASE_ISSUER_PREFIX + self.firebase_project:
            raise AuthError("invalid token: wrong issuer")
        uid = claims.get("sub")
        if not isinstance(uid, str) or not uid or len(uid) > 128:
            raise AuthError("invalid token: no user id")
        tier = claims.get("tier")  # the plan; one not configured is free (`jobs/plans.py`)
        return Caller("user", uid=uid, tier=tier if isinstance(tier, str) and 0 < len(tier) <= 64 else "free")

    def service_account(self, token: str, audience: str) -> Caller:
        """A service account from a Google-signed OIDC token minted for `audience`; a valid user token
        here is 403 (the function takes service accounts only), not a confusing 401."""
        try:
            claims = self._decode(token, audience, self.google_certs_url)
        except AuthError:
            if self._is_user(token):
                raise Forbidden("this function takes service-account tokens only, not a user's") from None
            raise
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise AuthError("invalid token: wrong issuer")
        if not claims.get("email") or claims.get("email_verified") is not True:
            raise AuthError("invalid token: no verified service account email")
        return Caller("service_account", email=str(claims["email"]))

    def _is_user(self, token: str) -> bool:
        try:
            self.user(token)
        except AuthError:
            return False
        return True

    def any_caller(self, token: str, audience: str) -> Caller:
        """A Firebase user or, failing that, a service account (for functions both may call)."""
        try:
            return self.user(token)
        except AuthError:
            return self.service_account(token, audience)


def _reason(exc: Exception) -> str:
    """A short, token-free reason (google-auth messages may quote claims, never the token)."""
    text = str(exc).split("\n")[0]
    for marker in ("expired", "Token used too early", "audience", "signature", "Wrong number of segments"):
        if marker.lower() in text.lower():
            return {
                "expired": "token expired",
                "Token used too early": "token not valid yet",
                "audience": "wrong audience",
                "signature": "bad signature",
                "Wrong number of segments": "not a JWT",
            }[marker]
    return "could not be verified"
