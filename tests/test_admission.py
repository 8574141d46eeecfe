"""Per-user plans, the project's spend caps and single-flight status refreshes, through the HTTP
functions on the Firestore emulator and the provider simulators."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from msgspec.structs import replace

from config import DEFAULT_TIER_LIMITS
from jobs.records import job_from_doc
from tests.conftest import TEST_PROJECT
from tests.stack import SCRIPT, Stack

REAL_PLANS = {"TIER_LIMITS": "{}", "SPEND_CAP_USD_PER_DAY": "500"}  # the shipped defaults
FREE = DEFAULT_TIER_LIMITS["free"]
SUPPORT = ("users", "quota", "refresh")


def headers(stack: Stack, uid: str, tier: str | None = None, key: str | None = None) -> dict[str, str]:
    claims = {"tier": tier} if tier else {}
    token = stack.issuer.user_token(uid, TEST_PROJECT, **claims)
    return {"Authorization": f"Bearer {token}"} | ({"Idempotency-Key": key} if key else {})


def post(stack: Stack, uid: str, tier: str | None = None, key: str | None = None, client=None, **body):
    client = client or stack.client("generate_video")
    return client.post("/", json={"script": SCRIPT, **body}, headers=headers(stack, uid, tier, key))


def documents(stack: Stack) -> dict[str, dict]:
    """Every job and support document (server timestamps included), to compare before and after."""
    client = stack.deps.store.client
    names = [stack.settings.jobs_collection] + [stack.settings.collection(c) for c in SUPPORT]
    return {f"{n}/{s.id}": s.to_dict() for n in names for s in client.collection(n).stream()}


def assert_refused(answer, status: int, limit: str) -> dict:
    assert answer.status_code == status, answer.get_json()
    error = answer.get_json()["error"]
    assert error["limit"] == limit
    assert error["message"]
    if status == 429:
        assert int(answer.headers["Retry-After"]) >= 1
    return error


def test_one_users_burst_stays_within_the_plan_and_another_user_still_gets_in(stack_factory):
    stack = stack_factory(**REAL_PLANS)
    app = stack.client("generate_video").application

    def one(i: int):
        return post(stack, "mallory", key=f"burst-{i}", client=app.test_client())

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(60)))
    accepted = [a for a in answers if a.status_code in (200, 202)]
    refused = [a for a in answers if a.status_code not in (200, 202)]
    assert len(accepted) == min(FREE.jobs_per_minute, FREE.live_jobs)
    for answer in refused:
        assert answer.status_code == 429, answer.get_json()
        assert answer.get_json()["error"]["code"] == "user_limit"
        assert answer.get_json()["error"]["limit"] in ("jobsPerMinute", "liveJobs")
        assert int(answer.headers["Retry-After"]) >= 1
    assert post(stack, "victor", key="after-the-burst").status_code == 202


@pytest.mark.parametrize(
    ("body", "limit"),
    [
        ({"quality": "premium", "kind": "clip"}, "qualities"),
        ({"durationS": FREE.max_duration_s + 1, "kind": "clip"}, "maxDurationS"),
        ({"script": "word " * (FREE.max_script_chars // 5 + 1)}, "maxScriptChars"),
    ],
)
def test_what_the_free_plan_never_allows_is_403_and_writes_nothing(stack_factory, body, limit):
    stack = stack_factory(**REAL_PLANS)
    before = documents(stack)
    error = assert_refused(post(stack, "fred", key="k", **body), 403, limit)
    assert (error["code"], error["plan"]) == ("not_in_plan", "free")
    assert documents(stack) == before


def test_the_pro_plan_allows_premium_clips(stack_factory):
    stack = stack_factory(**REAL_PLANS)
    answer = post(stack, "paula", tier="pro", key="k", quality="premium", kind="clip")
    assert answer.status_code == 202, answer.get_json()


def test_an_unknown_plan_is_the_free_plan(stack_factory):
    stack = stack_factory(**REAL_PLANS)
    assert_refused(
        post(stack, "gina", tier="gold", key="k", quality="premium", kind="clip"), 403, "qualities"
    )


def plans(**free) -> dict[str, str]:
    return {"TIER_LIMITS": json.dumps({"free": free}), "SPEND_CAP_USD_PER_DAY": "500"}


LOOSE = {"jobsPerMinute": 50, "jobsPerHour": 50, "jobsPerDay": 50, "liveJobs": 50, "usdPerDay": 1000}


@pytest.mark.parametrize(
    ("limit", "override"),
    [
        ("jobsPerMinute", {"jobsPerMinute": 2}),
        ("jobsPerHour", {"jobsPerHour": 2}),
        ("jobsPerDay", {"jobsPerDay": 2}),
    ],
)
def test_each_window_refuses_the_job_after_its_limit_and_writes_nothing(stack_factory, limit, override):
    stack = stack_factory(**plans(**{**LOOSE, **override}))
    assert [post(stack, "wendy", key=f"k{i}").status_code for i in range(2)] == [202, 202]
    before = documents(stack)
    assert_refused(post(stack, "wendy", key="k3"), 429, limit)
    assert documents(stack) == before


def test_live_jobs_free_their_slot_when_they_end(stack_factory):
    stack = stack_factory(**plans(**{**LOOSE, "liveJobs": 1}))
    first = post(stack, "lena", key="k1")
    assert first.status_code == 202
    assert_refused(post(stack, "lena", key="k2"), 429, "liveJobs")
    stack.run_until_terminal(first.get_json()["jobId"])
    assert post(stack, "lena", key="k3").status_code == 202


def test_spend_is_estimated_at_admission_then_corrected_by_the_actual_cost(stack_factory):
    stack = stack_factory(**plans(**{**LOOSE, "usdPerDay": 1.0}))
    body = {"provider": "runwayml", "kind": "clip", "durationS": 5}  # gen4.5: 60 credits, $0.60
    first = post(stack, "sam", key="k1", **body)
    assert first.status_code == 202, first.get_json()
    estimate = first.get_json()["estimatedCostUsd"]
    assert estimate == pytest.approx(0.60)
    error = assert_refused(post(stack, "sam", key="k2", **body), 429, "usdPerDay")
    assert "$0.60 is used" in error["message"]
    job_id = first.get_json()["jobId"]
    stack.run_until_terminal(job_id, step_s=10)
    assert stack.deps.store.get_job(job_id).actual_cost_usd is not None
    ledger = stack.deps.users.ledger("sam")
    assert ledger[job_id].settled
    assert ledger[job_id].usd == stack.deps.store.get_job(job_id).actual_cost_usd
    # the corrected cost is what counts: set it lower, as a provider discount would, and a second fits
    stack.deps.store.client.collection(stack.settings.jobs_collection).document(job_id).update(
        {"actualCostUsd": 0.30}
    )
    assert post(stack, "sam", key="k3", **body).status_code == 202


def test_a_job_that_alone_passes_the_daily_spend_is_never_allowed(stack_factory):
    stack = stack_factory(**plans(**{**LOOSE, "usdPerDay": 0.5}))
    before = documents(stack)
    assert_refused(post(stack, "tom", key="k", provider="runwayml", kind="clip"), 403, "usdPerDay")
    assert documents(stack) == before


def test_the_project_spend_cap_refuses_new_creates_and_lets_live_jobs_finish(stack_factory, caplog):
    stack = stack_factory(TIER_LIMITS="{}", SPEND_CAP_USD_PER_DAY="1.0")
    body = {"provider": "runwayml", "kind": "clip"}
    live = post(stack, "ann", key="k1", **body)
    assert live.status_code == 202, live.get_json()
    before = documents(stack)
    answer = post(stack, "bob", key="k1", **body)
    assert answer.status_code == 503, answer.get_json()
    assert answer.get_json()["error"]["code"] == "spend_cap_reached"
    assert int(answer.headers["Retry-After"]) > 0
    assert documents(stack) == before
    assert any(getattr(r, "event", None) == "spend_cap_reached" for r in caplog.records)
    assert stack.run_until_terminal(live.get_json()["jobId"], step_s=10)["status"] == "completed"


def test_a_reused_key_with_another_body_takes_no_budget(stack_factory):
    stack = stack_factory(**plans(**LOOSE))
    assert post(stack, "kim", key="same").status_code == 202
    before = documents(stack)
    answer = post(stack, "kim", key="same", style="energetic")
    assert answer.status_code == 409
    assert documents(stack) == before


def test_a_repeated_key_returns_the_callers_own_job_only(stack_factory):
    stack = stack_factory(**plans(**LOOSE))
    first = post(stack, "owner", key="shared-key")
    other = post(stack, "intruder", key="shared-key")
    assert other.status_code == 202
    assert other.get_json()["jobId"] != first.get_json()["jobId"]
    assert post(stack, "owner", key="shared-key").get_json()["jobId"] == first.get_json()["jobId"]


def test_forty_concurrent_status_checks_read_the_provider_once(stack_factory):
    stack = stack_factory(RUNWAYML_QUOTA="1000/60")
    answer = post(stack, "olga", key="k", provider="runwayml", kind="clip")
    job_id = answer.get_json()["jobId"]
    time.sleep(5.5)  # the task record was written at the create: let it go stale
    reads_before = stack.runway.count("GET", "/v1/tasks/")
    app = stack.client("runwayml_status_check").application
    barrier = threading.Barrier(40)

    def check(_):
        client = app.test_client()
        barrier.wait()
        started = time.monotonic()
        result = client.get(f"/?jobId={job_id}", headers=headers(stack, "olga"))
        return result, time.monotonic() - started

    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(check, range(40)))
    assert [r.status_code for r, _ in results] == [200] * 40
    assert max(seconds for _, seconds in results) < 10
    assert stack.runway.count("GET", "/v1/tasks/") - reads_before == 1
    assert {r.get_json()["job"]["jobId"] for r, _ in results} == {job_id}


def test_status_checks_per_minute_are_limited_per_user(stack_factory):
    stack = stack_factory(**plans(**{**LOOSE, "statusChecksPerMinute": 3}))
    job_id = post(stack, "nina", key="k").get_json()["jobId"]
    client = stack.client("runwayml_status_check")
    codes = [client.get(f"/?jobId={job_id}", headers=headers(stack, "nina")).status_code for _ in range(4)]
    assert codes[:3] == [200, 200, 200]
    if codes[3] != 429:  # the minute turned between the calls: one more try in the new minute
        codes = [
            client.get(f"/?jobId={job_id}", headers=headers(stack, "nina")).status_code for _ in range(4)
        ]
    assert codes[3] == 429
    assert (
        client.get(f"/?jobId={job_id}", headers=headers(stack, "nora")).status_code == 404
    )  # others unaffected


def test_the_ledger_is_one_document_per_user(stack_factory):
    stack = stack_factory(**plans(**LOOSE))
    for uid in ("u1", "u2", "u1"):
        post(stack, uid)
    users = stack.deps.store.client.collection(stack.settings.collection("users")).stream()
    ledgers = {s.id: s.to_dict()["jobs"] for s in users}
    assert sorted(ledgers) == ["u1", "u2"]
    assert (len(ledgers["u1"]), len(ledgers["u2"])) == (2, 1)
    job_id = next(iter(ledgers["u2"]))
    assert (
        job_from_doc(
            stack.deps.store.client.collection(stack.settings.jobs_collection)
            .document(job_id)
            .get()
            .to_dict()
        ).owner_uid
        == "u2"
    )


def test_one_users_concurrent_admissions_all_land_in_the_ledger_without_waiting_on_a_lock(
    firestore_client, settings
):
    from jobs.admission import UserAdmission
    from jobs.store import JobStore
    from tests.test_job_store import run_in_threads

    raised = {"jobs_per_minute": 50, "jobs_per_hour": 50, "jobs_per_day": 50, "live_jobs": 50}
    limits = replace(FREE, **{**raised, "usd_per_day": 1000.0})
    users = UserAdmission(JobStore(firestore_client, settings), settings)

    def admit(i: int) -> float:
        began = time.monotonic()
        users.admit("mallory", "free", limits, f"job-{i}", 0.5)
        return time.monotonic() - began

    took = run_in_threads(8, admit)

    assert sorted(users.ledger("mallory")) == sorted(f"job-{i}" for i in range(8))
    # in a transaction, admissions that read the ledger together wait on each other's locks until
    # the emulator times them out (5 s+)
    assert max(took) < 4.0
