"""Who gets in where: every HTTP function of main.py against every kind of caller, in one table.

Callers (columns)::

    anonymous       no Authorization header
    expired         the function's own kind of caller, with a token that expired two minutes ago
    other_audience  the function's own kind of caller, minted for another project (users) or for
                    another function's URL (service accounts)
    unsigned        the function's own caller's claims in a JWT with `alg: none` and no signature
    other_user      a signed-in Firebase user who does not own the job
    owner           the Firebase user who owns the job
    ops, tasks, scheduler   the three service accounts, each minted for the function's own URL

Every refusal must carry the JSON error shape and write nothing (every document in the emulator is
compared before and after). The webhooks take no bearer token at all (anything without a signature
is 401); their own table below tries forged, tampered, replayed, stale, oversized and mistyped
deliveries -- all refused with nothing written -- and a valid one, applied exactly once.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from local.serve import function_names
from providers.signatures import sign_heygen, sign_standard
from tests.conftest import TEST_PROJECT
from tests.stack import FUNCTIONS_BASE, OPS_SA, SCHEDULER_SA, SCRIPT, TASKS_SA

HEYGEN_SECRET = "whsec_matrix-heygen-secret"
RUNWAY_SECRET = "whsec_" + base64.b64encode(b"matrix-runwayml-signing-key-32by").decode()
CALLERS = (
    "anonymous",
    "expired",
    "other_audience",
    "unsigned",
    "other_user",
    "owner",
    "ops",
    "tasks",
    "scheduler",
)
OWNER, OTHER = "alice", "mallory"
USER = "user"  # the function's own caller is a Firebase user (the owner)

# function -> (its own caller, expected status per column of CALLERS); a valid user token on a
# function that takes service accounts only is 403, saying so
MATRIX: dict[str, tuple[str, tuple[int, ...]]] = {
    "generate_video": (USER, (401, 401, 401, 401, 202, 202, 401, 401, 401)),
    "cancel_video": (USER, (401, 401, 401, 401, 404, 200, 401, 401, 401)),
    "runwayml_status_check": (USER, (401, 401, 401, 401, 404, 200, 200, 404, 404)),
    "runwayml_polling_task": (TASKS_SA, (401, 401, 401, 401, 403, 403, 403, 200, 403)),
    "heygen_webhook": (USER, (401,) * 9),
    "runwayml_webhook": (USER, (401,) * 9),
    "runwayml_batch_status_check": (OPS_SA, (401, 401, 401, 401, 403, 403, 200, 403, 403)),
    "provider_health": (OPS_SA, (401, 401, 401, 401, 403, 403, 200, 403, 403)),
    "finalize_video_task": (TASKS_SA, (401, 401, 401, 401, 403, 403, 403, 200, 403)),
    "runwayml_cleanup_task": (SCHEDULER_SA, (401, 401, 401, 401, 403, 403, 403, 403, 200)),
}


def database(stack) -> dict[str, Any]:
    """Every document in the emulator with its last update time: equal before and after = nothing written."""
    client = stack.deps.store.client
    return {snap.reference.path: snap.update_time for col in client.collections() for snap in col.stream()}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any]) -> str:
    now = int(time.time())
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'iat': now, 'exp': now + 600, **claims})}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def caller_headers(stack, caller: str, function: str, own: str) -> dict[str, str]:
    """The Authorization header of one column for one function (see the module docstring)."""
    issuer, url = stack.issuer, f"{FUNCTIONS_BASE}/{function}"
    if caller == "anonymous":
        return {}
    if caller in ("owner", "other_user"):
        return stack.user(OWNER if caller == "owner" else OTHER)
    if caller in ("ops", "tasks", "scheduler"):
        return stack.service({"ops": OPS_SA, "tasks": TASKS_SA, "scheduler": SCHEDULER_SA}[caller], function)
    if own == USER:
        claims = {"iss": f"https://securetoken.google.com/{TEST_PROJECT}", "aud": TEST_PROJECT, "sub": OWNER}
        return bearer(
            {
                "expired": lambda: issuer.user_token(OWNER, TEST_PROJECT, lifetime_s=-120),
                "other_audience": lambda: issuer.user_token(OWNER, "another-project"),
                "unsigned": lambda: unsigned_token(claims),
            }[caller]()
        )
    claims = {"iss": "https://accounts.google.com", "aud": url, "email": own, "email_verified": True}
    return bearer(
        {
            "expired": lambda: issuer.service_token(own, url, lifetime_s=-120),
            "other_audience": lambda: issuer.service_token(own, f"{FUNCTIONS_BASE}/generate_video"),
            "unsigned": lambda: unsigned_token(claims),
        }[caller]()
    )


def a_job(stack, uid: str = OWNER) -> tuple[str, str, str]:
    """(job id, attempt id, task id) of a new RunwayML job owned by `uid`; its first poll is taken."""
    answer = stack.generate(uid, provider="runwayml")
    assert answer.status_code == 202, answer.get_json()
    job = stack.deps.store.get_job(answer.get_json()["jobId"])
    stack.queue.take()
    return job.job_id, job.current_attempt.attempt_id, job.current_attempt.task_id


Request = tuple[str, dict[str, Any]]  # (method, keyword arguments of the test client's open())


def requests_for(stack) -> dict[str, Callable[[], Request]]:
    """A request each function accepts from its own caller (made fresh where a call changes state)."""
    job_id, attempt_id, task_id = a_job(stack)
    poll = {"jobId": job_id, "provider": "runwayml", "taskId": task_id, "pollNumber": 1}
    return {
        "generate_video": lambda: ("POST", {"json": {"script": SCRIPT, "provider": "runwayml"}}),
        "cancel_video": lambda: ("POST", {"json": {"jobId": a_job(stack)[0]}}),
        "runwayml_status_check": lambda: ("GET", {"query_string": {"jobId": job_id}}),
        "runwayml_polling_task": lambda: ("POST", {"json": poll}),
        "heygen_webhook": lambda: (
            "POST",
            {"json": {"event_type": "avatar_video.success", "event_data": {}}},
        ),
        "runwayml_webhook": lambda: ("POST", {"json": {"type": "task.updated", "data": {"id": task_id}}}),
        "runwayml_batch_status_check": lambda: ("POST", {"json": {"jobIds": [job_id]}}),
        "provider_health": lambda: ("GET", {"query_string": {"windowHours": "1"}}),
        "finalize_video_task": lambda: ("POST", {"json": {"jobId": job_id, "attemptId": attempt_id}}),
        "runwayml_cleanup_task": lambda: ("POST", {"json": {"dryRun": False}}),
    }


SECRETS = {"HEYGEN_WEBHOOK_SECRET": HEYGEN_SECRET, "RUNWAYML_WEBHOOK_SECRET": RUNWAY_SECRET}


@pytest.fixture
def guarded(stack_factory):
    return stack_factory(storage=True, **SECRETS)  # storage: finalize_video_task can answer 200


def test_every_function_answers_every_kind_of_caller_as_the_table_says(guarded):
    stack = guarded
    assert sorted(MATRIX) == sorted(function_names()), "a function of main.py is missing from the table"
    make = requests_for(stack)
    actual, problems = {}, []
    for function, (own, _) in MATRIX.items():
        statuses = []
        for caller in CALLERS:
            method, kwargs = make[function]()
            headers = caller_headers(stack, caller, function, own)
            before = database(stack)
            answer = stack.client(function).open("/", method=method, headers=headers, **kwargs)
            statuses.append(answer.status_code)
            if answer.status_code >= 400:
                error = (answer.get_json(silent=True) or {}).get("error") or {}
                if not (isinstance(error.get("code"), str) and isinstance(error.get("message"), str)):
                    problems.append(f"{function}/{caller}: no JSON error body")
                if database(stack) != before:
                    problems.append(f"{function}/{caller}: a refused call wrote to Firestore")
        actual[function] = (own, tuple(statuses))
    assert actual == MATRIX
    assert problems == []


# -- webhooks: signatures, replays, limits -----------------------------------------------------------


def heygen_delivery(video_id: str, *, event_id: str, secret: str = HEYGEN_SECRET, stamp: int | None = None):
    body = json.dumps({"event_type": "avatar_video.success", "event_data": {"video_id": video_id}}).encode()
    stamp = int(time.time()) if stamp is None else stamp
    return body, sign_heygen(body, secret, timestamp=stamp, event_id=event_id)


def runway_delivery(task_id: str, *, event_id: str, secret: str = RUNWAY_SECRET, stamp: int | None = None):
    body = json.dumps({"type": "task.updated", "data": {"id": task_id}}).encode()
    stamp = int(time.time()) if stamp is None else stamp
    return body, sign_standard(body, secret, msg_id=event_id, timestamp=stamp)


DELIVERIES = {"heygen_webhook": heygen_delivery, "runwayml_webhook": runway_delivery}
FORGED_SECRETS = {"heygen_webhook": "whsec_not-ours", "runwayml_webhook": "whsec_" + "QUJD" * 8}
# refusal -> (how the delivery is spoiled, status, error code)
REFUSALS: dict[str, tuple[Callable[..., tuple[bytes, dict, str]], int, str]] = {
    "forged signature": (
        lambda fn, tid: (*DELIVERIES[fn](tid, event_id="e1", secret=FORGED_SECRETS[fn]), "application/json"),
        401,
        "bad_signature",
    ),
    "tampered body": (
        lambda fn, tid: (
            DELIVERIES[fn](tid, event_id="e2")[0].replace(b"}}", b', "x": 1}}'),
            DELIVERIES[fn](tid, event_id="e2")[1],
            "application/json",
        ),
        401,
        "bad_signature",
    ),
    "stale timestamp": (
        lambda fn, tid: (
            *DELIVERIES[fn](tid, event_id="e3", stamp=int(time.time()) - 3600),
            "application/json",
        ),
        401,
        "stale_timestamp",
    ),
    "oversized body": (
        lambda fn, tid: (
            b'{"pad": "' + b"x" * 70_000 + b'"}',
            DELIVERIES[fn](tid, event_id="e4")[1],
            "application/json",
        ),
        413,
        "body_too_large",
    ),
    "wrong content type": (
        lambda fn, tid: (*DELIVERIES[fn](tid, event_id="e5"), "text/plain"),
        415,
        "unsupported_media_type",
    ),
}


def finished_task(stack, provider: str) -> tuple[str, str]:
    """(job id, task id) of a job whose provider task has finished at the simulator."""
    answer = stack.generate(OWNER, provider=provider)
    assert answer.status_code == 202, answer.get_json()
    job = stack.deps.store.get_job(answer.get_json()["jobId"])
    stack.queue.take()
    stack.clock.advance(3600)
    return job.job_id, job.current_attempt.task_id


@pytest.mark.parametrize(
    ("function", "provider"), [("heygen_webhook", "heygen"), ("runwayml_webhook", "runwayml")]
)
def test_spoiled_webhook_deliveries_are_refused_and_a_valid_one_applies_once(
    stack_factory, function, provider
):
    stack = stack_factory(**SECRETS)
    job_id, task_id = finished_task(stack, provider)
    sim = stack.heygen if provider == "heygen" else stack.runway
    reads = ("GET", "/v3/videos/") if provider == "heygen" else ("GET", "/v1/tasks/")
    for refusal, (spoil, status, code) in REFUSALS.items():
        body, headers, content_type = spoil(function, task_id)
        before, asked = database(stack), sim.count(*reads)
        answer = stack.client(function).post("/", data=body, headers=headers, content_type=content_type)
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (status, code), refusal
        assert database(stack) == before, f"{refusal}: something was written"
        assert sim.count(*reads) == asked, f"{refusal}: the provider was asked"
    body, headers = DELIVERIES[function](task_id, event_id="the-one")
    answers = [stack.client(function).post("/", data=body, headers=headers, content_type="application/json")]
    replay_headers = DELIVERIES[function](task_id, event_id="the-one")[1]  # signed again: a replay
    answers.append(
        stack.client(function).post("/", data=body, headers=replay_headers, content_type="application/json")
    )
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].get_json()["status"] == "completed"
    assert answers[1].get_json() == {"duplicate": True}
    assert sim.count(*reads) == 1, "the valid delivery was not applied exactly once"
    assert stack.deps.store.get_job(job_id).status == "completed"
