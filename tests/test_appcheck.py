"""Firebase App Check (APP_CHECK=enforce): a user's call carries a valid `X-Firebase-AppCheck` token
or is refused with 401 and writes nothing; service accounts are not asked; off by default.

Tokens are signed with a test key whose JWKS a loopback server serves (`APP_CHECK_JWKS_URL`)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import TEST_PROJECT
from tests.stack import OPS_SA, SCRIPT

APP_ID = "1:123456789:web:abc123"
ISSUER = "https://firebaseappcheck.googleapis.com/123456789"


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return


class Jwks:
    """An App Check key pair; its public half served as a JWKS file on 127.0.0.1."""

    def __init__(self, root: Path, kid: str = "app-check-test") -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        (root / "v1").mkdir(parents=True)
        (root / "v1" / "jwks").write_text(json.dumps({"keys": [{**jwk, "kid": kid, "alg": "RS256"}]}))
        handler = functools.partial(QuietFiles, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/jwks"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, *, headers: dict[str, Any] | None = None, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "sub": APP_ID,
            "aud": ["projects/123456789", f"projects/{TEST_PROJECT}"],
            "iat": now,
            "exp": now + 3600,
            **claims,
        }
        payload = {name: value for name, value in payload.items() if value is not None}
        header = {"kid": self.kid, "typ": "JWT", **(headers or {})}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers=header)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def jwks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jwks]:
    served = Jwks(tmp_path_factory.mktemp("jwks"))
    yield served
    served.stop()


@pytest.fixture
def enforced(stack_factory, jwks):
    return stack_factory(APP_CHECK="enforce", APP_CHECK_JWKS_URL=jwks.url)


def jobs_written(stack) -> int:
    return len(list(stack.deps.store.client.collection(stack.settings.jobs_collection).stream()))


def generate(stack, app_check: str | None, uid: str = "alice"):
    headers = stack.user(uid) | ({"X-Firebase-AppCheck": app_check} if app_check is not None else {})
    return stack.client("generate_video").post("/", json={"script": SCRIPT}, headers=headers)


def test_a_valid_app_check_token_lets_the_user_in(enforced, jwks):
    answer = generate(enforced, jwks.token())
    assert answer.status_code == 202, answer.get_json()
    assert jobs_written(enforced) == 1


def test_without_the_header_the_call_is_refused_and_nothing_is_written(enforced):
    answer = generate(enforced, None)
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "app_check_failed"
    assert "X-Firebase-AppCheck" in answer.get_json()["error"]["message"]
    assert jobs_written(enforced) == 0


def _bad_tokens(jwks: Jwks) -> dict[str, str]:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "another project": jwks.token(aud=["projects/999", "projects/someone-else"]),
        "audience not a list": jwks.token(aud=f"projects/{TEST_PROJECT}"),
        "expired": jwks.token(exp=int(time.time()) - 60),
        "no expiry": jwks.token(exp=None),
        "wrong issuer": jwks.token(iss="https://securetoken.google.com/" + TEST_PROJECT),
        "no app id": jwks.token(sub=""),
        "signed by another key": jwks.token(key=stranger),
        "unknown key id": jwks.token(headers={"kid": "rotated-away"}),
        "wrong type": jwks.token(headers={"typ": "at+jwt"}),
        "HS256": jwt.encode({"sub": APP_ID}, "s" * 32, algorithm="HS256"),
        "not a JWT": "not-a-token",
    }


@pytest.mark.parametrize(
    "case",
    [
        "another project",
        "audience not a list",
        "expired",
        "no expiry",
        "wrong issuer",
        "no app id",
        "signed by another key",
        "unknown key id",
        "wrong type",
        "HS256",
        "not a JWT",
    ],
)
def test_an_invalid_app_check_token_is_refused_without_echoing_it(enforced, jwks, case):
    token = _bad_tokens(jwks)[case]
    if case == "no expiry":
        claims = jwt.decode(token, options={"verify_signature": False})
        assert "exp" not in claims  # the case is what its name says
    answer = generate(enforced, token)
    assert answer.status_code == 401, (case, answer.get_json())
    assert answer.get_json()["error"]["code"] == "app_check_failed"
    assert token not in answer.get_data(as_text=True)
    assert jobs_written(enforced) == 0


def test_cancel_and_status_ask_users_for_app_check_too(enforced, jwks):
    job_id = generate(enforced, jwks.token()).get_json()["jobId"]
    user = enforced.user("alice")
    cancel = enforced.client("cancel_video").post("/", json={"jobId": job_id}, headers=user)
    status = enforced.client("runwayml_status_check").get(f"/?jobId={job_id}", headers=user)
    assert [cancel.status_code, status.status_code] == [401, 401]
    assert enforced.deps.store.get_job(job_id).status.value != "cancelled"
    with_check = user | {"X-Firebase-AppCheck": jwks.token()}
    status = enforced.client("runwayml_status_check").get(f"/?jobId={job_id}", headers=with_check)
    assert status.status_code == 200
    assert status.get_json()["job"]["jobId"] == job_id


def test_an_operator_service_account_needs_no_app_check(enforced, jwks):
    job_id = generate(enforced, jwks.token()).get_json()["jobId"]
    ops = enforced.service(OPS_SA, "runwayml_status_check")
    answer = enforced.client("runwayml_status_check").get(f"/?jobId={job_id}", headers=ops)
    assert answer.status_code == 200


def test_an_unreachable_key_set_is_a_503_not_a_refusal(stack_factory, jwks, tmp_path):
    gone = Jwks(tmp_path, kid=jwks.kid)
    url = gone.url
    gone.stop()
    stack = stack_factory(APP_CHECK="enforce", APP_CHECK_JWKS_URL=url)
    answer = generate(stack, jwks.token())
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "app_check_unavailable"
    assert answer.headers["Retry-After"]
    assert jobs_written(stack) == 0


def test_app_check_is_off_by_default(stack):
    assert stack.settings.app_check == "off"
    assert generate(stack, None).status_code == 202
    assert generate(stack, "not-a-token", uid="bob").status_code == 202


def test_app_check_accepts_only_enforce_or_off():
    from config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="APP_CHECK"):
        load_settings({"GOOGLE_CLOUD_PROJECT": "p", "APP_CHECK": "on"})
