"""generate_video end to end: emulator, both simulators, real token checks, functions-framework."""

from __future__ import annotations

import threading

import pytest

from local.simcore import FaultPlan
from tests.stack import SCRIPT


def jobs_in(stack):
    return list(stack.deps.store.client.collection(stack.settings.jobs_collection).stream())


def creates(stack):
    return sum(stack.runway.creates.values()) + len(stack.heygen.videos)


def test_a_cv_becomes_a_heygen_job_with_one_create_and_a_first_poll(stack):
    answer = stack.generate()
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert body["provider"] == "heygen"
    assert body["statusUrl"].endswith(f"runwayml_status_check?jobId={body['jobId']}")
    assert body["selection"]["candidates"][0] == "heygen"
    job = stack.deps.store.get_job(body["jobId"])
    assert job.owner_uid == "alice"
    assert job.current_attempt.status == "active"
    assert len(stack.heygen.videos) == 1
    assert [t.payload["pollNumber"] for t in stack.queue.tasks] == [1]


def test_a_premium_clip_goes_to_runwayml(stack):
    answer = stack.generate(quality="premium", kind="clip", style="energetic")
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["provider"] == "runwayml"
    assert sum(stack.runway.creates.values()) == 1


def test_the_users_preference_is_honoured(stack):
    assert stack.generate(provider="runwayml").get_json()["provider"] == "runwayml"


@pytest.mark.parametrize(
    "heygen",
    [
        {"balance_usd": 0.0},  # 402 insufficient credit
    ],
)
def test_a_heygen_failure_that_allows_fallback_goes_to_runwayml(stack_factory, heygen):
    stack = stack_factory(heygen=heygen)
    answer = stack.generate()
    assert answer.status_code == 202, answer.get_json()
    job = stack.deps.store.get_job(answer.get_json()["jobId"])
    assert [(a.provider, str(a.status)) for a in job.attempts] == [
        ("heygen", "failed"),
        ("runwayml", "active"),
    ]
    assert sum(stack.runway.creates.values()) == 1


def test_a_heygen_outage_falls_back_to_runwayml(stack_factory):
    stack = stack_factory(heygen_faults=FaultPlan(rates={"http_5xx": 1.0}))
    answer = stack.generate()
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["provider"] == "runwayml"


def test_when_no_provider_takes_it_the_caller_gets_503_and_the_job_is_failed(stack_factory):
    stack = stack_factory(
        heygen_faults=FaultPlan(rates={"http_5xx": 1.0}), runway_faults=FaultPlan(rates={"http_5xx": 1.0})
    )
    answer = stack.generate()
    assert answer.status_code == 503
    error = answer.get_json()["error"]
    assert error["code"] == "no_provider"
    assert {r["provider"] for r in error["reasons"]} == {"heygen", "runwayml"}
    assert stack.deps.store.get_job(error["jobId"]).status == "failed"
    assert answer.headers["Retry-After"] == "60"  # no refusal named a time: the default wait


def test_repeating_the_key_of_a_create_no_provider_took_gives_back_its_failed_job(stack_factory):
    stack = stack_factory(
        heygen_faults=FaultPlan(rates={"http_5xx": 1.0}), runway_faults=FaultPlan(rates={"http_5xx": 1.0})
    )
    assert stack.generate(key="try-1").status_code == 503
    # the key's job has failed (README: a later try is a new request, with a new key)
    again = stack.generate(key="try-1")
    assert (again.status_code, again.get_json()["status"]) == (200, "failed")


def test_a_repeated_idempotency_key_returns_the_same_job_without_a_second_create(stack):
    first = stack.generate(key="req-1")
    again = stack.generate(key="req-1")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json()["jobId"] == first.get_json()["jobId"]
    assert creates(stack) == 1


def test_concurrent_duplicates_make_one_job_and_one_create(stack):
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(stack.generate(key="same"))) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len({a.get_json()["jobId"] for a in answers}) == 1
    assert all(a.status_code in (200, 202) for a in answers)
    assert len(jobs_in(stack)) == 1
    assert creates(stack) == 1


def test_the_same_key_for_another_request_is_a_conflict(stack):
    stack.generate(key="k")
    answer = stack.generate(key="k", style="friendly")
    assert answer.status_code == 409
    assert answer.get_json()["error"]["code"] == "idempotency_key_reused"


BAD_BODIES = [
    ({"script": ""}, "script"),
    ({"script": "x" * 20_001}, "script"),
    ({"script": "!!! ???"}, "script"),
    ({"style": "noir"}, "style"),
    ({"durationS": 30}, "durationS"),
    ({"durationS": 2}, "durationS"),
    ({"aspectRatio": "4:3"}, "aspectRatio"),
    ({"resolution": "800x600"}, "resolution"),
    ({"format": "avi"}, "format"),
    ({"imageUrl": "http://example.com/a.png"}, "imageUrl"),
    ({"imageUrl": "https://10.0.0.1/a.png"}, "imageUrl"),
    ({"imageUrl": "https://2130706433/a.png"}, "imageUrl"),
    ({"imageUrl": "https://127.1/a.png"}, "imageUrl"),
    ({"imageUrl": "https://0x7f000001/a.png"}, "imageUrl"),
    ({"imageUrl": "https://localhost/a.png"}, "imageUrl"),
    ({"imageUrl": "https://metadata.google.internal/a.png"}, "imageUrl"),
    ({"imageUrl": "https://169.254.169.254.nip.io/a.png"}, "imageUrl"),
    ({"provider": "sora"}, "provider"),
    ({"cameraIntensity": 2}, "cameraIntensity"),
    ({"unexpected": 1}, "unexpected"),
]


@pytest.mark.parametrize(("override", "field"), BAD_BODIES)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(stack, override, field):
    body = {"script": SCRIPT, **override}
    answer = stack.client("generate_video").post("/", json=body, headers=stack.user("alice"))
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert field in error["message"]
    assert jobs_in(stack) == []
    assert creates(stack) == 0


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "malformed_json"),
        ("[1, 2]", "application/json", 400, "invalid_body"),
        ("script=hi", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ('{"script": "' + "a " * 40_000 + '"}', "application/json", 413, "body_too_large"),
    ],
)
def test_malformed_bodies_are_refused_before_anything_happens(stack, data, content_type, status, code):
    client = stack.client("generate_video")
    answer = client.post("/", data=data, content_type=content_type, headers=stack.user("alice"))
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (status, code)
    assert jobs_in(stack) == []


def test_an_anonymous_caller_gets_401(stack):
    answer = stack.client("generate_video").post("/", json={"script": SCRIPT})
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "unauthenticated"


def test_a_get_is_405(stack):
    assert stack.client("generate_video").get("/", headers=stack.user("alice")).status_code == 405


def test_a_pro_user_asking_for_a_premium_clip_gets_runwayml(stack):
    token = stack.issuer.user_token("paula", "cvplus-test", tier="pro")
    headers = {"Authorization": f"Bearer {token}"}
    body = {"script": SCRIPT, "quality": "premium", "kind": "clip"}
    answer = stack.client("generate_video").post("/", json=body, headers=headers)
    assert answer.get_json()["provider"] == "runwayml"
    assert any("premium" in reason for reason in answer.get_json()["selection"]["reasons"]["runwayml"])


def test_a_gif_without_a_storage_bucket_is_refused_and_writes_nothing(stack):
    answer = stack.generate(format="gif")
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == "format"
    assert jobs_in(stack) == []


def test_a_gif_with_a_storage_bucket_is_made_from_the_providers_mp4(stack_factory):
    stack = stack_factory(storage=True)
    answer = stack.generate(format="gif", provider="runwayml")
    assert answer.status_code == 202, answer.get_json()
    job = stack.run_until_terminal(answer.get_json()["jobId"], step_s=10)
    assert job["status"] == "completed"
    assert job["output"]["gifPath"].endswith("video.gif")


@pytest.mark.parametrize("depth", [33, 20_000])
def test_deeply_nested_json_is_a_400_and_writes_nothing(stack, depth):
    body = ("[" * depth + "]" * depth).encode()  # 40 KB at the larger depth: under the size cap
    wrapped = b'{"script": "x", "extra": ' + body + b"}"
    headers = {**stack.user("alice"), "Content-Type": "application/json"}
    answer = stack.client("generate_video").post("/", data=wrapped, headers=headers)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (400, "malformed_json")
    assert list(stack.deps.store.client.collection(stack.settings.jobs_collection).stream()) == []
