"""Token verification with google-auth against a loopback issuer: users, service accounts, rejects."""

from __future__ import annotations

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
