"""Token verification with google-auth against a loopback issuer: users, service accounts, rejects."""

from __future__ import annotations

import time

import pytest

from errors import Forbidden
from local.tokens import TokenIssuer
from web.auth import AuthError, CachedCertsRequest, Verifier, bearer_token

PROJECT = "cvplus-test"
AUDIENCE = "http://127.0.0.1:9/runwayml_polling_task"
SA = "tasks@cvplus-test.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def issuer():
    issuer = TokenIssuer()
    yield issuer
    issuer.stop()


@pytest.fixture
def verifier(issuer):
    return Verifier(
        firebase_project=PROJECT, firebase_certs_url=issuer.certs_url, google_certs_url=issuer.certs_url
    )


def test_a_user_token_for_the_project_identifies_the_user(issuer, verifier):
    assert verifier.user(issuer.user_token("alice", PROJECT)).uid == "alice"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: i.user_token("alice", "other-project"), "wrong audience"),
        (lambda i: i.user_token("alice", PROJECT, lifetime_s=-120), "token expired"),
        (lambda i: i.user_token("alice", PROJECT, iss="https://evil.example/cvplus-test"), "wrong issuer"),
        (lambda i: "not-a-token", "not a JWT"),
        (lambda i: i.user_token("", PROJECT), "no user id"),
    ],
)
def test_bad_user_tokens_are_refused_with_a_reason(issuer, verifier, make, reason):
    with pytest.raises(AuthError, match=reason):
        verifier.user(make(issuer))


def test_an_unsigned_token_is_refused(verifier):
    unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImF1ZCI6ImN2cGx1cy10ZXN0In0."
    with pytest.raises(AuthError):
        verifier.user(unsigned)


def test_a_token_signed_by_another_key_is_refused(verifier):
    stranger = TokenIssuer()
    try:
        with pytest.raises(AuthError, match="invalid token"):
            verifier.user(stranger.user_token("alice", PROJECT))
    finally:
        stranger.stop()


def test_a_service_account_token_for_the_function_identifies_the_account(issuer, verifier):
    caller = verifier.service_account(issuer.service_token(SA, AUDIENCE), AUDIENCE)
    assert caller.is_service_account({SA})
    assert not caller.is_service_account({"other@x.iam.gserviceaccount.com"})


def test_a_service_account_token_for_another_function_is_refused(issuer, verifier):
    with pytest.raises(AuthError, match="wrong audience"):
        verifier.service_account(issuer.service_token(SA, AUDIENCE + "x"), AUDIENCE)


def test_an_unverified_email_is_refused(issuer, verifier):
    with pytest.raises(AuthError, match="verified"):
        verifier.service_account(issuer.service_token(SA, AUDIENCE, email_verified=False), AUDIENCE)


def test_a_user_token_is_not_a_service_account(issuer, verifier):
    with pytest.raises(Forbidden, match="service-account tokens only"):
        verifier.service_account(issuer.user_token("alice", PROJECT), AUDIENCE)
    with pytest.raises(AuthError):  # a user token of another project is just not valid
        verifier.service_account(issuer.user_token("alice", "another-project"), AUDIENCE)


def test_any_caller_accepts_either_kind(issuer, verifier):
    assert verifier.any_caller(issuer.user_token("bob", PROJECT), AUDIENCE).uid == "bob"
    assert verifier.any_caller(issuer.service_token(SA, AUDIENCE), AUDIENCE).email == SA


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer a b"])
def test_missing_or_malformed_authorization_headers_are_refused(header):
    headers = {} if header is None else {"Authorization": header}
    with pytest.raises(AuthError, match="Authorization"):
        bearer_token(headers)


def test_certificates_are_fetched_once_per_max_age(issuer):
    now = [0.0]
    request = CachedCertsRequest(clock=lambda: now[0])
    first = request(issuer.certs_url)
    assert request(issuer.certs_url) is first
    now[0] = 3601.0
    assert request(issuer.certs_url) is not first


def counting_verifications(monkeypatch) -> list[str]:
    """Count the tokens google-auth verifies from now on."""
    import web.auth

    seen: list[str] = []
    real = web.auth.id_token.verify_token

    def verify_token(token, request, **kwargs):
        seen.append(token)
        return real(token, request, **kwargs)

    monkeypatch.setattr(web.auth.id_token, "verify_token", verify_token)
    return seen


def test_a_token_verified_once_is_answered_from_memory_while_the_certificates_hold(
    issuer, verifier, monkeypatch
):
    verified = counting_verifications(monkeypatch)
    token = issuer.user_token("alice", PROJECT)
    assert [verifier.user(token).uid for _ in range(3)] == ["alice"] * 3
    assert len(verified) == 1


def test_a_remembered_token_for_another_audience_is_verified_again(issuer, verifier):
    token = issuer.service_token(SA, AUDIENCE)
    assert verifier.service_account(token, AUDIENCE).email == SA
    with pytest.raises(AuthError, match="wrong audience"):
        verifier.service_account(token, AUDIENCE + "x")


def test_a_remembered_token_is_refused_once_it_expires(issuer, verifier):
    token = issuer.user_token("alice", PROJECT, lifetime_s=1)
    assert verifier.user(token).uid == "alice"
    time.sleep(2.1)  # google-auth reads the real clock; the token's exp is whole seconds
    with pytest.raises(AuthError, match="token expired"):
        verifier.user(token)


def test_a_remembered_token_is_verified_again_when_the_certificates_are_fetched_again(verifier):
    rotating = TokenIssuer()
    now = [0.0]
    verifier.firebase_certs_url = rotating.certs_url
    verifier.request = CachedCertsRequest(clock=lambda: now[0])
    token = rotating.user_token("alice", PROJECT)
    try:
        assert verifier.user(token).uid == "alice"
    finally:
        rotating.stop()  # its certificates can no longer be fetched
    assert verifier.user(token).uid == "alice"  # the answer it was verified with is still in force
    now[0] = 3601.0
    with pytest.raises(AuthError, match="invalid token"):
        verifier.user(token)
