"""The dependency container builds each collaborator when a request first needs it, and only then."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from datetime import timedelta

import pytest

from jobs.store import JobStore
from jobs.txn import utcnow
from tests.conftest import ROOT, TEST_PROJECT
from tests.stack import environment
from web import deps

# What a status check of a finished job must never load: the task workers, the runner, the clients
# of Cloud Tasks and Cloud Storage, the provider packages (their clients and wire formats), and
# pydantic (its settings and query are msgspec models: config.py says why).
NOT_FOR_A_FINISHED_JOB = (
    "pydantic",
    "tasks",
    "jobs.runner",
    "jobs.generate",
    "google.cloud.tasks_v2",
    "google.cloud.storage",
    "providers.heygen",
    "providers.runwayml",
    "providers.http",
    "tenacity",
)

# What a create refused at the edge (no body) must not load: the job machinery a valid one needs.
NOT_FOR_A_REFUSED_CREATE = ("jobs.generate", "jobs.store", "google.cloud.firestore", "providers.prompts")

FIRST_REQUEST = """
import gc, json, sys
import functions_framework

source, target, method, path, token, body = sys.argv[1:7]
app = functions_framework.create_app(target=target, source=source)
collecting_while_loading = gc.isenabled()
client = app.test_client()
answer = client.open(path, method=method, headers={"Authorization": token}, json=json.loads(body))
banned = tuple(sys.argv[7:])
loaded = sorted(m for m in sys.modules if m in banned or m.startswith(tuple(b + "." for b in banned)))
print(json.dumps({"status": answer.status_code, "loaded": loaded, "collecting_while_loading":
    collecting_while_loading, "collecting_after": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


def first_request(
    stack,
    target: str,
    method: str,
    path: str,
    body: object,
    banned: tuple[str, ...],
    token: str | None = None,
):
    """The first request of a fresh process (alice's token unless `token`): its status and which of
    `banned` it loaded."""
    env = {
        **os.environ,
        **environment(stack.runway, stack.heygen, stack.issuer),
        "PYTHONPATH": str(ROOT),
    }
    token = token or f"Bearer {stack.issuer.user_token('alice', TEST_PROJECT)}"
    argv = [str(ROOT / "main.py"), target, method, path, token, json.dumps(body), *banned]
    done = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def finished_job(stack) -> str:
    answer = stack.generate(provider="runwayml")
    assert answer.status_code == 202, answer.get_json()
    job_id = answer.get_json()["jobId"]
    stack.run_until_terminal(job_id, step_s=60)
    return job_id


def status(stack, job_id: str, uid: str = "alice"):
    return stack.client("runwayml_status_check").get(f"/?jobId={job_id}", headers=stack.user(uid))


def test_a_fresh_container_has_built_nothing(stack):
    assert deps.build(stack.settings).built() == set()


def test_a_status_check_of_a_finished_job_builds_only_the_verifier_the_store_and_the_limiter(stack):
    job_id = finished_job(stack)
    fresh = deps.build(stack.settings)
    deps.use(fresh)
    answer = status(stack, job_id)
    assert (answer.status_code, answer.get_json()["job"]["status"]) == (200, "completed")
    assert fresh.built() == {"verifier", "store", "calls"}


def test_a_status_check_of_a_stale_live_job_builds_the_poller_to_refresh_it(stack):
    answer = stack.generate(provider="runwayml")
    job_id = answer.get_json()["jobId"]
    gets = stack.runway.count("GET", "/v1/tasks/")
    later = JobStore(stack.deps.store.client, stack.settings, clock=lambda: utcnow() + timedelta(minutes=1))
    fresh = deps.Deps(stack.settings, store=later, queue=stack.queue)
    deps.use(fresh)
    assert status(stack, job_id).status_code == 200
    assert {"providers", "poller", "refresh_gate"} <= fresh.built()
    assert stack.runway.count("GET", "/v1/tasks/") == gets + 1  # the refresh reached the provider


def test_a_refused_caller_builds_no_store(stack):
    fresh = deps.build(stack.settings)
    deps.use(fresh)
    answer = stack.client("runwayml_status_check").get("/?jobId=abc")
    assert answer.status_code == 401
    assert "store" not in fresh.built()


def test_given_collaborators_are_kept(stack):
    fresh = deps.build(stack.settings, queue=stack.queue)
    assert fresh.built() == {"queue"}
    assert fresh.queue is stack.queue


def test_replace_swaps_one_collaborator_and_keeps_the_others_as_they_were_built(stack):
    """As with collaborators built all at once: the others stay wired to the original store."""
    fresh = deps.build(stack.settings, queue=stack.queue)
    replaced = dataclasses.replace(fresh, store=stack.deps.store)
    assert replaced.store is stack.deps.store
    assert replaced.queue is stack.queue
    assert replaced.runner is fresh.runner
    assert replaced.runner.store is fresh.store


def test_concurrent_first_uses_share_one_collaborator(stack):
    fresh = deps.build(stack.settings)
    seen, start = [], threading.Barrier(8)

    def first_use() -> None:
        start.wait()
        seen.append(fresh.calls)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(limiter) for limiter in seen}) == 1


def test_the_first_status_check_of_a_fresh_process_loads_no_task_worker(stack):
    job_id = finished_job(stack)
    path = f"/?jobId={job_id}"
    answer = first_request(stack, "runwayml_status_check", "GET", path, None, NOT_FOR_A_FINISHED_JOB)
    assert (answer["status"], answer["loaded"]) == (200, [])


def test_a_create_refused_at_the_edge_loads_no_job_machinery(stack):
    answer = first_request(stack, "generate_video", "POST", "/", {}, NOT_FOR_A_REFUSED_CREATE)
    assert (answer["status"], answer["loaded"]) == (400, [])


def test_a_fresh_process_collects_no_cycles_until_its_first_answer(stack):
    answer = first_request(stack, "generate_video", "POST", "/", {}, ())
    assert answer["status"] == 400
    assert answer["collecting_while_loading"] is False  # main.py turned the collector off
    assert answer["collecting_after"] is True  # and the first answer turned it back on
    assert answer["frozen"] > 10_000  # with what the loading made moved out of its way


@pytest.mark.parametrize(("target", "method"), [("runwayml_status_check", "GET"), ("cancel_video", "POST")])
def test_a_caller_refused_at_the_edge_loads_no_job_machinery(stack, target, method):
    body = {"jobId": "abc"} if method == "POST" else None
    answer = first_request(
        stack, target, method, "/?jobId=abc", body, NOT_FOR_A_REFUSED_CREATE, "Bearer forged"
    )
    assert (answer["status"], answer["loaded"]) == (401, [])
