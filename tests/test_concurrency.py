"""Many requests at once through one process: what serving more than one request per instance needs.

One process, one shared dependency container (`web/deps.py`), threads as a Cloud Run instance with
`--concurrency` > 1 would run them, against the Firestore emulator and the provider simulators.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import functions_framework

from tests.conftest import ROOT
from tests.stack import SCRIPT

THREADS = 8


def _at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call on its own thread, all released together."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        start.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def _client(function: str) -> Any:
    """A test client of its own per thread, over the process's one set of dependencies."""
    return functions_framework.create_app(target=function, source=str(ROOT / "main.py")).test_client()


def test_concurrent_creates_each_make_one_job_and_one_provider_task(stack):
    # Given THREADS users creating a video at the same moment in one process
    def create(uid: str) -> Callable[[], Any]:
        return lambda: _client("generate_video").post(
            "/", json={"script": SCRIPT}, headers=stack.user(uid) | {"Idempotency-Key": f"key-{uid}"}
        )

    answers = _at_once([create(f"user-{i}") for i in range(THREADS)])
    # Then each gets its own job, and each job exactly one provider task
    assert [a.status_code for a in answers] == [202] * THREADS, [a.get_json() for a in answers]
    job_ids = {a.get_json()["jobId"] for a in answers}
    assert len(job_ids) == THREADS
    owners = {stack.deps.store.get_job(j).owner_uid for j in job_ids}
    assert owners == {f"user-{i}" for i in range(THREADS)}
    creates = sum(stack.runway.creates.values()) + len(stack.heygen.videos)
    assert creates == THREADS


def test_concurrent_status_checks_answer_each_owner_with_their_own_job(stack):
    # Given jobs of different owners
    owners = [f"owner-{i}" for i in range(THREADS)]
    jobs = {uid: stack.generate(uid=uid).get_json()["jobId"] for uid in owners}

    # When every owner asks for their job several times, all at once
    def status(uid: str) -> Callable[[], Any]:
        client = _client("runwayml_status_check")
        headers = stack.user(uid)
        return lambda: [client.get("/", query_string={"jobId": jobs[uid]}, headers=headers) for _ in range(5)]

    answers = _at_once([status(uid) for uid in owners])
    # Then every answer is the asker's own job, none another's and none an error
    for uid, replies in zip(owners, answers, strict=True):
        assert [r.status_code for r in replies] == [200] * 5, [r.get_json() for r in replies]
        assert {r.get_json()["job"]["jobId"] for r in replies} == {jobs[uid]}


def test_concurrent_status_checks_of_one_job_refresh_it_without_losing_a_state(stack):
    # Given one live job whose record is stale, and its render finished at the provider
    job_id = stack.generate(uid="alice", provider="runwayml").get_json()["jobId"]
    stack.clock.advance(300)  # the simulator finished; no poll has run yet
    store = stack.deps.store
    task_id = store.get_job(job_id).current_attempt.task_id
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    store.client.document(f"runwayml_jobs/{task_id}").update(
        {"lastCheckedAt": long_ago, "createdAt": long_ago}
    )
    headers = stack.user("alice")

    # When THREADS status checks of it arrive at once (each may refresh it at the provider)
    def status() -> Any:
        return _client("runwayml_status_check").get("/", query_string={"jobId": job_id}, headers=headers)

    answers = _at_once([status for _ in range(THREADS)])
    # Then all answer, and the job ends completed, as at least one of them reports
    assert [a.status_code for a in answers] == [200] * THREADS, [a.get_json() for a in answers]
    assert store.get_job(job_id).status.value == "completed"
    assert sum(1 for a in answers if a.get_json()["job"]["status"] == "completed") >= 1


def test_concurrent_cancels_each_end_their_owners_job(stack):
    # Given running jobs of different owners
    owners = [f"owner-{i}" for i in range(THREADS)]
    jobs = {uid: stack.generate(uid=uid, provider="runwayml").get_json()["jobId"] for uid in owners}

    # When every owner cancels theirs at the same moment
    def cancel(uid: str) -> Callable[[], Any]:
        client = _client("cancel_video")
        return lambda: client.post("/", json={"jobId": jobs[uid]}, headers=stack.user(uid))

    answers = _at_once([cancel(uid) for uid in owners])
    # Then each answer is the asker's own job, cancelled, and each task was stopped at the provider
    assert [a.status_code for a in answers] == [200] * THREADS, [a.get_json() for a in answers]
    assert [a.get_json()["job"]["jobId"] for a in answers] == [jobs[uid] for uid in owners]
    assert {stack.deps.store.get_job(j).status.value for j in jobs.values()} == {"cancelled"}
    assert stack.runway.count("DELETE", "/v1/tasks/") == THREADS


def test_concurrent_cancels_of_one_job_stop_its_task_once(stack):
    # Given one running job
    job_id = stack.generate(uid="alice", provider="runwayml").get_json()["jobId"]
    headers = stack.user("alice")

    # When its owner's cancel arrives THREADS times at once (a double-tapped button, retries)
    def cancel() -> Any:
        return _client("cancel_video").post("/", json={"jobId": job_id}, headers=headers)

    answers = _at_once([cancel for _ in range(THREADS)])
    # Then all answer with the cancelled job, and the provider was told once
    assert [a.status_code for a in answers] == [200] * THREADS, [a.get_json() for a in answers]
    assert {a.get_json()["job"]["status"] for a in answers} == {"cancelled"}
    assert stack.runway.count("DELETE", "/v1/tasks/") == 1
