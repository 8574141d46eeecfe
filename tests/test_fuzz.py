"""Fuzzing every function with schemathesis, driven by `openapi.yaml`.

Each operation of the document gets generated requests -- valid ones (schemathesis' positive mode)
and broken ones (negative mode: wrong types, missing fields, values outside the enums, bodies that
are not JSON) -- sent through the functions-framework apps that `local.serve` mounts, over the
in-process stack (Firestore emulator, both simulators, the loopback token issuer).

So that requests reach validation, most carry the credential the function asks for: the owner's
Firebase token, the right service account's token for the function's URL, or (webhooks) a valid
signature over the exact bytes sent. Others go without one, or with what schemathesis made up. A
few `generate_video` calls reuse a small set of Idempotency-Keys.

Checks on every answer::

    no 5xx                     a fault of ours, whatever the input
    4xx -> JSON error shape    {"error": {"code": str, "message": str}}
    4xx -> nothing written     every document in the emulator is compared before and after

`FUZZ_EXAMPLES` (default 30) sets the requests per function; `make chaos` runs 300. The counts of
the last run go to build/reliability/fuzz.json.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from werkzeug.test import Client, EnvironBuilder

from local.serve import build_app, function_names
from providers.signatures import sign_heygen, sign_standard
from tests.conftest import ROOT
from tests.stack import OPS_SA, SCHEDULER_SA, TASKS_SA
from tests.test_auth_matrix import HEYGEN_SECRET, RUNWAY_SECRET, SECRETS, database

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
SCHEMA = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
OWN_CALLER = {
    "generate_video": "alice",
    "cancel_video": "alice",
    "runwayml_status_check": "alice",
    "runwayml_polling_task": TASKS_SA,
    "finalize_video_task": TASKS_SA,
    "runwayml_batch_status_check": OPS_SA,
    "provider_health": OPS_SA,
    "runwayml_cleanup_task": SCHEDULER_SA,
    "heygen_webhook": "signature",
    "runwayml_webhook": "signature",
}
SUMMARY = ROOT / "build" / "reliability" / "fuzz.json"
_tally: dict[str, Counter[str]] = {}


def operation_for(function: str) -> Any:
    (operation,) = [op.ok() for op in SCHEMA.get_all_operations() if op.ok().path == f"/{function}"]
    return operation


def wire_body(case: Any) -> bytes | None:
    """The bytes of the request body as a client would send them (None: no body)."""
    body = case.body
    if isinstance(body, schemathesis.core.NotSet):
        return None
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


def credentials(stack, function: str, auth: str, body: bytes | None) -> dict[str, str]:
    """The headers of one auth mode: `own` (the right credential), `none`, or `generated` (as made)."""
    if auth != "own":
        return {}
    own = OWN_CALLER[function]
    if own == "signature":
        raw, stamp = body or b"", int(time.time())
        if function == "heygen_webhook":
            return sign_heygen(raw, HEYGEN_SECRET, timestamp=stamp, event_id=f"fuzz-{time.monotonic_ns()}")
        return sign_standard(raw, RUNWAY_SECRET, msg_id=f"fuzz-{time.monotonic_ns()}", timestamp=stamp)
    if "@" in own:
        return stack.service(own, function)
    return stack.user(own)


def send(client: Client, case: Any, headers: dict[str, str], body: bytes | None) -> Any:
    """The request through the WSGI app; requests a client library could not even send are skipped."""
    query = {k: v if isinstance(v, list) else str(v) for k, v in (case.query or {}).items()}
    try:
        builder = EnvironBuilder(
            path=case.formatted_path,
            method=case.method,
            headers=headers,
            query_string=query,
            data=body,
            content_type=case.media_type if body is not None else None,
        )
        environ = builder.get_environ()
    except (ValueError, TypeError, UnicodeError):
        reject()
    return client.open(environ)


def check(function: str, answer: Any, before: dict, now: Any) -> None:
    status = answer.status_code
    _tally.setdefault(function, Counter())[str(status)] += 1
    assert status < 500, f"{function} answered {status}: {answer.get_data(as_text=True)[:300]}"
    if status >= 400:
        error = (answer.get_json(silent=True) or {}).get("error")
        assert isinstance(error, dict), f"{function} {status} without the error shape"
        assert isinstance(error.get("code"), str)
        assert isinstance(error.get("message"), str)
        assert now() == before, f"{function} answered {status} but wrote to Firestore"


@pytest.fixture(scope="module")
def wsgi() -> Any:
    return build_app(function_names())


@pytest.fixture(scope="module", autouse=True)
def write_summary():
    yield
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    total = sum(sum(c.values()) for c in _tally.values())
    SUMMARY.write_text(json.dumps({"cases": total, "byFunction": _tally}, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize("function", function_names())
def test_generated_requests_never_fail_with_5xx_and_bad_ones_change_nothing(stack_factory, wsgi, function):
    stack = stack_factory(storage=True, RUNWAYML_QUOTA="1000/60", HEYGEN_QUOTA="1000/60", **SECRETS)
    operation, client = operation_for(function), Client(wsgi)
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
    )
    keys = st.one_of(st.none(), st.none(), st.sampled_from(["k1", "k2"]))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, auth=st.sampled_from(["own", "own", "own", "none", "generated"]), key=keys)
    def fuzz(case: Any, auth: str, key: str | None) -> None:
        body = wire_body(case)
        headers = {k: str(v) for k, v in (case.headers or {}).items() if auth == "generated"}
        headers |= credentials(stack, function, auth, body)
        if key is not None and function == "generate_video":
            headers["Idempotency-Key"] = key
        before = database(stack)
        answer = send(client, case, headers, body)
        check(function, answer, before, lambda: database(stack))

    fuzz()


def test_a_finalize_delivery_for_a_job_that_does_not_exist_is_acknowledged(stack_factory):
    """Found by this fuzzer: a finalize task for a job id that is gone (retention) or never existed
    answered 500, so Cloud Tasks would deliver it again and again. It is acknowledged like a poll
    for an unknown task, and nothing is written."""
    stack = stack_factory(storage=True)
    before = database(stack)
    answer = stack.client("finalize_video_task").post(
        "/",
        json={"jobId": "no-such-job", "attemptId": "no-such-job-a1"},
        headers=stack.service(TASKS_SA, "finalize_video_task"),
    )
    assert (answer.status_code, answer.get_json()["outcome"]) == (200, "missing")
    assert database(stack) == before
