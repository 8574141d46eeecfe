"""CORS for the functions the web app calls: preflights, headers on real answers (errors included),
nothing for other origins, and never on internal functions or webhooks."""

from __future__ import annotations

import pytest

APP = "https://app.cvplus.example"
USER_FUNCTIONS = [("generate_video", "POST"), ("cancel_video", "POST"), ("runwayml_status_check", "GET")]
INTERNAL = ["runwayml_polling_task", "finalize_video_task", "runwayml_cleanup_task", "provider_health"]


@pytest.fixture
def web(stack_factory):
    return stack_factory(CORS_ORIGINS=f"{APP}, http://localhost:5173")


def preflight(stack, function, origin, method):
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    return stack.client(function).options(
        "/", headers={**headers, "Access-Control-Request-Headers": "authorization"}
    )


def cors_headers(answer):
    return {k: v for k, v in answer.headers.items() if k.lower().startswith("access-control-")}


@pytest.mark.parametrize(("function", "method"), USER_FUNCTIONS)
def test_a_preflight_from_an_allowed_origin_is_answered_for_that_origin(web, function, method):
    answer = preflight(web, function, APP, method)
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == APP
    assert answer.headers["Access-Control-Allow-Methods"] == method
    allowed = {h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "content-type", "idempotency-key", "x-firebase-appcheck"}
    assert int(answer.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in answer.headers.get_all("Vary")


@pytest.mark.parametrize(("function", "method"), USER_FUNCTIONS)
def test_another_origin_gets_no_cors_headers(web, function, method):
    answer = preflight(web, function, "https://evil.example", method)
    assert cors_headers(answer) == {}
    real = web.client(function).open("/", method=method, headers={"Origin": "https://evil.example"})
    assert cors_headers(real) == {}


def test_real_answers_carry_the_origin_errors_included(web):
    headers = {**web.user("alice"), "Origin": APP}
    accepted = web.client("generate_video").post("/", json={"script": "I am a nurse."}, headers=headers)
    assert accepted.status_code == 202
    assert accepted.headers["Access-Control-Allow-Origin"] == APP
    refused = web.client("generate_video").post("/", json={"script": ""}, headers=headers)
    assert refused.status_code == 400
    assert refused.headers["Access-Control-Allow-Origin"] == APP
    anonymous = web.client("runwayml_status_check").get("/?jobId=x", headers={"Origin": APP})
    assert (anonymous.status_code, anonymous.headers["Access-Control-Allow-Origin"]) == (401, APP)


def test_without_cors_origins_no_browser_origin_is_allowed(stack):
    answer = preflight(stack, "generate_video", APP, "POST")
    assert cors_headers(answer) == {}


@pytest.mark.parametrize("function", [*INTERNAL, "heygen_webhook", "runwayml_webhook"])
def test_internal_functions_and_webhooks_never_answer_cors(web, function):
    answer = preflight(web, function, APP, "POST")
    assert cors_headers(answer) == {}
    real = web.client(function).post("/", json={}, headers={"Origin": APP})
    assert cors_headers(real) == {}


def test_an_origin_with_a_path_or_a_wildcard_is_refused_at_start_up():
    from config import ConfigError, load_settings

    for bad in ("https://app.example/path", "*", "https://*.example.com"):
        with pytest.raises(ConfigError, match="CORS_ORIGINS"):
            load_settings({"GOOGLE_CLOUD_PROJECT": "p", "CORS_ORIGINS": bad})


@pytest.mark.parametrize("origin", [APP, "http://localhost:5173"])
@pytest.mark.parametrize(("function", "method"), USER_FUNCTIONS)
def test_every_allowed_origin_gets_its_own_origin_back_on_every_user_function(web, function, method, origin):
    answer = web.client(function).open("/", method=method, headers={"Origin": origin})
    assert answer.status_code == 401  # no token: the refusal must still be readable by the page
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    assert answer.headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert answer.get_json()["error"]["code"] == "unauthenticated"


def test_a_preflight_asking_for_the_app_check_header_is_allowed(web):
    headers = {
        "Origin": APP,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key, x-firebase-appcheck",
    }
    answer = web.client("generate_video").options("/", headers=headers)
    allowed = {h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert set(headers["Access-Control-Request-Headers"].split(", ")) <= allowed


def test_an_app_check_refusal_carries_the_origin_so_the_page_can_read_it(stack_factory):
    enforced = stack_factory(CORS_ORIGINS=APP, APP_CHECK="enforce")
    headers = {**enforced.user("alice"), "Origin": APP}
    answer = enforced.client("generate_video").post("/", json={"script": "I am a nurse."}, headers=headers)
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "app_check_failed"
    assert answer.headers["Access-Control-Allow-Origin"] == APP
