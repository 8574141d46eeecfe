"""Firebase App Check on the functions the web app calls (`X-Firebase-AppCheck`), behind a setting.

    APP_CHECK=off       (default) the header is not looked at
    APP_CHECK=enforce   a Firebase user's call must carry a valid App Check token, or it is answered
                        401 `app_check_failed` before anything is read or written; service accounts
                        (operators, Cloud Tasks) never carry one and are not asked for it

A token is checked as firebase-admin's `app_check.verify_token` checks it: header `typ` JWT and `alg`
RS256, an RS256 signature by a key of the App Check JWKS, not expired, `aud` a list holding
`projects/<FIREBASE_PROJECT_ID>`, `iss` under https://firebaseappcheck.googleapis.com/, and a
subject (the app id). It is done here with PyJWT's `PyJWKClient` (the library firebase-admin uses)
because firebase-admin hard-codes the JWKS URL in a private constant; `APP_CHECK_JWKS_URL` lets
the local stack and the tests point at a loopback JWKS. PyJWT is imported only when enforced, and
the key set is cached for six hours (as firebase-admin does).

    no/invalid token    401 app_check_failed    (the message never quotes the token)
    JWKS unreachable    503 app_check_unavailable, Retry-After
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from config import Settings
from errors import Unauthenticated, Unavailable
from web.auth import Caller

HEADER = "X-Firebase-AppCheck"
ISSUER_PREFIX = "https://firebaseappcheck.googleapis.com/"
JWKS_LIFESPAN_S = 6 * 3600
MAX_TOKEN_CHARS = 4096


class AppCheckError(Unauthenticated):
    default_code = "app_check_failed"


@functools.lru_cache(maxsize=4)
def _jwks(url: str) -> Any:
    import jwt

    return jwt.PyJWKClient(url, lifespan=JWKS_LIFESPAN_S, timeout=10)


def verify(token: str, project: str, jwks_url: str) -> Mapping[str, Any]:
    """The claims of a valid App Check token for `project`, or `AppCheckError`."""
    import jwt

    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != "JWT" or header.get("alg") != "RS256":
            raise AppCheckError("invalid App Check token: not an RS256 JWT")
        key = _jwks(jwks_url).get_signing_key_from_jwt(token)
        options = {"verify_aud": False, "require": ["exp"]}  # the audience is checked below
        claims = jwt.decode(token, key.key, algorithms=["RS256"], options=options)
    except jwt.PyJWKClientConnectionError:
        raise Unavailable(
            "App Check keys could not be fetched; retry later", code="app_check_unavailable", retry_after=30
        ) from None
    except jwt.ExpiredSignatureError:
        raise AppCheckError("invalid App Check token: expired") from None
    except jwt.PyJWTError:
        raise AppCheckError("invalid App Check token: it could not be verified") from None
    return _checked(claims, project)


def _checked(claims: Mapping[str, Any], project: str) -> Mapping[str, Any]:
    audience = claims.get("aud")
    if not isinstance(audience, list) or f"projects/{project}" not in audience:
        raise AppCheckError("invalid App Check token: issued for another project")
    if not str(claims.get("iss", "")).startswith(ISSUER_PREFIX):
        raise AppCheckError("invalid App Check token: wrong issuer")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise AppCheckError("invalid App Check token: no app id")
    return claims


def require(settings: Settings, headers: Mapping[str, str], caller: Caller) -> Caller:
    """`caller`, once a user's call has shown a valid App Check token (when APP_CHECK=enforce)."""
    if settings.app_check != "enforce" or not caller.is_user:
        return caller
    token = (headers.get(HEADER) or "").strip()
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise AppCheckError(f"missing or oversized {HEADER} header; send the app's App Check token")
    verify(token, settings.firebase_project, settings.app_check_jwks_url)
    return caller
